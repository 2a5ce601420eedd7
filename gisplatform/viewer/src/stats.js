// The statistics page (/viewer/stats.html): monthly series from /api/stats/<topic> by area
// (or, for the evaluation, by department), drawn as an SVG line chart. State in the URL hash:
// #topic=population&series=210400&from=2018-01&to=2026-11&by=area
import { getJSON, q } from "./api.js";
import { color, lineChart } from "./chart.js";
import { applyDom, currentLang, onLang, setLang, t } from "./i18n.js";

// which figures of a topic are drawn; rates on a 0–100 % axis
const DRAWN = {
  population: (keys) => keys.filter((k) => ["registered", "floating", "total"].includes(k)),
  "legal-persons": (keys) => keys.filter((k) => k === "total" || k.startsWith("status.")),
  buildings: (keys) => keys.filter((k) => k === "total" || k.startsWith("use.")),
  cameras: (keys) => keys.filter((k) => k === "total" || k.startsWith("sector.")),
  cases: (keys) => keys.filter((k) => k === "reported" || k.startsWith("source.")),
  evaluation: (keys) => keys.filter((k) => k.endsWith("_rate")),
};
const PERCENT = new Set(["evaluation"]);

const $ = (id) => document.getElementById(id);
const state = { topic: "population", series: "210400", by: "area", from: "2018-01", to: "" };
let topics = [];
let result = null;
let seq = 0;

function readHash() {
  const p = new URLSearchParams(location.hash.slice(1));
  for (const k of Object.keys(state)) if (p.get(k)) state[k] = p.get(k);
}

function writeHash() {
  history.replaceState(null, "", `#${new URLSearchParams(state)}`);
}

function thisMonth() {
  // the city's month (UTC+8), whatever the browser's zone
  return new Date(Date.now() + 8 * 3600e3).toISOString().slice(0, 7);
}

function label(key) {
  const k = `stats.f.${key}`;
  const s = t(k);
  return s === k ? key.replace(/^[a-z_]+\./, "") : s;
}

function topicTitle(topic) {
  const tt = topics.find((x) => x.id === topic)?.title || topic;
  const m = /^(\S+)\s+(.*)$/.exec(tt);
  return m ? (currentLang() === "zh" ? m[1] : m[2]) : tt;
}

function fillTopics() {
  $("topic").replaceChildren(...topics.map((x) => new Option(topicTitle(x.id), x.id, false, x.id === state.topic)));
  $("by-label").hidden = state.topic !== "evaluation";
  $("by").value = state.by;
}

function seriesKey(s) { return s.area ?? s.department ?? s.grid; }

function seriesName(s) {
  if (s.area) return s.area === "210400" ? t("stats.city") : `${s.name || s.area} ${s.area}`;
  return seriesKey(s);
}

function draw() {
  if (!result) return;
  const list = result.series;
  $("series").replaceChildren(...list.map((s) => new Option(seriesName(s), seriesKey(s))));
  let s = list.find((x) => seriesKey(x) === state.series) || list[0];
  if (!s) { $("chart").replaceChildren(); $("message").textContent = t("stats.empty"); return; }
  state.series = seriesKey(s);
  $("series").value = state.series;
  writeHash();
  const months = s.points.map((p) => p.month);
  const keys = DRAWN[result.topic](Object.keys(s.points[0] || {}).filter((k) => k !== "month"));
  const lines = keys.map((k, i) => ({ key: k, label: label(k), color: color(i),
                                      values: s.points.map((p) => p[k]) }));
  lineChart($("chart"), months, lines, { percent: PERCENT.has(result.topic) });
  $("chart-title").textContent = `${topicTitle(result.topic)} · ${seriesName(s)} · ${result.from} – ${result.to}`;
  $("legend").replaceChildren(...lines.map((l) => {
    const e = document.createElement("span");
    e.style.setProperty("--c", l.color);
    e.textContent = l.label;
    return e;
  }));
  $("message").textContent = s.points.some((p) => p.suppressed) ? t("stats.suppressed") : "";
}

async function load() {
  const my = ++seq;
  window.gpStats.ready = false;
  const params = { from: state.from, to: state.to, ...(state.topic === "evaluation" ? { by: state.by } : {}) };
  const path = `/api/stats/${encodeURIComponent(state.topic)}`;
  $("csv").href = `${path}${q({ ...params, f: "csv" })}`;
  $("message").textContent = t("stats.loading");
  try {
    const r = await getJSON(`${path}${q(params)}`);
    if (my !== seq) return;
    result = r;
    draw();
  } catch (e) {
    if (my !== seq) return;
    result = null;
    $("chart").replaceChildren();
    $("message").textContent = `${t("stats.error")}: ${e.message}`;
  }
  window.gpStats.ready = true;
}

async function main() {
  window.gpStats = { ready: false, load, state };
  readHash();
  state.to ||= thisMonth();
  $("from").value = state.from;
  $("to").value = state.to;
  applyDom();
  $("lang").addEventListener("click", () => setLang(currentLang() === "zh" ? "en" : "zh"));
  onLang(() => { applyDom(); fillTopics(); draw(); });
  topics = (await getJSON("/api/stats")).topics;
  fillTopics();
  $("topic").addEventListener("change", () => {
    state.topic = $("topic").value;
    if (state.topic === "evaluation" && state.by !== "area") state.series = "";
    fillTopics();
    load();
  });
  $("by").addEventListener("change", () => { state.by = $("by").value; state.series = ""; load(); });
  $("series").addEventListener("change", () => { state.series = $("series").value; draw(); });
  for (const id of ["from", "to"]) {
    $(id).addEventListener("change", () => {
      if (/^\d{4}-\d{2}$/.test($(id).value)) { state[id] = $(id).value; load(); }
    });
  }
  await load();
}

main();
