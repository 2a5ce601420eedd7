// The viewer: wires the top bar (language, search, sign-in), the layer tree, the time
// slider, the 2D map, the 3D view and the feature panel. window.gp exposes the state for
// tests and the screenshot script.
import { getJSON, HttpError, q, session, setToken } from "./api.js";
import { CASES, CommandView } from "./command.js";
import { applyDom, onLang, setLang, currentLang, t } from "./i18n.js";
import { CONES, Map2D } from "./map2d.js";
import { conePolygon, Map3D } from "./map3d.js";
import { Panel } from "./panel.js";
import { indexOf, positions } from "./time.js";

const $ = (id) => document.getElementById(id);
const CENTER = [123.915, 41.868]; // the urban core of Fushun (Xinfu district)

const app = {
  rasters: [],
  cameraFeatures: null,
  mode: "2d",
  steps: positions(),
  map2d: null,
  map3d: null,
  busy: 0,
  time() { return this.steps[Number($("time").value)]; },
  // the orthophoto the platform serves at `time`: the latest one not after it
  orthoAt(time) { return this.rasterAt("ortho", time); },
  demAt(time) { return this.rasterAt("dem", time); },
  rasterAt(kind, time) {
    const e = time.epoch;
    return this.rasters.filter((r) => r.kind === kind && Date.parse(r.time) / 1000 <= e)
      .sort((a, b) => Date.parse(b.time) - Date.parse(a.time))[0] || null;
  },
  resize() { requestAnimationFrame(() => { this.map2d?.resize(); this.map3d?.viewer?.resize(); }); },
  openFeature(layer, fid, opts) { return this.panel.open(layer, fid, opts); },
  setTimeTo(iso) {
    $("time").value = String(indexOf(this.steps, iso));
    timeLabel();
    return refresh();
  },
};
window.gp = app;

function message(text) { $("message").textContent = text || ""; }

function timeLabel() {
  const time = app.time();
  $("time-value").textContent = time.now ? `${time.date} (${t("time.now")})` : time.date;
  const ortho = app.orthoAt(time);
  $("ortho-year").textContent = ortho ? `${t("ortho")} ${ortho.time.slice(0, 4)}` : t("ortho.none");
}

// the cameras the token may read, at the slider's time (null without a grant)
async function loadCameras() {
  app.cameraFeatures = null;
  // only for a token that may read them (the /tiles/ listing says): no refused request
  if (!session.token || !(app.readable || []).includes("cameras")) return;
  try {
    const fc = await getJSON(`/ogc/collections/cameras/items${q({ f: "json", limit: 5000, datetime: app.time().iso })}`);
    app.cameraFeatures = fc;
  } catch (e) {
    if (!(e instanceof HttpError && (e.status === 401 || e.status === 403))) console.warn("cameras", e);
  }
}

function cones(fc) {
  if (!fc) return null;
  return { type: "FeatureCollection", features: fc.features.filter((f) => f.properties?.range_m && f.properties?.fov != null).map((f) => ({
    type: "Feature", properties: { fid: f.id },
    geometry: { type: "Polygon", coordinates: [conePolygon(...f.geometry.coordinates, f.properties.azimuth ?? 0,
      Math.min(f.properties.fov, 359), f.properties.range_m)] } })) };
}

// Time or token changed: every layer, the orthophoto year, the 3D style and cameras
let refreshing = Promise.resolve();
function refresh() {
  refreshing = refreshing.then(async () => {
    app.busy += 1;
    try {
      timeLabel();
      await loadCameras();
      app.map2d.cones = cones(app.cameraFeatures);
      await app.map2d.refresh();
      if (app.command.on) app.command.renderLegend();
      if (app.map3d?.stats.ready) await app.map3d.update();
      if (app.panel.current) await app.panel.open(app.panel.current.layer, app.panel.current.fid, app.panel.current);
    } catch (e) {
      console.warn(e);
      message(String(e.message || e));
    } finally {
      app.busy -= 1;
    }
  });
  return refreshing;
}

// --- 2D / 3D ---------------------------------------------------------------------------
async function setMode(mode) {
  if (mode === "3d" && app.command?.on) await setCommand(false);
  app.mode = mode;
  $("mode-2d").classList.toggle("on", mode === "2d");
  $("mode-3d").classList.toggle("on", mode === "3d");
  $("map").hidden = mode !== "2d";
  $("globe").hidden = mode !== "3d";
  if (mode === "3d") {
    if (!app.map3d) {
      message(t("3d.loading"));
      app.map3d = new Map3D($("globe"), app);
      app.map3d.initializing = app.map3d.init().then(() => message(""), (e) => {
        console.error("3D", e);
        message(`${t("3d.failed")}: ${e.message || e}`);
      });
    }
    await app.map3d.initializing;
    const m = app.map2d.map;
    app.map3d.lookAt(m.getCenter().toArray(), m.getZoom(), $("views").clientHeight);
  }
  app.resize();
}

// --- the command view (监督指挥) ------------------------------------------------------------
// Open cases by status with the overdue marked, a legend, and the department's inbox
let casesWasVisible = null;
async function setCommand(on) {
  if (on === app.command.on) return;
  if (on && app.mode !== "2d") await setMode("2d");
  const u = app.map2d.userOf(CASES);
  if (on) { casesWasVisible = u.visible; u.visible = true; } else if (casesWasVisible !== null) u.visible = casesWasVisible;
  const shown = app.command.setOn(on);
  await refresh();
  await shown;
  app.resize();
}

// --- search ------------------------------------------------------------------------------
async function search(text) {
  const list = $("search-results");
  let results = [];
  try {
    results = (await getJSON(`/api/search${q({ q: text, limit: 10 })}`)).results || [];
  } catch (e) {
    if (e instanceof HttpError && e.status === 404) results = await searchByCode(text);
    else { list.replaceChildren(li(t("search.error"))); list.hidden = false; return []; }
  }
  list.replaceChildren(...(results.length ? results.map((r, i) => {
    const item = li(r.label || r.fid, r.layer);
    item.dataset.index = String(i);
    item.addEventListener("click", () => { list.hidden = true; goTo(r); });
    return item;
  }) : [li(t("search.none"))]));
  list.hidden = false;
  if (results.length) goTo(results[0]);
  return results;
}

// without /api/search: an exact code is a feature id of one of these layers
async function searchByCode(text) {
  const out = [];
  for (const layer of ["buildings", "legal-persons", "cameras", "addresses"]) {
    try {
      const f = await getJSON(`/ogc/collections/${layer}/items/${encodeURIComponent(text)}?f=json`);
      const coords = JSON.stringify(f.geometry.coordinates).match(/-?\d+(\.\d+)?/g).map(Number);
      const xs = coords.filter((_, i) => i % 2 === 0), ys = coords.filter((_, i) => i % 2 === 1);
      const bbox = [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)];
      out.push({ layer, fid: String(f.id), label: f.properties?.name || f.properties?.address || String(f.id),
                 lon: (bbox[0] + bbox[2]) / 2, lat: (bbox[1] + bbox[3]) / 2, bbox });
    } catch { /* not this layer */ }
  }
  return out;
}

function li(text, layer) {
  const e = document.createElement("li");
  e.textContent = text;
  if (layer) { const s = document.createElement("span"); s.className = "layer"; s.textContent = layer; e.append(s); }
  return e;
}

function goTo(hit) {
  app.lastHit = hit;
  if (app.mode === "3d" && app.map3d?.viewer) app.map3d.zoomTo(hit);
  app.map2d.zoomTo(hit);
  app.openFeature(hit.layer, hit.fid, {});
}

// --- sign in / out ------------------------------------------------------------------------
async function signIn(token) {
  let listing;
  try {
    listing = await getJSON("/tiles/", { token });
  } catch (e) {
    message(e instanceof HttpError && e.status === 401 ? t("signin.bad") : String(e.message || e));
    return false;
  }
  setToken(token);
  showSession(listing);
  await Promise.all([refresh(), app.command.loadInbox()]);
  return true;
}

function showSession(listing) {
  const signed = !!session.token;
  $("token-input").hidden = signed;
  $("signin-btn").hidden = signed;
  $("signed-in").hidden = !signed;
  message("");
  app.readable = signed && listing ? listing.layers.map((l) => l.id) : [];
  if (signed && listing) {
    const unlocked = listing.layers.filter((l) => l.sharing !== "unconditional");
    app.unlocked = unlocked.map((l) => l.id);
    const names = unlocked.map((l) => l.title.split(" ")[currentLang() === "zh" ? 0 : 1] || l.id);
    $("signed-in-text").textContent = `${t("signin.ok")}${names.length ? ` · ${t("signin.unlocks")}: ${names.join(", ")}` : ""}`;
  }
}

async function signOut() {
  setToken(null);
  app.unlocked = [];
  $("token-input").value = "";
  showSession(null);
  await Promise.all([refresh(), app.command.loadInbox()]);
}

// --- start ----------------------------------------------------------------------------------
async function main() {
  applyDom();
  const slider = $("time");
  slider.max = String(app.steps.length - 1);
  slider.value = String(app.steps.length - 1);
  $("time-today").textContent = app.steps[app.steps.length - 1].date.slice(0, 4);
  try { app.rasters = (await getJSON("/raster/")).rasters || []; } catch (e) { console.warn("rasters", e); }
  timeLabel();
  app.panel = new Panel(app);
  app.command = new CommandView(app);
  if (session.token) {
    try { showSession(await getJSON("/tiles/")); } catch { setToken(null); showSession(null); }
  } else showSession(null);
  await loadCameras();
  app.map2d = new Map2D($("map"), app);
  app.map2d.cones = cones(app.cameraFeatures);
  await app.map2d.init(CENTER, 14);

  let timer = null;
  slider.addEventListener("input", () => {
    timeLabel();
    clearTimeout(timer);
    timer = setTimeout(refresh, 250);
  });
  slider.addEventListener("change", () => { clearTimeout(timer); refresh(); });
  $("mode-2d").addEventListener("click", () => setMode("2d"));
  $("mode-3d").addEventListener("click", () => setMode("3d"));
  $("command-btn").addEventListener("click", () => setCommand(!app.command.on));
  app.map2d.map.on("zoomend", () => { if (app.command.on) app.command.renderLegend(); });
  $("lang").addEventListener("click", () => setLang(currentLang() === "zh" ? "en" : "zh"));
  onLang(() => {
    timeLabel();
    app.map2d.renderTree();
    app.command.onLang();
    if (session.token) getJSON("/tiles/").then(showSession, () => {});
    if (app.panel.current) app.panel.open(app.panel.current.layer, app.panel.current.fid, app.panel.current);
  });
  $("search").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("search-input").value.trim();
    if (text) search(text);
  });
  document.addEventListener("click", (e) => { if (!$("search").contains(e.target)) $("search-results").hidden = true; });
  $("signin").addEventListener("submit", (e) => {
    e.preventDefault();
    const token = $("token-input").value.trim();
    if (token) signIn(token);
  });
  $("signout-btn").addEventListener("click", signOut);
  app.ready = true;
  document.body.dataset.ready = "1";
}

Object.assign(app, { refresh, search, signIn, signOut, setMode, setCommand, CONES, CENTER, settled: () => refreshing });
main().catch((e) => { console.error("viewer failed to start", e); message(String(e.message || e)); });
