// The command view (监督指挥): open cases of digital city management coloured by status,
// the overdue ones ringed in red, a legend, and the signed-in department's inbox
// (GET /api/tasks). The map draws the cases layer's vector tiles; MapLibre expressions
// cannot read the clock, so the instant the view stands at (the time slider's, or now) is
// put into the layers' filters as a literal and renewed as time passes.
import { getJSON, HttpError, session } from "./api.js";
import { addText, currentLang, split, t } from "./i18n.js";

export const CASES = "cases"; // the cases layer (tile source and OGC collection)
export const OPEN = ["reported", "registered", "dispatched", "handled", "verified", "suspended"];
export const STATUS_COLORS = {
  reported: "#8c6bb1", registered: "#2171b5", dispatched: "#fe9929", handled: "#1a9e9e",
  verified: "#4dac26", suspended: "#8c8c8c", closed: "#525252", rejected: "#bdbdbd",
};
export const OVERDUE_COLOR = "#e31a1c";
export const LAYER_IDS = { open: "cmd-cases", overdue: "cmd-cases-overdue" };
const TICK_MS = 30000; // at "now": how often the instant in the filters moves on

addText({
  zh: {
    "command.toggle": "监督指挥", "command.legend": "案件状态", "command.overdue": "超期",
    "command.zoomin": "放大到 {z} 级以上显示单个案件", "command.at": "时刻",
    "inbox.title": "待办案件", "inbox.empty": "没有待办案件", "inbox.loading": "加载中…",
    "inbox.deadline": "处置时限", "inbox.note": "当前待办（不随时间轴变化）",
    "step.reported": "上报", "step.registered": "立案", "step.dispatched": "派遣", "step.handled": "处置",
    "step.reworked": "返工（核查未通过）", "step.verified": "核查通过", "step.closed": "结案",
    "step.rejected": "不予立案", "step.suspended": "挂起", "step.resumed": "恢复",
    "case.status": "状态", "case.class": "类别", "case.deadline": "处置时限", "case.overdue": "是否超期",
    "case.remaining": "剩余时间", "case.stepDeadline": "下一环节时限", "case.department": "处置部门", "case.description": "描述",
    "case.reporter": "报告人", "case.phone": "报告人电话", "case.timeline": "处置过程",
    "case.now": "案件的当前状态（不随时间轴变化）", "case.yes": "是", "case.no": "否",
    "case.left": "剩余 {d}", "case.late": "已超期 {d}", "case.photo": "照片", "case.photoFailed": "照片无法加载",
    "case.error": "无法获取案件", "case.steps": "个步骤",
    "dur.d": "天", "dur.h": "小时", "dur.m": "分", "dur.s": "秒",
    "kind.event": "事件", "kind.component": "部件",
    "class.event.01": "市容环境", "class.event.02": "宣传广告", "class.event.03": "施工管理",
    "class.event.04": "突发事件", "class.event.05": "街面秩序", "class.event.06": "扩展事件",
    "class.component.01": "公用设施", "class.component.02": "道路交通", "class.component.03": "市容环境",
    "class.component.04": "园林绿化", "class.component.05": "房屋土地", "class.component.06": "其他设施",
  },
  en: {
    "command.toggle": "Command", "command.legend": "Case status", "command.overdue": "overdue",
    "command.zoomin": "zoom in to level {z} or more for single cases", "command.at": "at",
    "inbox.title": "Inbox", "inbox.empty": "No cases waiting", "inbox.loading": "Loading…",
    "inbox.deadline": "deadline", "inbox.note": "Open now (not moved by the time slider)",
    "step.reported": "reported", "step.registered": "registered", "step.dispatched": "dispatched",
    "step.handled": "handled", "step.reworked": "sent back (rework)", "step.verified": "verified",
    "step.closed": "closed", "step.rejected": "rejected", "step.suspended": "suspended", "step.resumed": "resumed",
    "case.status": "Status", "case.class": "Class", "case.deadline": "Deadline", "case.overdue": "Overdue",
    "case.remaining": "Remaining", "case.stepDeadline": "Next step due", "case.department": "Handling department", "case.description": "Description",
    "case.reporter": "Reporter", "case.phone": "Reporter's phone", "case.timeline": "Timeline",
    "case.now": "The case as it stands now (not moved by the time slider)", "case.yes": "yes", "case.no": "no",
    "case.left": "{d} left", "case.late": "overdue by {d}", "case.photo": "photo", "case.photoFailed": "photo not available",
    "case.error": "The case could not be fetched", "case.steps": "steps",
    "dur.d": " d", "dur.h": " h", "dur.m": " min", "dur.s": " s",
    "kind.event": "event", "kind.component": "component",
    "class.event.01": "city appearance", "class.event.02": "advertising", "class.event.03": "construction",
    "class.event.04": "emergencies", "class.event.05": "street order", "class.event.06": "other events",
    "class.component.01": "public facilities", "class.component.02": "roads and traffic",
    "class.component.03": "city appearance", "class.component.04": "greenery", "class.component.05": "housing and land",
    "class.component.06": "other facilities",
  },
});

// a DOM element with properties (class, dataset, others as is) and children
export const el = (tag, props = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") e.className = v; else if (k === "dataset") Object.assign(e.dataset, v); else e[k] = v;
  }
  e.append(...kids.filter((k) => k !== null && k !== undefined));
  return e;
};

// --- time --------------------------------------------------------------------------------
// An instant as the cases tiles write timestamps (PostgreSQL's text in Asia/Shanghai:
// "2026-11-03 10:00:00.123456+08"), so that string order is time order in the filters.
export function tileInstant(ms) {
  const bj = new Date(ms + 8 * 3600e3).toISOString(); // 2026-11-03T02:00:00.000Z, as Beijing wall time
  return `${bj.slice(0, 10)} ${bj.slice(11, 23)}+08`;
}

// "2026-11-03 10:00:00" in Beijing time (UTC+8), whatever the browser's zone
export function beijing(iso) {
  if (!iso) return "—";
  const ms = Date.parse(iso);
  if (Number.isNaN(ms)) return String(iso);
  const bj = new Date(ms + 8 * 3600e3).toISOString();
  return `${bj.slice(0, 10)} ${bj.slice(11, 19)}`;
}

// seconds → "3小时12分" / "3 h 12 min" (the two largest units)
export function duration(seconds) {
  let s = Math.abs(Math.round(seconds));
  const parts = [];
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60], ["s", 1]]) {
    const n = Math.floor(s / size);
    s -= n * size;
    if (n || (unit === "s" && !parts.length)) parts.push(`${n}${t(`dur.${unit}`)}`);
  }
  return parts.slice(0, 2).join(currentLang() === "zh" ? "" : " ");
}

export function remainingText(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  return (seconds >= 0 ? t("case.left") : t("case.late")).replace("{d}", duration(seconds));
}

export function className(props) {
  const kind = props.kind ? t(`kind.${props.kind}`) : "";
  const big = props.big_class ? t(`class.${props.kind}.${props.big_class}`) : "";
  const named = big && !big.startsWith("class.") ? `${big} ${props.big_class}` : props.big_class || "";
  return [kind, named, props.small_class || ""].filter(Boolean).join(" · ");
}

// --- the map's layers ----------------------------------------------------------------------
// Overdue at instant T, as GET /api/cases/{n} decides it: a deadline, passed by the time the
// case was handled, or by T while it is not (tile strings compare as times: tileInstant).
export function overdueExpr(at) {
  return ["all", ["has", "deadline"],
    [">", ["to-string", ["coalesce", ["get", "handled_at"], at]], ["to-string", ["get", "deadline"]]]];
}

export function commandFilter(which, at) {
  const open = ["all", ["!", ["has", "count"]], ["in", ["get", "status"], ["literal", OPEN]]];
  return [...open, which === "overdue" ? overdueExpr(at) : ["!", overdueExpr(at)]];
}

// The command view's layers over the cases source (drawn on top of every other layer)
export function commandLayers(at, title) {
  const color = ["match", ["get", "status"], ...OPEN.flatMap((s) => [s, STATUS_COLORS[s]]), "#999999"];
  const metadata = (which) => ({ "gisplatform:theme": "city_management", "gisplatform:title": title,
                                 "gp:command": which });
  return [
    { id: LAYER_IDS.open, type: "circle", source: CASES, "source-layer": CASES, metadata: metadata("open"),
      filter: commandFilter("open", at),
      paint: { "circle-color": color, "circle-radius": ["interpolate", ["linear"], ["zoom"], 12, 4, 17, 7],
               "circle-stroke-color": "#ffffff", "circle-stroke-width": 1.5 } },
    { id: LAYER_IDS.overdue, type: "circle", source: CASES, "source-layer": CASES, metadata: metadata("overdue"),
      filter: commandFilter("overdue", at),
      paint: { "circle-color": color, "circle-radius": ["interpolate", ["linear"], ["zoom"], 12, 6, 17, 10],
               "circle-stroke-color": OVERDUE_COLOR, "circle-stroke-width": 3.5 } },
  ];
}

// --- the view: legend, inbox, clock ----------------------------------------------------------
export class CommandView {
  constructor(app) {
    this.app = app;
    this.on = false;
    this.tasks = null; // the last inbox answer ({cases}) or null
    this.inboxError = null;
    this.denied = new Set(); // tokens /api/tasks refused (403): not asked again
    this.detailZoom = 14;
    this.timer = null;
    this.seq = 0;
    this.legend = document.getElementById("legend");
    this.inbox = document.getElementById("inbox");
    this.list = document.getElementById("inbox-list");
  }

  // the instant the view stands at, in the tiles' format
  instant() {
    const time = this.app.time();
    return tileInstant(time.now ? Date.now() : time.epoch * 1000);
  }

  async setOn(on) {
    this.on = on;
    document.body.classList.toggle("command", on);
    document.getElementById("command-btn").classList.toggle("on", on);
    document.getElementById("command-btn").setAttribute("aria-pressed", String(on));
    clearInterval(this.timer);
    this.timer = null;
    if (on) {
      this.timer = setInterval(() => this.tick(), TICK_MS);
      getJSON("/tiles/").then((l) => {
        const c = (l.layers || []).find((x) => x.id === CASES);
        if (c) { this.detailZoom = c.detail_zoom; this.renderLegend(); }
      }, () => {});
    }
    this.renderLegend();
    await this.loadInbox();
  }

  // at "now": move the instant in the filters on (cases pass their deadlines)
  // and the inbox's remaining times count down (asked anew every few ticks)
  tick() {
    if (!this.on) return;
    this.ticks = (this.ticks || 0) + 1;
    if (this.tasks && this.ticks % 4 === 0) this.loadInbox();
    else if (this.tasks) this.renderInbox();
    // after any refresh under way (its new tile URLs must not meet a filter change)
    this.app.settled().then(() => {
      if (!this.on || !this.app.time().now) return;
      this.app.map2d.setCommandInstant(this.instant());
      this.renderLegend();
    });
  }

  renderLegend() {
    this.legend.hidden = !this.on;
    if (!this.on) return;
    const row = (swatch, text, status) => el("li", { dataset: status ? { status } : {} }, swatch, el("span", { textContent: text }));
    const dot = (color, overdue = false) => {
      const s = el("span", { class: `dot${overdue ? " overdue" : ""}` });
      s.style.background = color;
      return s;
    };
    const at = this.app.time();
    const zoom = this.app.map2d?.map?.getZoom() ?? 99;
    this.legend.replaceChildren(
      el("h3", { textContent: t("command.legend") }),
      el("ul", {}, ...OPEN.map((s) => row(dot(STATUS_COLORS[s]), t(`status.${s}`), s)),
        row(dot("#ffffff", true), t("command.overdue"), "overdue")),
      el("p", { class: "at", textContent: `${t("command.at")} ${at.now ? beijing(new Date().toISOString()).slice(0, 16) : at.date}` }),
      ...(zoom < this.detailZoom ? [el("p", { class: "hint", textContent: t("command.zoomin").replace("{z}", String(this.detailZoom)) })] : []));
  }

  // The inbox of the signed-in department: GET /api/tasks for a token holding cases:handle.
  // Another token (403) or none: no inbox.
  async loadInbox() {
    const seq = ++this.seq;
    const token = session.token;
    if (!this.on || !token || this.denied.has(token)) {
      this.hideInbox(token && this.denied.has(token) ? "denied" : "none");
      return;
    }
    this.inbox.hidden = false;
    this.inbox.dataset.state = "loading";
    this.inbox.dataset.message = "";
    if (!this.tasks) this.list.replaceChildren(el("li", { class: "empty", textContent: t("inbox.loading") }));
    try {
      const answer = await getJSON("/api/tasks");
      if (seq !== this.seq) return;
      this.tasks = answer;
      this.fetchedAt = Date.now();
      this.inboxError = null;
    } catch (e) {
      if (seq !== this.seq) return;
      this.tasks = null;
      if (e instanceof HttpError && (e.status === 401 || e.status === 403)) {
        if (e.status === 403) this.denied.add(token);
        this.hideInbox("denied", e.message); // not a handling department's token
        return;
      }
      this.inboxError = String(e.message || e);
    }
    this.renderInbox();
  }

  // no inbox (signed out, the view off, or a token without cases:handle): nothing of the
  // previous token's inbox stays in the page
  hideInbox(state, message = "") {
    this.tasks = null;
    this.inboxError = null;
    this.inbox.hidden = true;
    this.inbox.dataset.state = state;
    this.inbox.dataset.message = message;
    this.list.replaceChildren();
  }

  renderInbox() {
    if (this.inbox.hidden) return;
    const head = this.inbox.querySelector(".inbox-head");
    head.textContent = t("inbox.title");
    if (this.inboxError) {
      this.list.replaceChildren(el("li", { class: "error", textContent: this.inboxError }));
      this.inbox.dataset.state = "error";
      return;
    }
    const cases = this.tasks?.cases || [];
    head.append(el("span", { class: "count", textContent: ` (${cases.length})` }));
    this.list.replaceChildren(...(cases.length ? cases.map((c) => this.entry(c))
      : [el("li", { class: "empty", textContent: t("inbox.empty") })]));
    this.inbox.querySelector(".note").textContent = t("inbox.note");
    this.inbox.dataset.state = "done";
  }

  entry(c) {
    const p = c.properties || {};
    // the API's remaining time, counted down since it answered
    const remaining = p.remaining_s === null || p.remaining_s === undefined ? null
      : p.remaining_s - Math.round((Date.now() - (this.fetchedAt || Date.now())) / 1000);
    const overdue = !!p.overdue || (remaining !== null && remaining < 0);
    const li = el("li", { class: `task${overdue ? " overdue" : ""}${String(c.id) === this.activeCase ? " active" : ""}`, tabIndex: 0,
                          dataset: { case: String(c.id), overdue: String(overdue) } },
      el("div", { class: "line" }, el("span", { class: "number", textContent: String(c.id) }),
        overdue ? el("span", { class: "badge", textContent: t("command.overdue") }) : null),
      el("div", { class: "class", textContent: className(p) }),
      el("div", { class: "when" },
        el("span", { textContent: `${t("inbox.deadline")} ${beijing(p.deadline).slice(0, 16)}` }),
        el("span", { class: "remaining", textContent: remainingText(remaining) })));
    const go = () => this.goTo(c);
    li.addEventListener("click", go);
    li.addEventListener("keydown", (e) => { if (e.key === "Enter") go(); });
    return li;
  }

  // fly to a case and open its timeline
  goTo(c) {
    this.activeCase = String(c.id);
    for (const x of this.list.querySelectorAll("li.active")) x.classList.remove("active");
    this.list.querySelector(`li[data-case="${CSS.escape(String(c.id))}"]`)?.classList.add("active");
    const [lon, lat] = c.geometry?.coordinates || [];
    if (Number.isFinite(lon) && Number.isFinite(lat)) {
      this.app.map2d.map.flyTo({ center: [lon, lat], zoom: Math.max(this.app.map2d.map.getZoom(), 17), duration: 600 });
    }
    return this.app.openFeature(CASES, String(c.id), {});
  }

  onLang() {
    this.renderLegend();
    this.renderInbox();
  }
}

// a department's name "中文 English" in the current language
export function department(name) { return name ? split(name) : "—"; }
