// A line chart in plain SVG: one polyline (and a dot per month) per figure, months along x.
// Null values (suppressed counts, rates of nothing) break the line rather than draw zero.
const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#1f78b4", "#e31a1c", "#33a02c", "#ff7f00", "#6a3d9a", "#b15928", "#a6cee3",
                "#fb9a99", "#b2df8a", "#fdbf6f", "#cab2d6", "#888888"];

function el(name, attrs = {}, parent = null) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

// a round step (1, 2, 5 × 10^k) giving about `n` ticks up to `max`
function step(max, n = 5) {
  const raw = max / n;
  const p = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw);
}

export function color(i) { return COLORS[i % COLORS.length]; }

export function lineChart(container, months, lines, { percent = false, width = 900, height = 380 } = {}) {
  container.replaceChildren();
  const m = { l: 64, r: 16, t: 12, b: 44 };
  const w = width - m.l - m.r, h = height - m.t - m.b;
  const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, "data-months": months.length }, container);
  const values = lines.flatMap((l) => l.values).filter((v) => v !== null && v !== undefined);
  const max = percent ? 1 : Math.max(1, ...values);
  const s = percent ? 0.2 : step(max);
  const top = percent ? 1 : Math.ceil(max / s) * s;
  const x = (i) => m.l + (months.length > 1 ? (i * w) / (months.length - 1) : w / 2);
  const y = (v) => m.t + h - (v / top) * h;
  const grid = el("g", { class: "grid" }, svg);
  for (let v = 0; v <= top + 1e-9; v += s) {
    el("line", { x1: m.l, x2: m.l + w, y1: y(v), y2: y(v) }, grid);
    const t = el("text", { x: m.l - 6, y: y(v) + 4, "text-anchor": "end" }, grid);
    t.textContent = percent ? `${Math.round(v * 100)}%` : v.toLocaleString();
  }
  const axis = el("g", { class: "axis" }, svg);
  el("line", { x1: m.l, x2: m.l + w, y1: m.t + h, y2: m.t + h }, axis);
  const every = Math.max(1, Math.ceil(months.length / 12));
  months.forEach((mo, i) => {
    if (i % every) return;
    const t = el("text", { x: x(i), y: m.t + h + 16, "text-anchor": "middle" }, axis);
    t.textContent = mo;
  });
  lines.forEach((line, k) => {
    const g = el("g", { "data-figure": line.key }, svg);
    const c = line.color || color(k);
    let run = [];
    const flush = () => {
      if (run.length) el("polyline", { points: run.join(" "), stroke: c }, g);
      run = [];
    };
    line.values.forEach((v, i) => {
      if (v === null || v === undefined) { flush(); return; }
      run.push(`${x(i).toFixed(1)},${y(v).toFixed(1)}`);
      const dot = el("circle", { class: "pt", cx: x(i).toFixed(1), cy: y(v).toFixed(1), r: 2.5, fill: c }, g);
      el("title", {}, dot).textContent = `${line.label} ${months[i]}: ${percent ? `${(v * 100).toFixed(1)}%` : v.toLocaleString()}`;
    });
    flush();
  });
  return svg;
}
