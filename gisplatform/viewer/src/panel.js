// The feature panel: attributes of the OGC item (masked as the token allows), the history
// timeline (every version with its valid period) and links to the OGC API.
import { authHeaders, getJSON, q } from "./api.js";
import { CASES, beijing, className, department, el, remainingText } from "./command.js";
import { split, t } from "./i18n.js";

const START_EPOCH = Date.parse("2018-01-01T00:00:00+08:00");
const HIDDEN = new Set(["vid", "valid_from", "valid_to", "count"]);
// a case's fields the case view shows above its timeline (the rest go in its table)
const CASE_SHOWN = new Set(["status", "kind", "big_class", "small_class", "deadline", "overdue", "remaining_s",
  "department", "description", "reporter_name", "reporter_phone", "steps", "case_number", "step_deadline", "step_overdue"]);

function fmt(v) {
  if (v === null || v === undefined) return "—";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

function day(iso) { return iso ? iso.slice(0, 10) : t("panel.current"); }

export class Panel {
  constructor(app) {
    this.app = app;
    this.root = document.getElementById("panel");
    this.body = document.getElementById("panel-body");
    this.current = null;
    this.seq = 0;
    this.photoUrls = []; // object URLs of the case photos shown (revoked on the next open)
    document.getElementById("panel-close").addEventListener("click", () => this.close());
  }

  close() {
    this.root.hidden = true;
    this.current = null;
    this.seq += 1;
    this.dropPhotos();
    this.app.resize();
  }

  // attribute → title of the layer's definition ("中文 English", style metadata), if any
  fieldTitles(layer) {
    const l = this.app.map2d?.style?.layers.find((x) => x.source === layer && x.metadata?.["gisplatform:fields"]);
    return l ? l.metadata["gisplatform:fields"] : {};
  }

  layerTitle(layer) {
    const l = this.app.map2d?.style?.layers.find((x) => x.source === layer && x.metadata?.["gisplatform:title"]);
    return l ? split(l.metadata["gisplatform:title"]) : layer;
  }

  async open(layer, fid, { properties = {} } = {}) {
    const seq = ++this.seq;
    this.current = { layer, fid, properties };
    this.root.hidden = false;
    this.root.dataset.layer = layer;
    this.root.dataset.fid = fid ?? "";
    this.root.dataset.state = "loading";
    this.app.resize();
    const head = [el("h2", { textContent: this.layerTitle(layer) }), el("div", { class: "fid", textContent: fid ?? "" })];
    this.body.replaceChildren(...head, el("p", { textContent: t("panel.loading") }));
    if (layer === CASES && fid !== null && fid !== undefined) return this.openCase(seq, fid, head, properties);
    if (layer === "population-grid" || fid === null || fid === undefined) {
      this.body.replaceChildren(...head, el("p", { textContent: t("panel.aggregate") }), this.table(properties));
      this.root.dataset.state = "done";
      return;
    }
    const time = this.app.time();
    const id = encodeURIComponent(fid);
    const itemUrl = `/ogc/collections/${encodeURIComponent(layer)}/items/${id}?f=json`;
    const historyUrl = `/ogc/collections/${encodeURIComponent(layer)}-history/items${q({ f: "json", fid, limit: 500 })}`;
    const [item, history] = await Promise.allSettled([
      getJSON(`/ogc/collections/${encodeURIComponent(layer)}/items/${id}${q({ f: "json", datetime: time.iso })}`),
      getJSON(historyUrl),
    ]);
    if (seq !== this.seq) return; // another feature was opened meanwhile
    const parts = [...head];
    parts.push(el("h3", { textContent: t("panel.attributes") }));
    if (item.status === "fulfilled") parts.push(this.table(item.value.properties || {}));
    else {
      const st = item.reason?.status;
      parts.push(el("p", { class: "masked", textContent: st === 401 || st === 403 ? t("panel.denied") : st === 404 ? t("panel.notfound") : String(item.reason) }));
      if (Object.keys(properties).length) parts.push(this.table(properties));
    }
    parts.push(el("h3", { textContent: t("panel.history") }));
    if (history.status === "fulfilled") {
      const versions = (history.value.features || []).filter((f) => String(f.properties?.fid ?? fid) === String(fid))
        .sort((a, b) => String(a.properties.valid_from).localeCompare(String(b.properties.valid_from)));
      parts.push(this.timeline(versions, time));
    } else {
      const st = history.reason?.status;
      parts.push(el("p", { class: "masked", textContent: st === 401 || st === 403 ? t("panel.denied") : String(history.reason) }));
    }
    parts.push(el("p", {},
      el("a", { href: itemUrl, target: "_blank", rel: "noopener", textContent: `${t("panel.item")} ↗`, className: "item-link" }),
      " · ",
      el("a", { href: historyUrl, target: "_blank", rel: "noopener", textContent: `${t("panel.historyItems")} ↗` })));
    this.body.replaceChildren(...parts);
    this.root.dataset.state = "done";
  }

  dropPhotos() {
    for (const u of this.photoUrls) URL.revokeObjectURL(u);
    this.photoUrls = [];
  }

  // A case of digital city management: GET /api/cases/{n} — status, deadline, overdue,
  // remaining time and its timeline (steps with photos). The reporter's contact only as
  // the API answers it (masked without read_personal). A refusal shows the API's words.
  async openCase(seq, number, head, properties) {
    let feature;
    try {
      feature = await getJSON(`/api/cases/${encodeURIComponent(number)}`);
    } catch (e) {
      if (seq !== this.seq) return;
      this.dropPhotos();
      const parts = [...head, el("h3", { textContent: t("case.error") }),
        el("p", { class: "masked api-error", textContent: `${e.status ? `${e.status} · ` : ""}${e.message || e}` })];
      const shown = Object.fromEntries(Object.entries(properties || {}).filter(([k]) => !/^reporter_/.test(k)));
      if (Object.keys(shown).length) parts.push(this.table(shown));
      this.body.replaceChildren(...parts);
      this.root.dataset.state = "done";
      return;
    }
    if (seq !== this.seq) return;
    this.dropPhotos();
    const p = feature.properties || {};
    const steps = Array.isArray(p.steps) ? p.steps : [];
    const status = el("span", { class: `status status-${p.status}`, textContent: t(`status.${p.status}`) });
    const yesNo = el("span", { class: p.overdue ? "overdue-flag yes" : "overdue-flag no",
                               textContent: p.overdue ? t("case.yes") : t("case.no") });
    const row = (key, value, field) => el("tr", {}, el("td", { textContent: t(key), dataset: { field } }),
      el("td", { class: typeof value === "string" && /\*\*/.test(value) ? "masked" : "" }, value ?? "—"));
    const summary = el("table", { class: "attributes case-summary" }, el("tbody", {},
      row("case.status", status, "status"),
      row("case.class", className(p) || "—", "class"),
      p.description ? row("case.description", p.description, "description") : null,
      row("case.department", department(p.department), "department"),
      row("case.deadline", beijing(p.deadline), "deadline"),
      row("case.overdue", yesNo, "overdue"),
      row("case.remaining", remainingText(p.remaining_s), "remaining"),
      // before dispatch and after handling: the supervision centre's own step due next
      p.step_deadline && p.status !== "dispatched" ? row("case.stepDeadline",
        `${beijing(p.step_deadline)}${p.step_overdue ? ` (${t("command.overdue")})` : ""}`, "step_deadline") : null,
      "reporter_name" in p && p.reporter_name !== null ? row("case.reporter", p.reporter_name, "reporter_name") : null,
      "reporter_phone" in p && p.reporter_phone !== null ? row("case.phone", p.reporter_phone, "reporter_phone") : null));
    this.root.dataset.status = p.status || "";
    this.root.dataset.overdue = String(!!p.overdue);
    const rest = Object.fromEntries(Object.entries(p).filter(([k]) => !CASE_SHOWN.has(k)));
    const parts = [...head, summary];
    if (!this.app.time().now) parts.push(el("p", { class: "note", textContent: t("case.now") }));
    parts.push(el("h3", { textContent: `${t("case.timeline")} (${steps.length} ${t("case.steps")})` }),
      el("ol", { class: "case-steps" }, ...steps.map((s) => this.caseStep(number, s))),
      el("h3", { textContent: t("panel.attributes") }), this.table(rest),
      el("p", {},
        el("a", { href: `/ogc/collections/${CASES}/items/${encodeURIComponent(number)}?f=json`, target: "_blank",
                  rel: "noopener", textContent: `${t("panel.item")} ↗`, className: "item-link" }),
        " · ",
        el("a", { href: `/ogc/collections/${CASES}-history/items${q({ f: "json", case_number: number, limit: 500 })}`,
                  target: "_blank", rel: "noopener", textContent: `${t("panel.historyItems")} ↗` })));
    this.body.replaceChildren(...parts);
    this.root.dataset.state = "done";
  }

  caseStep(number, s) {
    const photos = el("div", { class: "photos" });
    const li = el("li", { dataset: { step: s.step, at: s.at || "" } },
      el("div", { class: "step-head" },
        el("strong", { class: "step-name", textContent: t(`step.${s.step}`).startsWith("step.") ? s.step : t(`step.${s.step}`) }),
        el("time", { dateTime: s.at || "", textContent: beijing(s.at) })),
      el("div", { class: "step-dept", textContent: department(s.department) }),
      s.note ? el("div", { class: "step-note", textContent: s.note }) : null,
      (s.photos || []).length ? photos : null);
    for (const sha of s.photos || []) photos.append(this.photo(number, sha));
    return li;
  }

  // a photo: fetched with the token (the URL alone would not carry it), shown from a blob
  photo(number, sha) {
    const url = `/api/cases/${encodeURIComponent(number)}/photos/${encodeURIComponent(sha)}.jpg`;
    const img = el("img", { class: "thumb", alt: t("case.photo"), title: sha });
    img.dataset.sha = sha;
    const link = el("a", { class: "photo", target: "_blank", rel: "noopener" }, img);
    const seq = this.seq;
    fetch(url, { headers: authHeaders() }).then(async (r) => {
      if (!r.ok) throw new Error(`${r.status}`);
      const blob = await r.blob();
      if (seq !== this.seq) return;
      const obj = URL.createObjectURL(blob);
      this.photoUrls.push(obj);
      img.src = obj;
      link.href = obj;
      img.dataset.state = "loaded";
    }).catch((e) => {
      if (seq !== this.seq) return;
      img.dataset.state = "failed";
      link.replaceWith(el("span", { class: "masked photo-failed", textContent: `${t("case.photoFailed")} (${e.message || e})` }));
    });
    return link;
  }

  table(props) {
    const titles = this.fieldTitles(this.current?.layer);
    const rows = Object.entries(props).filter(([k]) => !HIDDEN.has(k)).map(([k, v]) => {
      const masked = typeof v === "string" && /\*\*/.test(v);
      const name = titles[k] ? split(titles[k]) : k;
      return el("tr", {}, el("td", { textContent: name, title: k, dataset: { field: k } }),
        el("td", { textContent: fmt(v), class: masked ? "masked" : "" }));
    });
    return el("table", { class: "attributes" }, el("tbody", {}, ...rows));
  }

  // bars on a 2018 → now axis, one per version, then the list (click: move the slider there)
  timeline(versions, time) {
    const now = Date.now();
    const x = (ms) => `${Math.max(0, Math.min(100, ((ms - START_EPOCH) / (now - START_EPOCH)) * 100)).toFixed(2)}%`;
    const box = el("div", { class: "timeline" });
    const years = [];
    for (let y = 2018; y <= new Date(now).getFullYear(); y += 2) years.push(el("span", { textContent: String(y) }));
    box.append(el("div", { class: "axis" }, ...years));
    const atMs = time.now ? now : time.epoch * 1000;
    for (const v of versions) {
      const from = Date.parse(v.properties.valid_from), to = v.properties.valid_to ? Date.parse(v.properties.valid_to) : now;
      const current = from <= atMs && atMs < (v.properties.valid_to ? to : Infinity);
      const track = el("div", { class: "track" });
      const bar = el("div", { class: `bar${current ? " current" : ""}`, title: `${day(v.properties.valid_from)} → ${day(v.properties.valid_to)}` });
      bar.style.left = x(from);
      bar.style.width = `calc(${x(to)} - ${x(from)})`;
      const cursor = el("div", { class: "cursor" });
      cursor.style.left = x(atMs);
      track.append(bar, cursor);
      box.append(track);
    }
    const list = el("ol", { class: "versions" }, ...versions.map((v) => el("li", {
      textContent: `${day(v.properties.valid_from)} → ${day(v.properties.valid_to)}  (vid ${v.id ?? v.properties.vid})`,
      dataset: { validFrom: v.properties.valid_from || "", validTo: v.properties.valid_to || "" },
      onclick: () => this.app.setTimeTo(v.properties.valid_from),
    })));
    return el("div", { class: "history", dataset: { versions: String(versions.length) } },
      el("p", { textContent: `${versions.length} ${t("panel.versions")} · ${t("panel.goto")}` }), box, list);
  }
}
