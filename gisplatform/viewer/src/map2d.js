// The 2D map (MapLibre GL JS) over the platform's MapLibre style, and the layer tree.
import * as maplibregl from "maplibre-gl";
import { getJSON, q, rel, session } from "./api.js";
import { CASES, commandFilter, commandLayers } from "./command.js";
import { split, t } from "./i18n.js";

// Layers drawn at first (the others are in the tree, unticked; the hillshade only shows
// outside the orthophotos, and costs a tile per tile)
const DEFAULT_ON = new Set(["ortho", "buildings", "legal-persons", "cameras", "camera-cones"]);
const THEME_ORDER = ["basemap", "base", "housing", "population", "legal_person", "cctv", "city_management", "published"];
const OPACITY_PROPS = { fill: ["fill-opacity"], line: ["line-opacity"], circle: ["circle-opacity", "circle-stroke-opacity"],
                        raster: ["raster-opacity"] };
export const CONES = "camera-cones";
// Orthophoto tiles are asked from this zoom on: a lower tile spans much of the photo and
// takes the server seconds to minutes (titiler over the COG); the hillshade shows below.
export const ORTHO_MINZOOM = 12;

export class Map2D {
  constructor(container, app) {
    this.app = app;
    this.container = container;
    this.user = {}; // source id → {visible, opacity}
    this.style = null;
    this.tiles = { requested: 0 };
    this.cones = null; // GeoJSON of camera view cones (when the token reads cameras)
  }

  async init(center, zoom) {
    const style = await this.fetchStyle();
    this.map = new maplibregl.Map({
      container: this.container, style, center, zoom, attributionControl: false,
      maxPitch: 60, fadeDuration: 0,
      transformRequest: (url, type) => {
        // the token goes in a header, never into tile URLs
        const same = url.startsWith(location.origin) || url.startsWith("/");
        if (type === "Tile") this.tiles.requested += 1;
        return same && session.token ? { url, headers: { Authorization: `Bearer ${session.token}` } } : { url };
      },
    });
    this.map.addControl(new maplibregl.NavigationControl({ visualizePitch: true }), "top-right");
    this.map.addControl(new maplibregl.ScaleControl({ unit: "metric" }), "bottom-right");
    // the attributions of the sources shown (a registered basemap's, e.g. 天地图), nothing else
    this.map.addControl(new maplibregl.AttributionControl({ compact: true }), "bottom-left");
    this.map.on("click", (e) => this.onClick(e));
    this.map.on("mousemove", (e) => {
      const f = this.map.queryRenderedFeatures(e.point, { layers: this.interactiveLayers() });
      this.map.getCanvas().style.cursor = f.length ? "pointer" : "";
    });
    await new Promise((ok) => this.map.once("load", ok));
    this.renderTree();
  }

  // The platform's style at the slider's time, for the signed-in token, prepared for drawing
  async fetchStyle() {
    const time = this.app.time();
    const style = await getJSON(`/tiles/style.json${q({ datetime: time.iso })}`);
    for (const src of Object.values(style.sources)) if (src.tiles) src.tiles = src.tiles.map(rel);
    const ortho = this.app.orthoAt(time);
    // raster series asked by their raster's own time: the URL (and the browser's cache) only
    // changes when the slider passes to another orthophoto
    if (style.sources.ortho && ortho) {
      style.sources.ortho.tiles = [`/raster/ortho/{z}/{x}/{y}.png${q({ datetime: ortho.time })}`];
      style.sources.ortho.minzoom = ORTHO_MINZOOM;
    }
    const dem = this.app.demAt(time);
    if (style.sources.hillshade && dem) style.sources.hillshade.tiles = [`/raster/dem/hillshade/{z}/{x}/{y}.png${q({ datetime: dem.time })}`];
    if (this.cones && style.sources.cameras) {
      style.sources[CONES] = { type: "geojson", data: this.cones };
      const at = style.layers.findIndex((l) => l.source === "cameras");
      style.layers.splice(at, 0, {
        id: `${CONES}-fill`, type: "fill", source: CONES,
        metadata: { "gisplatform:theme": "cctv", "gisplatform:title": `${t("layer.cones")}`, "gp:cones": true },
        paint: { "fill-color": "#e31a1c", "fill-opacity": 0.18 } });
    }
    if (this.app.command?.on && style.sources[CASES]) {
      // the command view: open cases by status, the overdue ringed, on top of everything
      const own = style.layers.find((l) => l.source === CASES && l.id.endsWith("-point"));
      style.layers = style.layers.filter((l) => l !== own);
      style.layers.push(...commandLayers(this.app.command.instant(), own?.metadata?.["gisplatform:title"] || CASES));
    }
    for (const layer of style.layers) {
      if (!layer.source) continue;
      const props = OPACITY_PROPS[layer.type] || [];
      layer.metadata = { ...(layer.metadata || {}), "gp:base": Object.fromEntries(props.map((p) => [p, layer.paint?.[p] ?? 1])) };
      // the base map (a layer of theme "basemap", e.g. roads, water, place names) starts on;
      // a registered external basemap only when the operator marked it default
      const u = this.userOf(layer.source, layer.metadata["gisplatform:theme"] === "basemap"
        && layer.layout?.visibility !== "none");
      layer.layout = { ...(layer.layout || {}), visibility: u.visible ? "visible" : "none" };
      for (const p of props) {
        const base = layer.metadata["gp:base"][p];
        layer.paint = { ...(layer.paint || {}), [p]: typeof base === "number" ? base * u.opacity : base };
      }
    }
    this.style = style;
    return style;
  }

  userOf(source, on = false) {
    if (!this.user[source]) this.user[source] = { visible: on || DEFAULT_ON.has(source), opacity: 1 };
    return this.user[source];
  }

  // Time moved or the token changed: same sources → new tile URLs; otherwise a style diff
  async refresh() {
    const before = this.style;
    const style = await this.fetchStyle();
    const ids = (s) => JSON.stringify([Object.keys(s.sources), s.layers.map((l) => l.id)]);
    if (before && ids(before) === ids(style)) {
      // filters first (the command view's carry the instant), drawn once before new tile
      // URLs: MapLibre pauses a source while its layers change and drops the news of a
      // new URL that comes meanwhile (it would redraw the old tiles, never fetch the new)
      const filters = style.layers.filter((l) => this.map.getLayer(l.id)
        && JSON.stringify(before.layers.find((x) => x.id === l.id)?.filter) !== JSON.stringify(l.filter));
      for (const l of filters) this.map.setFilter(l.id, l.filter);
      if (filters.length) await this.frame();
      for (const [id, src] of Object.entries(style.sources)) {
        const live = this.map.getSource(id);
        if (src.tiles && JSON.stringify(before.sources[id].tiles) !== JSON.stringify(src.tiles)) live.setTiles(src.tiles);
        if (src.type === "geojson") live.setData(src.data);
      }
    } else {
      this.map.setStyle(style, { diff: true });
    }
    this.renderTree();
  }

  setCones(geojson) {
    this.cones = geojson;
    const src = this.map?.getSource(CONES);
    if (src && geojson) src.setData(geojson);
    else return this.refresh();
  }

  // one frame drawn (the style's changes applied), or a second passed
  frame() {
    return new Promise((ok) => {
      const done = () => { clearTimeout(timer); this.map.off("render", done); ok(); };
      const timer = setTimeout(done, 1000);
      this.map.on("render", done);
      this.map.triggerRepaint();
    });
  }

  // the command view at another instant (its filters only)
  setCommandInstant(at) {
    for (const l of this.style?.layers || []) {
      const which = l.metadata?.["gp:command"];
      if (!which) continue;
      l.filter = commandFilter(which, at);
      if (this.map.getLayer(l.id)) this.map.setFilter(l.id, l.filter);
    }
  }

  interactiveLayers() {
    if (!this.style) return [];
    return this.style.layers.filter((l) => l.source && l.type !== "raster" && this.userOf(l.source).visible
      && this.map.getLayer(l.id)).map((l) => l.id);
  }

  onClick(e) {
    const feats = this.map.queryRenderedFeatures(e.point, { layers: this.interactiveLayers() });
    const f = feats.find((x) => x.source !== CONES) || feats[0];
    if (!f) return;
    const p = f.properties || {};
    if (p.count !== undefined && p.fid === undefined) { // a cluster: zoom in on it
      this.map.easeTo({ center: e.lngLat, zoom: Math.min(this.map.getZoom() + 2, 18) });
      return;
    }
    const layer = f.source === CONES ? "cameras" : f.source;
    this.app.openFeature(layer, p.fid ?? p.code ?? null, { properties: p, lngLat: [e.lngLat.lng, e.lngLat.lat] });
  }

  // --- the layer tree ---------------------------------------------------------------
  renderTree() {
    const tree = document.getElementById("tree");
    const groups = new Map();
    const seen = new Set();
    for (const layer of this.style.layers) {
      if (!layer.source || seen.has(layer.source)) continue;
      seen.add(layer.source);
      const md = layer.metadata || {};
      const theme = layer.type === "raster" ? "basemap" : md["gisplatform:theme"] || "base";
      // rasters: the platform's own by i18n key, registered basemaps by their "中文 English" title
      const title = layer.source === CONES ? t("layer.cones")
        : layer.type === "raster" && !md["gisplatform:title"] ? t(`layer.${layer.source}`)
        : split(md["gisplatform:title"]) || layer.source;
      if (!groups.has(theme)) groups.set(theme, []);
      groups.get(theme).push({ source: layer.source, title, swatch: this.swatch(layer.source) });
    }
    const themes = [...groups.keys()].sort((a, b) => THEME_ORDER.indexOf(a) - THEME_ORDER.indexOf(b));
    tree.replaceChildren(...themes.map((theme) => {
      const div = document.createElement("div");
      div.className = "theme";
      div.dataset.theme = theme;
      const h = document.createElement("h3");
      h.textContent = t(`theme.${theme}`);
      div.append(h, ...groups.get(theme).map((entry) => this.row(entry)));
      return div;
    }));
    if (this.app.map3d) this.app.map3d.syncLayers();
  }

  row({ source, title, swatch }) {
    const u = this.userOf(source);
    const row = document.createElement("div");
    row.className = "layer-row";
    row.dataset.layer = source;
    const cb = document.createElement("input");
    cb.type = "checkbox";
    cb.checked = u.visible;
    cb.id = `layer-${source}`;
    cb.addEventListener("change", () => this.setVisible(source, cb.checked));
    const sw = document.createElement("span");
    sw.className = `swatch ${swatch.kind}`;
    sw.style.background = swatch.css;
    const label = document.createElement("label");
    label.htmlFor = cb.id;
    label.textContent = title;
    const op = document.createElement("input");
    op.type = "range"; op.min = "0"; op.max = "100"; op.value = String(Math.round(u.opacity * 100));
    op.className = "opacity";
    op.title = t("opacity");
    op.addEventListener("input", () => this.setOpacity(source, Number(op.value) / 100));
    row.append(cb, sw, label, op);
    return row;
  }

  // the legend colour of a source: its layers' paint colours (a ramp for interpolations)
  swatch(source) {
    const layers = this.style.layers.filter((l) => l.source === source);
    const main = layers.find((l) => l.type !== "line" && !/-cluster$/.test(l.id)) || layers[0];
    if (!main) return { kind: "", css: "#ccc" };
    if (main.type === "raster") return { kind: "", css: source === "ortho" ? "linear-gradient(135deg,#6b8f4e,#c8b27a)" : "linear-gradient(135deg,#eee,#777)" };
    const color = main.paint?.[`${main.type}-color`];
    const kind = main.type === "circle" ? "point" : "";
    if (Array.isArray(color) && color[0] === "interpolate") {
      const stops = color.slice(3).filter((_, i) => i % 2 === 1);
      return { kind, css: `linear-gradient(90deg,${stops.join(",")})` };
    }
    if (Array.isArray(color) && color[0] === "match") { // by category (the command view's statuses)
      const outs = color.slice(2, -1).filter((_, i) => i % 2 === 1);
      return { kind, css: `linear-gradient(90deg,${outs.join(",")})` };
    }
    return { kind, css: typeof color === "string" ? color : "#888" };
  }

  setVisible(source, visible) {
    this.userOf(source).visible = visible;
    for (const l of this.style.layers.filter((x) => x.source === source)) {
      l.layout = { ...(l.layout || {}), visibility: visible ? "visible" : "none" };
      if (this.map.getLayer(l.id)) this.map.setLayoutProperty(l.id, "visibility", visible ? "visible" : "none");
    }
    if (this.app.map3d) this.app.map3d.syncLayers();
  }

  setOpacity(source, opacity) {
    this.userOf(source).opacity = opacity;
    for (const l of this.style.layers.filter((x) => x.source === source)) {
      for (const [p, base] of Object.entries(l.metadata?.["gp:base"] || {})) {
        if (typeof base !== "number") continue;
        l.paint[p] = base * opacity;
        if (this.map.getLayer(l.id)) this.map.setPaintProperty(l.id, p, base * opacity);
      }
    }
    if (this.app.map3d) this.app.map3d.syncLayers();
  }

  zoomTo(hit) {
    const [w, s, e, n] = hit.bbox || [];
    if (hit.bbox && (e - w > 1e-5 || n - s > 1e-5)) {
      this.map.fitBounds([[w, s], [e, n]], { padding: 80, maxZoom: 17, duration: 600 });
    } else {
      this.map.flyTo({ center: [hit.lon, hit.lat], zoom: 17, duration: 600 });
    }
  }

  resize() { this.map?.resize(); }
}
