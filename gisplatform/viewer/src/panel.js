// The feature panel: attributes of the OGC item (masked as the token allows), the history
// timeline (every version with its valid period) and links to the OGC API.
import { getJSON, q } from "./api.js";
import { split, t } from "./i18n.js";

const START_EPOCH = Date.parse("2018-01-01T00:00:00+08:00");
const HIDDEN = new Set(["vid", "valid_from", "valid_to", "count"]);

const el = (tag, props = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") e.className = v; else if (k === "dataset") Object.assign(e.dataset, v); else e[k] = v;
  }
  e.append(...kids.filter((k) => k !== null && k !== undefined));
  return e;
};

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
    document.getElementById("panel-close").addEventListener("click", () => this.close());
  }

  close() {
    this.root.hidden = true;
    this.current = null;
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
