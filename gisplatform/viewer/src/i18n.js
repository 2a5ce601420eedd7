// Interface text in Chinese and English. Layer titles from the platform are "中文 English":
// split() gives the half of the current language.
const TEXT = {
  zh: {
    // a case's status (the command view, the phone page)
    "status.reported": "已上报", "status.registered": "已立案", "status.dispatched": "已派遣",
    "status.handled": "已处置", "status.verified": "已核查", "status.closed": "已结案",
    "status.rejected": "不予立案", "status.suspended": "已挂起",
    title: "抚顺全时空", "search.placeholder": "地址、房屋编码、信用代码或设备编号", "search.go": "搜索",
    "search.none": "没有找到", "search.error": "搜索失败", "signin.placeholder": "访问令牌", "signin.go": "登录",
    "signin.out": "退出", "signin.ok": "已登录", "signin.bad": "令牌无效或已过期", "signin.unlocks": "可见",
    "layers.title": "图层", "time.label": "时间", "time.now": "现在", "ortho": "正射影像", "ortho.none": "无影像",
    "theme.basemap": "底图", "theme.base": "基础地理", "theme.housing": "房屋", "theme.population": "人口",
    "theme.legal_person": "法人", "theme.cctv": "视频监控", "theme.city_management": "数字城管",
    "theme.published": "部门发布",
    "layer.hillshade": "地形晕渲", "layer.ortho": "正射影像", "layer.cones": "摄像机视域",
    "panel.attributes": "属性", "panel.history": "历史版本", "panel.item": "OGC 要素",
    "panel.historyItems": "全部版本 (OGC)", "panel.current": "至今", "panel.loading": "加载中…",
    "panel.denied": "无权查看：请使用有授权的令牌登录", "panel.notfound": "该时间不存在此要素",
    "panel.aggregate": "统计数据（无单个要素）", "panel.versions": "个版本", "panel.cluster": "聚合点：放大查看",
    "panel.goto": "点击版本可将时间轴移到其开始", "opacity": "透明度", "locked": "需授权",
    "3d.loading": "正在加载三维…", "3d.failed": "三维加载失败",
    "stats.link": "统计", "stats.title": "统计", "stats.map": "地图", "stats.topic": "主题", "stats.by": "按",
    "stats.by.area": "区域", "stats.by.department": "部门", "stats.series": "区域", "stats.from": "从", "stats.to": "到",
    "stats.csv": "下载 CSV", "stats.city": "全市 210400", "stats.empty": "没有数据", "stats.loading": "加载中…",
    "stats.error": "加载失败", "stats.suppressed": "人数少于 3 的月份不公开",
    "stats.f.registered": "户籍人口", "stats.f.floating": "流动人口", "stats.f.total": "合计", "stats.f.reported": "上报案件",
    "stats.f.closing_rate": "结案率", "stats.f.on_time_rate": "按期结案率", "stats.f.rework_rate": "返工率",
  },
  en: {
    "status.reported": "reported", "status.registered": "registered", "status.dispatched": "dispatched",
    "status.handled": "handled", "status.verified": "verified", "status.closed": "closed",
    "status.rejected": "rejected", "status.suspended": "suspended",
    title: "Fushun city", "search.placeholder": "Address, building code, credit code or camera id", "search.go": "Search",
    "search.none": "Nothing found", "search.error": "Search failed", "signin.placeholder": "Access token", "signin.go": "Sign in",
    "signin.out": "Sign out", "signin.ok": "Signed in", "signin.bad": "Invalid or expired token", "signin.unlocks": "unlocks",
    "layers.title": "Layers", "time.label": "Time", "time.now": "now", "ortho": "Orthophoto", "ortho.none": "no orthophoto",
    "theme.basemap": "Basemap", "theme.base": "Base geography", "theme.housing": "Housing", "theme.population": "Population",
    "theme.legal_person": "Legal persons", "theme.cctv": "CCTV", "theme.city_management": "City management",
    "theme.published": "Published by departments",
    "layer.hillshade": "Hillshade", "layer.ortho": "Orthophoto", "layer.cones": "Camera view cones",
    "panel.attributes": "Attributes", "panel.history": "History", "panel.item": "OGC item",
    "panel.historyItems": "all versions (OGC)", "panel.current": "now", "panel.loading": "Loading…",
    "panel.denied": "Not allowed: sign in with a token that has a grant", "panel.notfound": "This feature does not exist at this time",
    "panel.aggregate": "Aggregate (no individual feature)", "panel.versions": "versions", "panel.cluster": "Cluster: zoom in",
    "panel.goto": "Click a version to move the time slider to its start", "opacity": "opacity", "locked": "needs a grant",
    "3d.loading": "Loading 3D…", "3d.failed": "3D failed to load",
    "stats.link": "Statistics", "stats.title": "Statistics", "stats.map": "Map", "stats.topic": "Topic", "stats.by": "by",
    "stats.by.area": "area", "stats.by.department": "department", "stats.series": "Series", "stats.from": "from", "stats.to": "to",
    "stats.csv": "Download CSV", "stats.city": "Whole city 210400", "stats.empty": "No data", "stats.loading": "Loading…",
    "stats.error": "Failed to load", "stats.suppressed": "Months with fewer than 3 persons are not shown",
    "stats.f.registered": "registered", "stats.f.floating": "floating", "stats.f.total": "total", "stats.f.reported": "reported",
    "stats.f.closing_rate": "closing rate", "stats.f.on_time_rate": "on-time closing rate", "stats.f.rework_rate": "rework rate",
  },
};

let lang = localStorage.getItem("gp.lang") || "zh";
if (!TEXT[lang]) lang = "zh";
const listeners = [];

// A page's own text (its bundle only): { zh: {key: text}, en: {…} } added to the table
export function addText(texts) {
  for (const [l, table] of Object.entries(texts)) TEXT[l] = { ...(TEXT[l] || {}), ...table };
}

export function t(key) {
  return TEXT[lang][key] ?? TEXT.zh[key] ?? key;
}

export function currentLang() { return lang; }

// "行政区划 Administrative areas" → the half in the current language
export function split(title) {
  if (!title) return "";
  const m = /^([^A-Za-z]*[\u3000-\u9fff][^A-Za-z]*?)\s+([A-Za-z].*)$/.exec(title.trim());
  if (!m) return title;
  return lang === "zh" ? m[1].trim() : m[2].trim();
}

export function setLang(l) {
  lang = l;
  localStorage.setItem("gp.lang", l);
  applyDom();
  for (const f of listeners) f(l);
}

export function onLang(f) { listeners.push(f); }

export function applyDom() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.title = `${t("title")} · ${lang === "zh" ? "Fushun city" : "抚顺全时空"}`;
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of document.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
  const b = document.getElementById("lang");
  if (b) b.textContent = lang === "zh" ? "EN" : "中文";
}
