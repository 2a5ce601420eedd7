// The field supervisors' phone page (/viewer/report.html, 城管通 · 无线数据采集): a problem seen
// on patrol reported with a photo, its position and its class (事件 / 部件, big and small
// class) to the case workflow — POST /api/cases, then the photo to
// POST /api/cases/{n}/photos —; the reports this phone made ("my reports", kept in
// localStorage) with their status and deadline from GET /api/cases/{n}. A report made
// without a network waits in a queue (IndexedDB, the photo with it) and is posted when the
// network is back (the `online` event, or a retry every 30 s).
//
// The token is the viewer's (api.js session: sessionStorage "gp.token"); the map is the
// platform's own style (/tiles/style.json: public layers only), never an online basemap.
import * as maplibregl from "maplibre-gl";
import { getJSON, HttpError, rel, send, session, setToken } from "./api.js";
import { addText, applyDom, currentLang, onLang, setLang, t } from "./i18n.js";

addText({
  zh: {
    "report.title": "城管通", "report.subtitle": "无线数据采集", "report.map": "地图", "report.offline": "离线",
    "report.new": "上报问题", "report.photo": "照片", "report.photo.take": "拍照 / 选择照片", "report.photo.clear": "移除",
    "report.photo.big": "照片超过 10 MB", "report.photo.type": "照片须为 JPEG、PNG 或 HEIC",
    "report.photo.nopreview": "（此格式无法预览）",
    "report.position": "位置", "report.locate": "定位", "report.locating": "正在定位…", "report.locate.none": "本设备不支持定位",
    "report.locate.failed": "定位失败", "report.position.none": "未定位：请点“定位”或点击地图",
    "report.position.gps": "设备定位", "report.position.map": "地图选点", "report.map.hint": "也可点击地图选择位置",
    "report.map.none": "地图不可用，请用设备定位", "report.position.coarse": "精度较低，可在地图上点选",
    "report.class": "类别", "report.kind": "类型", "report.big": "大类", "report.small": "小类", "report.choose": "请选择",
    "report.small.none": "（不选）", "report.small.empty": "（无小类）", "report.classes.failed": "无法读取案件类别",
    "report.source": "来源", "report.source.patrol": "监督员巡查",
    "report.description": "问题描述", "report.description.placeholder": "问题情况、具体位置等",
    "report.submit": "提交上报", "report.sending": "正在提交…",
    "report.need.token": "请先登录", "report.need.position": "请先定位或在地图上选点", "report.need.class": "请选择类型和大类",
    "report.done": "已上报，案件编号", "report.photo.ok": "照片已上传", "report.photo.warning": "照片提示",
    "report.photo.failed": "照片未上传", "report.failed": "上报失败",
    "report.queued": "当前离线：已存入待发送队列，联网后自动发送", "report.queue.failed": "无法保存到待发送队列",
    "report.queue": "待发送", "report.queue.hint": "联网后自动发送", "report.queue.send": "立即发送",
    "report.queue.delete": "删除", "report.queue.photo": "含照片", "report.queue.sent": "离线上报已发送，案件编号",
    "report.queue.case": "案件已建立，待传照片", "report.queue.signin": "请登录后发送",
    "report.mine": "我的上报", "report.mine.refresh": "刷新", "report.mine.empty": "本机还没有上报",
    "report.deadline": "处置期限", "report.deadline.none": "派遣后计时", "report.overdue": "已超期",
    "report.notfound": "查无此案件",
    "report.signin.unchecked": "已保存（离线，未验证）",
  },
  en: {
    "report.title": "City patrol", "report.subtitle": "field reports", "report.map": "Map", "report.offline": "offline",
    "report.new": "Report a problem", "report.photo": "Photo", "report.photo.take": "Take / choose a photo", "report.photo.clear": "remove",
    "report.photo.big": "The photo is over 10 MB", "report.photo.type": "The photo must be JPEG, PNG or HEIC",
    "report.photo.nopreview": "(no preview for this format)",
    "report.position": "Position", "report.locate": "Locate me", "report.locating": "Locating…", "report.locate.none": "No location on this device",
    "report.locate.failed": "Location failed", "report.position.none": "No position: press Locate me or tap the map",
    "report.position.gps": "device", "report.position.map": "tapped on the map", "report.map.hint": "Or tap the map to place it",
    "report.map.none": "No map here: use the device's position", "report.position.coarse": "coarse: tap the map to be exact",
    "report.class": "Class", "report.kind": "Kind", "report.big": "Big class", "report.small": "Small class", "report.choose": "Choose",
    "report.small.none": "(none)", "report.small.empty": "(no small classes)", "report.classes.failed": "Could not read the case classes",
    "report.source": "Source", "report.source.patrol": "supervisor's patrol",
    "report.description": "Description", "report.description.placeholder": "What is wrong, exactly where",
    "report.submit": "Submit", "report.sending": "Submitting…",
    "report.need.token": "Sign in first", "report.need.position": "Locate or tap the map first", "report.need.class": "Choose a kind and a big class",
    "report.done": "Reported, case number", "report.photo.ok": "photo uploaded", "report.photo.warning": "Photo",
    "report.photo.failed": "Photo not uploaded", "report.failed": "Not reported",
    "report.queued": "Offline: queued, sent when the network is back", "report.queue.failed": "Could not queue the report",
    "report.queue": "Waiting to send", "report.queue.hint": "sent when online", "report.queue.send": "Send now",
    "report.queue.delete": "delete", "report.queue.photo": "with photo", "report.queue.sent": "Queued report sent, case number",
    "report.queue.case": "case created, photo waiting", "report.queue.signin": "sign in to send",
    "report.mine": "My reports", "report.mine.refresh": "refresh", "report.mine.empty": "No reports from this phone yet",
    "report.deadline": "deadline", "report.deadline.none": "set at dispatch", "report.overdue": "overdue",
    "report.notfound": "no such case",
    "report.signin.unchecked": "kept (offline, not checked)",
  },
});

const $ = (id) => document.getElementById(id);
const MINE = "gp.report.mine"; // [{n, at, kind, big, status, deadline, overdue}] newest first
const CLASSES = "gp.report.classes"; // the last class table read, for a start offline
const MAX_MINE = 100;
const PHOTO_TYPES = ["image/jpeg", "image/png", "image/heic", "image/heif"];
const BY_EXT = { jpg: "image/jpeg", jpeg: "image/jpeg", png: "image/png", heic: "image/heic", heif: "image/heif" };
const MAX_PHOTO = 10 << 20; // the platform's limit (cases/photos.py)
const RETRY_MS = 30000;
const COARSE_M = 50; // a device fix less exact than this: say so (tap the map instead)
// the platform's public layers drawn under the point: the base map and these
const SHOWN = new Set(["admin-areas", "grid-cells", "buildings", "addresses", "cases"]);

const state = { classes: null, position: null, photo: null, photoUrl: null, map: null, marker: null,
                flushing: false, locating: false, sessionNote: null, mapError: null };

// --- small helpers -------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.dataset[k.slice(5).replace(/-([a-z])/g, (_, c) => c.toUpperCase())] = v;
    else e[k] = v;
  }
  e.append(...children.filter((c) => c !== null && c !== undefined));
  return e;
}

// an instant as the city's wall clock (UTC+8), whatever the phone's zone: "2026-11-30 10:15"
function cityTime(iso) {
  const ms = Date.parse(iso);
  return Number.isNaN(ms) ? "" : new Date(ms + 8 * 3600e3).toISOString().slice(0, 16).replace("T", " ");
}

const networkError = (e) => !(e instanceof HttpError);

function kindOf(code) { return state.classes?.kinds.find((k) => k.code === code); }
function kindName(code) {
  const k = kindOf(code);
  return k ? (currentLang() === "zh" ? k.name : k.name_en || k.name) : code;
}
function bigName(kind, code) {
  const b = kindOf(kind)?.big_classes.find((x) => x.code === code);
  return b ? `${b.code} ${b.name}` : code;
}
function statusName(s) { return s ? t(`status.${s}`) : ""; }

// --- sign in (the viewer's session: api.js) ------------------------------------------------

// `note`: a text key said instead of "signed in"
function showSession(note = null) {
  const signed = !!session.token;
  state.sessionNote = note;
  $("signin").hidden = signed;
  $("signed-in").hidden = !signed;
  $("signed-in-text").textContent = signed ? t(note || "signin.ok") : "";
}

async function signIn(token) {
  $("signin-msg").textContent = "";
  $("signin-btn").disabled = true;
  try {
    await getJSON("/api/cases/limits", { token }); // any call with a bad token is a 401
    setToken(token);
    showSession();
    $("token-input").value = "";
    flush();
  } catch (e) {
    if (networkError(e)) { // offline: kept, checked by the first post
      setToken(token);
      showSession("report.signin.unchecked");
      $("token-input").value = "";
    } else {
      $("signin-msg").textContent = e.status === 401 ? `${t("signin.bad")}: ${e.message}` : e.message;
    }
  } finally {
    $("signin-btn").disabled = false;
  }
}

function signOut() {
  setToken(null);
  showSession();
}

// --- classes -------------------------------------------------------------------------------

async function loadClasses() {
  try {
    state.classes = await getJSON("/api/cases/classes", { token: null }); // public
    localStorage.setItem(CLASSES, JSON.stringify(state.classes));
  } catch (e) {
    try { state.classes = JSON.parse(localStorage.getItem(CLASSES) || "null"); } catch { state.classes = null; }
    if (!state.classes) showResult("error", `${t("report.classes.failed")}: ${e.message}`);
  }
  fillKinds();
}

function options(select, items, { placeholder, keep } = {}) {
  const before = keep ? select.value : "";
  select.replaceChildren(...(placeholder ? [new Option(placeholder, "")] : []),
    ...items.map(([value, label]) => new Option(label, value)));
  if (before && items.some(([v]) => v === before)) select.value = before;
}

function fillKinds(keep = false) {
  const kinds = state.classes?.kinds || [];
  options($("kind"), kinds.map((k) => [k.code, kindName(k.code)]), { placeholder: t("report.choose"), keep });
  fillBig(keep);
}

function fillBig(keep = false) {
  const kind = kindOf($("kind").value);
  options($("big-class"), (kind?.big_classes || []).map((b) => [b.code, `${b.code} ${b.name}`]),
          { placeholder: t("report.choose"), keep });
  $("big-class").disabled = !kind;
  fillSmall(keep);
}

function fillSmall(keep = false) {
  const big = kindOf($("kind").value)?.big_classes.find((b) => b.code === $("big-class").value);
  const small = big?.small_classes || [];
  options($("small-class"), small.map((s) => [s.code, `${s.code} ${s.name}`]),
          { placeholder: t(big && !small.length ? "report.small.empty" : "report.small.none"), keep });
  $("small-class").disabled = !small.length;
}

// --- photo ---------------------------------------------------------------------------------

function photoType(file) {
  if (PHOTO_TYPES.includes(file.type)) return file.type;
  const ext = /\.([a-z0-9]+)$/i.exec(file.name || "")?.[1]?.toLowerCase();
  return BY_EXT[ext] || file.type || "";
}

function clearPhoto() {
  if (state.photoUrl) URL.revokeObjectURL(state.photoUrl);
  state.photo = state.photoUrl = null;
  $("photo-input").value = "";
  $("photo-figure").hidden = true;
  $("photo-clear").hidden = true;
  $("photo-preview").removeAttribute("src");
}

function onPhoto() {
  const file = $("photo-input").files[0];
  clearResult();
  if (!file) return;
  const type = photoType(file);
  if (!PHOTO_TYPES.includes(type)) { clearPhoto(); return showResult("error", t("report.photo.type")); }
  if (file.size > MAX_PHOTO) { clearPhoto(); return showResult("error", t("report.photo.big")); }
  if (state.photoUrl) URL.revokeObjectURL(state.photoUrl);
  state.photo = file;
  state.photoUrl = URL.createObjectURL(file);
  const img = $("photo-preview");
  img.hidden = false;
  img.onerror = () => { img.hidden = true; $("photo-info").textContent += ` ${t("report.photo.nopreview")}`; };
  img.src = state.photoUrl;
  $("photo-info").textContent = `${file.name || ""} · ${Math.max(1, Math.round(file.size / 1024))} KB`;
  $("photo-figure").hidden = false;
  $("photo-clear").hidden = false;
}

// --- position ------------------------------------------------------------------------------

function showPosition() {
  const out = $("position");
  const p = state.position;
  if (!p) {
    if (!state.locating && out.dataset.state !== "failed") {
      out.dataset.state = "none";
      out.textContent = t("report.position.none");
    }
    return;
  }
  out.dataset.state = "set";
  out.dataset.how = p.how;
  out.dataset.lon = String(p.lon);
  out.dataset.lat = String(p.lat);
  const how = p.how === "gps" ? `${t("report.position.gps")}${p.accuracy ? ` ±${Math.round(p.accuracy)} m` : ""}`
    : t("report.position.map");
  const coarse = p.how === "gps" && p.accuracy > COARSE_M;
  out.classList.toggle("coarse", coarse);
  out.textContent = `${p.lat.toFixed(6)}, ${p.lon.toFixed(6)} (${how})${coarse ? ` ${t("report.position.coarse")}` : ""}`;
}

function setPosition(lon, lat, how, accuracy = null) {
  state.position = { lon, lat, how, accuracy };
  showPosition();
  if (state.map) {
    if (!state.marker) state.marker = new maplibregl.Marker({ color: "#d7301f" });
    state.marker.setLngLat([lon, lat]).addTo(state.map);
    if (how === "gps") state.map.jumpTo({ center: [lon, lat], zoom: Math.max(state.map.getZoom(), 16) });
  }
}

function locate() {
  const out = $("position");
  if (!navigator.geolocation) {
    out.dataset.state = "failed";
    out.textContent = t("report.locate.none");
    return;
  }
  state.locating = true;
  out.dataset.state = "locating";
  out.textContent = t("report.locating");
  navigator.geolocation.getCurrentPosition((p) => {
    state.locating = false;
    setPosition(p.coords.longitude, p.coords.latitude, "gps", p.coords.accuracy);
  }, (e) => {
    state.locating = false;
    if (state.position) return showPosition();
    out.dataset.state = "failed";
    out.textContent = `${t("report.locate.failed")}: ${e.message || e.code}`;
  }, { enableHighAccuracy: true, timeout: 20000, maximumAge: 10000 });
}

// the platform's style, public layers only (no token: no personal layer, and the style
// stays the same whoever signs in), the base map and the layers that help place a point
function prepareStyle(style) {
  style.layers = style.layers.filter((l) => !l.source || (style.sources[l.source]?.type !== "raster"
    && (l.metadata?.["gisplatform:theme"] === "basemap" || SHOWN.has(l.source))));
  const used = new Set(style.layers.map((l) => l.source).filter(Boolean));
  for (const id of Object.keys(style.sources)) {
    if (!used.has(id)) delete style.sources[id];
    else if (style.sources[id].tiles) style.sources[id].tiles = style.sources[id].tiles.map(rel);
  }
  if (style["font-faces"]) {
    for (const [k, v] of Object.entries(style["font-faces"])) {
      style["font-faces"][k] = typeof v === "string" ? rel(v) : v.map((f) => ({ ...f, url: rel(f.url) }));
    }
  }
  return style;
}

async function initMap() {
  try {
    const style = prepareStyle(await getJSON("/tiles/style.json", { token: null }));
    const p = state.position;
    const map = new maplibregl.Map({
      container: "map", style, center: p ? [p.lon, p.lat] : style.center, zoom: p ? 16 : (style.zoom || 10) + 1,
      attributionControl: false, fadeDuration: 0, maxPitch: 0, dragRotate: false, pitchWithRotate: false,
      touchPitch: false, cooperativeGestures: true, // one finger scrolls the page, two move the map
      locale: { "CooperativeGesturesHandler.MobileHelpText": currentLang() === "zh" ? "用双指移动地图" : "Use two fingers to move the map",
                "CooperativeGesturesHandler.WindowsHelpText": currentLang() === "zh" ? "按住 Ctrl 键并滚动以缩放地图" : "Use Ctrl + scroll to zoom the map",
                "CooperativeGesturesHandler.MacHelpText": currentLang() === "zh" ? "按住 ⌘ 键并滚动以缩放地图" : "Use ⌘ + scroll to zoom the map" },
    });
    map.touchZoomRotate.disableRotation();
    map.addControl(new maplibregl.NavigationControl({ showCompass: false }), "top-right");
    map.on("click", (e) => setPosition(e.lngLat.lng, e.lngLat.lat, "map"));
    // a tile that cannot be fetched (offline) is no error of the page: the map shows what it has
    map.on("error", (e) => { state.mapError = String(e.error?.message || e.error || e); });
    state.map = map;
    if (p) setPosition(p.lon, p.lat, p.how, p.accuracy);
    map.once("load", () => { document.body.dataset.map = "1"; });
  } catch (e) {
    $("map").replaceChildren(el("p", { class: "hint" }, `${t("report.map.none")} (${e.message})`));
    document.body.dataset.map = "0";
  }
}

// --- results -------------------------------------------------------------------------------

function clearResult() {
  $("result").hidden = true;
  $("result").replaceChildren();
  delete $("result").dataset.state;
  delete $("result").dataset.case;
}

function showResult(kind, ...lines) {
  const r = $("result");
  r.hidden = false;
  r.dataset.state = kind; // done | queued | error | sent
  r.className = kind;
  r.replaceChildren(...lines.filter(Boolean).map((l) => (typeof l === "string" ? el("p", {}, l) : l)));
}

function showPosted(out, { queued = false } = {}) {
  const lines = [el("p", {}, `${t(queued ? "report.queue.sent" : "report.done")} `,
                    el("b", { id: "case-number" }, out.caseNumber))];
  if (out.photo) {
    lines.push(out.photo.warning
      ? el("p", { id: "photo-warning", class: "warning" }, `${t("report.photo.warning")}: ${out.photo.warning}`)
      : el("p", { id: "photo-ok" }, t("report.photo.ok")));
  }
  if (out.photoError) lines.push(el("p", { id: "photo-error", class: "error" }, `${t("report.photo.failed")}: ${out.photoError.message}`));
  showResult(out.photoError ? "error" : queued ? "sent" : "done", ...lines);
  $("result").dataset.case = out.caseNumber;
}

// --- posting -------------------------------------------------------------------------------

// A report (and its photo) to the platform. The case first (its number is kept on the item,
// so a photo that fails for want of a network is posted alone later), then the photo. A
// network failure rejects (a TypeError); an HttpError of the case rejects; one of the photo
// is in the answer (`photoError`): the case stands.
async function post(item) {
  if (!item.caseNumber) {
    const created = await send("/api/cases", item.feature);
    item.caseNumber = created.properties.case_number;
    remember(item.caseNumber, created.properties);
  }
  const out = { caseNumber: item.caseNumber, photo: null, photoError: null };
  if (item.photo) {
    try {
      out.photo = await send(`/api/cases/${encodeURIComponent(item.caseNumber)}/photos`,
                             new Blob([item.photo.bytes], { type: item.photo.type }));
    } catch (e) {
      if (networkError(e)) throw e;
      out.photoError = e;
    }
  }
  return out;
}

async function onSubmit(ev) {
  ev.preventDefault();
  clearResult();
  const kind = $("kind").value;
  const big = $("big-class").value;
  const problems = [];
  if (!session.token) problems.push(t("report.need.token"));
  if (!state.position) problems.push(t("report.need.position"));
  if (!kind || !big) problems.push(t("report.need.class"));
  if (problems.length) return showResult("error", problems.join("；"));
  const properties = { kind, big_class: big, source: "patrol" };
  if ($("small-class").value) properties.small_class = $("small-class").value;
  const text = $("description").value.trim();
  if (text) properties.description = text;
  const { lon, lat } = state.position;
  const item = { feature: { type: "Feature", geometry: { type: "Point", coordinates: [lon, lat] }, properties },
                 photo: null, at: new Date().toISOString() };
  const button = $("submit-btn");
  button.disabled = true;
  button.textContent = t("report.sending");
  try {
    if (state.photo) {
      item.photo = { bytes: await state.photo.arrayBuffer(), type: photoType(state.photo), name: state.photo.name || "" };
    }
    if (!navigator.onLine) throw new TypeError("offline");
    showPosted(await post(item));
    resetForm();
  } catch (e) {
    if (!networkError(e)) {
      showResult("error", `${t("report.failed")}: ${e.message}`);
    } else {
      try {
        await enqueue(item);
        showResult("queued", t("report.queued"));
        resetForm();
      } catch (qe) {
        showResult("error", `${t("report.queue.failed")}: ${qe.message || qe}`);
      }
    }
  } finally {
    button.disabled = false;
    button.textContent = t("report.submit");
    renderQueue();
    renderMine();
  }
}

function resetForm() {
  clearPhoto();
  $("description").value = "";
  $("small-class").value = "";
}

// --- my reports ----------------------------------------------------------------------------

function readMine() {
  try { return JSON.parse(localStorage.getItem(MINE) || "[]"); } catch { return []; }
}

function writeMine(list) { localStorage.setItem(MINE, JSON.stringify(list.slice(0, MAX_MINE))); }

function remember(n, props) {
  const list = readMine().filter((x) => x.n !== n);
  list.unshift({ n, at: props.reported_at || new Date().toISOString(), kind: props.kind, big: props.big_class,
                 status: props.status, deadline: props.deadline || null, overdue: !!props.overdue });
  writeMine(list);
}

function renderMine() {
  const list = readMine();
  $("mine-empty").hidden = list.length > 0;
  $("mine-list").replaceChildren(...list.map((x) => el("li", { "data-case": x.n, "data-status": x.status || "" },
    el("div", { class: "line" }, el("b", { class: "num" }, x.n), " ",
       el("span", { class: `status s-${x.status || "unknown"}` }, x.missing ? t("report.notfound") : statusName(x.status))),
    el("div", { class: "meta" }, `${kindName(x.kind)} ${bigName(x.kind, x.big)} · ${cityTime(x.at)}`),
    el("div", { class: `deadline${x.overdue ? " overdue" : ""}` }, `${t("report.deadline")}: `,
       x.deadline ? cityTime(x.deadline) : t("report.deadline.none"),
       x.overdue ? ` · ${t("report.overdue")}` : ""))));
}

async function refreshMine() {
  const list = readMine();
  await Promise.all(list.slice(0, 30).map(async (x) => {
    try {
      const p = (await getJSON(`/api/cases/${encodeURIComponent(x.n)}`)).properties;
      Object.assign(x, { status: p.status, deadline: p.deadline || null, overdue: !!p.overdue, missing: false });
    } catch (e) {
      if (e instanceof HttpError && e.status === 404) x.missing = true; // else: offline, keep what we had
    }
  }));
  // a report made meanwhile is kept
  const now = readMine();
  const fresh = new Map(list.map((x) => [x.n, x]));
  writeMine(now.map((x) => fresh.get(x.n) || x));
  renderMine();
  document.body.dataset.mine = String(Date.now());
}

// --- the queue (IndexedDB) -----------------------------------------------------------------

let dbOpen = null;
function db() {
  dbOpen ||= new Promise((ok, no) => {
    const r = indexedDB.open("gp-report", 1);
    r.onupgradeneeded = () => r.result.createObjectStore("queue", { keyPath: "id", autoIncrement: true });
    r.onsuccess = () => ok(r.result);
    r.onerror = () => { dbOpen = null; no(r.error); };
  });
  return dbOpen;
}

async function store(mode, fn) {
  const d = await db();
  return new Promise((ok, no) => {
    const tx = d.transaction("queue", mode);
    const req = fn(tx.objectStore("queue"));
    tx.oncomplete = () => ok(req.result);
    tx.onerror = () => no(tx.error);
    tx.onabort = () => no(tx.error);
  });
}

const queued = () => store("readonly", (s) => s.getAll());
const enqueue = (item) => store("readwrite", (s) => s.put(item));
const dequeue = (id) => store("readwrite", (s) => s.delete(id));

async function renderQueue() {
  let items = [];
  try { items = await queued(); } catch { /* no IndexedDB here: nothing queued */ }
  $("queue-box").hidden = items.length === 0;
  $("queue-count").textContent = items.length ? `(${items.length})` : "";
  $("queue-list").replaceChildren(...items.map((it) => {
    const p = it.feature.properties;
    const del = el("button", { type: "button", class: "link" }, t("report.queue.delete"));
    del.addEventListener("click", async () => { await dequeue(it.id); renderQueue(); });
    return el("li", { "data-id": String(it.id) },
      el("div", { class: "line" }, `${kindName(p.kind)} ${bigName(p.kind, p.big_class)}`, " ", del),
      el("div", { class: "meta" }, cityTime(it.at), it.photo ? ` · ${t("report.queue.photo")}` : "",
         it.caseNumber ? ` · ${it.caseNumber} ${t("report.queue.case")}` : "",
         !session.token ? ` · ${t("report.queue.signin")}` : ""),
      it.error ? el("div", { class: "error" }, it.error) : null);
  }));
  document.body.dataset.queue = String(items.length);
}

// Post what waits, oldest first; stop at the first network failure. A report the platform
// refuses stays with its error (sent again only by "send now": a new token may help).
async function flush({ all = false } = {}) {
  if (state.flushing || !session.token) return;
  state.flushing = true;
  let sent = false;
  try {
    for (const item of await queued()) {
      if (item.error && !all) continue;
      try {
        const out = await post(item);
        await dequeue(item.id);
        showPosted(out, { queued: true });
        sent = true;
      } catch (e) {
        if (networkError(e)) { if (item.caseNumber) await enqueue(item); break; }
        item.error = `${e.status}: ${e.message}`;
        await enqueue(item);
        if (e.status === 401) { $("signin-msg").textContent = `${t("signin.bad")}: ${e.message}`; signOut(); break; }
      }
    }
  } catch { /* no IndexedDB: nothing queued */ } finally {
    state.flushing = false;
    await renderQueue();
    if (sent) refreshMine();
  }
}

function showNet() { $("net").hidden = navigator.onLine; }

// --- start ---------------------------------------------------------------------------------

function relabel() {
  document.title = `${t("report.title")} · ${t("report.subtitle")}`;
  fillKinds(true);
  showPosition();
  renderMine();
  renderQueue();
  showSession(state.sessionNote);
}

async function start() {
  applyDom();
  document.title = `${t("report.title")} · ${t("report.subtitle")}`;
  onLang(relabel);
  $("lang").addEventListener("click", () => setLang(currentLang() === "zh" ? "en" : "zh"));
  $("signin").addEventListener("submit", (e) => {
    e.preventDefault();
    const token = $("token-input").value.trim();
    if (token) signIn(token);
  });
  $("signout-btn").addEventListener("click", signOut);
  $("photo-input").addEventListener("change", onPhoto);
  $("photo-clear").addEventListener("click", () => { clearPhoto(); clearResult(); });
  $("locate-btn").addEventListener("click", locate);
  $("kind").addEventListener("change", () => fillBig());
  $("big-class").addEventListener("change", () => fillSmall());
  $("report-form").addEventListener("submit", onSubmit);
  $("queue-send").addEventListener("click", () => flush({ all: true }));
  $("mine-refresh").addEventListener("click", refreshMine);
  addEventListener("online", () => { showNet(); flush(); refreshMine(); });
  addEventListener("offline", showNet);
  setInterval(() => { if (navigator.onLine) flush(); }, RETRY_MS);
  showNet();
  showSession();
  showPosition();
  renderMine();
  window.gpReport = { state, flush, refreshMine, queued };
  locate();
  await Promise.all([loadClasses(), initMap(), renderQueue()]);
  document.body.dataset.ready = "1";
  refreshMine();
  flush();
}

start();
