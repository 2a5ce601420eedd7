"""The viewer's time slider in Chromium: every visible tile drawn within 1 s of each move?

    .venv/bin/python bench/viewer_slider.py --size city     # the issue's figure
    .venv/bin/python bench/viewer_slider.py --size small    # quick check (about 30 s)

Serves the database of bench/ogc_vs_tipg.py (bench/.data/<size>; a cluster already running
there is used and left running) with `gisplatform serve`, its tile cache off (cold tiles),
and opens the web viewer (/viewer/, built by gisplatform/viewer/build.mjs when its sources
changed) in headless Chromium (playwright-core from node_modules, as tests/js/viewer_check.mjs)
in a 1280×800 window. It signs in with a token that reads persons (the viewer's sign-in
form), ticks the issue's layers in the layer tree (population-grid, persons, cases,
buildings; the viewer's default layers stay on), and centres the map on the urban area
(layers/fushun.py URBAN_BBOX) at map zoom 11: MapLibre's zoom, 512 px tiles, so z11 tiles;
the map's ~1010×730 px then span about 0.35° × 0.19°, the urban core, Xinfu to Dongzhou.
Then, one move at a time as a user stepping the slider, it sets the slider (#time) to
each of `--dates` month starts spread over 2018-01 .. 2026-11 and back to now, firing the
`input` and `change` events the UI listens to, and times in the page, from the move:
`refresh_ms` until the viewer has applied the new date (window.gp.settled(): style.json of
the date, new tile URLs on every source) and `idle_ms` until MapLibre's next `idle` (every
tile in view loaded and drawn; `nudged`: the map had every tile loaded but asked for no
frame, see MOVE below, and `loaded_ms` is when that was seen). Tile requests are counted from Chromium's network events
(the map's worker included): those of the new `datetime=`, their status and duration
(request start to response end), and any still open at `idle`.

Reports per move: idle_ms, refresh_ms, tiles (requests of the new date), slowest_tile_ms;
and idle_ms p50/p95/max, moves within 1 s. Exits nonzero when the page logs an error, a
request fails or answers >= 400 (the cameras list's 403: the viewer asks for it with any
token and ignores a refusal; the token reads persons only), or a move never gets to idle.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from city_timeslider import percentile  # noqa: E402
from ogc_vs_tipg import ROOT, database, serve  # noqa: E402
from tiles_vs_tipg import stop  # noqa: E402

from gisplatform.db.embedded import EmbeddedPostgres, free_port  # noqa: E402
from gisplatform.security import create_token  # noqa: E402
from layers.fushun import URBAN_BBOX  # noqa: E402

REPO = ROOT.parent
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
MAIN = ("population-grid", "persons", "cases", "buildings")
# the middle of the urban area (123.975 E, 41.88 N)
CENTER = ((URBAN_BBOX[0] + URBAN_BBOX[2]) / 2, (URBAN_BBOX[1] + URBAN_BBOX[3]) / 2)


def months(n: int) -> list[str]:
    """n month starts spread evenly over 2018-01 .. 2026-11, both ends included."""
    all_ = [(2018 + k // 12, k % 12 + 1) for k in range(107)]  # 2018-01 .. 2026-11
    picks = sorted({round(i * (len(all_) - 1) / max(n - 1, 1)) for i in range(n)})
    return [f"{y}-{m:02d}-01" for y, m in (all_[i] for i in picks)]


# Run by node from the repository (playwright-core from node_modules); options as JSON in
# the environment (BENCH_OPTIONS); progress on stderr, one JSON object on stdout.
DRIVER = r"""
import { chromium } from "playwright-core";

const o = JSON.parse(process.env.BENCH_OPTIONS);
const log = (s) => process.stderr.write(s + "\n");
const ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist",
];
// a refusal the viewer asks for and ignores (main.js loadCameras): no error
const EXPECTED = (status, url) => status === 403 && url.pathname === "/ogc/collections/cameras/items";

// page side: wait for the viewer's refresh, then for the map's next idle (no timeout here)
const IDLE = async () => {
  const map = window.gp.map2d.map;
  await window.gp.settled();
  await new Promise((ok) => { map.once("idle", ok); map.triggerRepaint(); });
};

// page side: one slider move as the UI makes it; times from the move (ms). Done at the map's
// next `idle` (every tile in view loaded, the frame drawn). A reloaded tile whose ETag did not
// change (the same tile as at the last date) requests no frame in MapLibre, so when the last
// tile to come is such a one, every tile is loaded but no frame and no `idle` follow: then
// (seen as loaded() with no frame pending) one frame is asked for, and `nudged` is set.
const MOVE = async ({ index, timeoutMs }) => {
  const map = window.gp.map2d.map, slider = document.getElementById("time");
  const t0 = performance.now();
  slider.value = String(index);
  slider.dispatchEvent(new Event("input", { bubbles: true }));
  slider.dispatchEvent(new Event("change", { bubbles: true }));
  await window.gp.settled();
  const refreshMs = performance.now() - t0;
  let loadedMs = null, nudged = false;
  const idle = await new Promise((ok) => {
    let done = false;
    const finish = (v) => { if (!done) { done = true; ok(v); } };
    map.once("idle", () => finish(true));
    map.triggerRepaint();
    const poll = () => {
      if (done) return;
      if (map.loaded() && !map.isMoving()) {
        if (loadedMs === null) loadedMs = performance.now() - t0;
        if (!map._frameRequest) { nudged = true; map.triggerRepaint(); }
      }
      requestAnimationFrame(poll);
    };
    requestAnimationFrame(poll);
    setTimeout(() => finish(false), timeoutMs);
  });
  const idleMs = performance.now() - t0;
  const tiles = {};
  for (const [id, src] of Object.entries(map.getStyle().sources)) if (src.tiles) tiles[id] = src.tiles[0];
  return { idle, refresh_ms: refreshMs, loaded_ms: loadedMs, idle_ms: idle ? idleMs : null, nudged,
           tiles_loaded: map.areTilesLoaded(), label: document.getElementById("time-value").textContent,
           tile_urls: tiles, message: document.getElementById("message").textContent };
};

async function main() {
  const out = { console_errors: [], bad_responses: [], request_failures: [], expected_refusals: 0,
                aborted: 0, moves: [] };
  // every tile request: url, datetime, move it was made in, start, end, status
  const tiles = new Map();
  let move = -1;
  let browser;
  try {
    browser = await chromium.launch({ executablePath: o.chromium, headless: true, args: ARGS, timeout: 30000 });
    const page = await browser.newPage({ viewport: { width: o.width, height: o.height } });
    page.setDefaultTimeout(o.timeout_ms);
    page.on("console", (m) => {
      if (m.type() !== "error") return;
      const at = m.location()?.url;
      if (m.text().startsWith("Failed to load resource") && at && EXPECTED(403, new URL(at))) return;
      out.console_errors.push(m.text() + (at ? ` (${at})` : ""));
    });
    page.on("pageerror", (e) => out.console_errors.push(`page error: ${e.message}`));
    page.on("request", (r) => {
      const u = new URL(r.url());
      if (!u.pathname.endsWith(".mvt")) return;
      tiles.set(r, { path: u.pathname, datetime: u.searchParams.get("datetime"), move, start: Date.now(),
                     end: null, status: null, ms: null });
    });
    const done = async (r, failed) => {
      const t = tiles.get(r);
      if (!t) return;
      t.end = Date.now();
      const timing = r.timing();
      t.ms = timing.responseEnd > 0 ? timing.responseEnd : t.end - t.start;
      t.status = failed ? "failed" : (await r.response().catch(() => null))?.status() ?? "none";
    };
    page.on("requestfinished", (r) => done(r, false));
    page.on("requestfailed", (r) => {
      done(r, true);
      // a tile the map no longer needs is cancelled: ERR_ABORTED is no failure
      if (r.failure()?.errorText === "net::ERR_ABORTED") out.aborted += 1;
      else out.request_failures.push(`${r.url()}: ${r.failure()?.errorText}`);
    });
    page.on("response", (r) => {
      const u = new URL(r.url());
      if (r.status() < 400) return;
      if (EXPECTED(r.status(), u)) out.expected_refusals += 1;
      else out.bad_responses.push(`${r.status()} ${r.url()}`);
    });

    const t0 = Date.now();
    await page.goto(o.url, { waitUntil: "load" });
    await page.waitForSelector("body[data-ready='1']");
    await page.evaluate(IDLE);
    // sign in through the form, as a user
    if (o.token) {
      await page.fill("#token-input", o.token);
      await page.click("#signin-btn");
      await page.waitForSelector("#tree .layer-row[data-layer='persons']");
      await page.evaluate(IDLE);
    }
    // the issue's layers on (a click on the tree's checkbox), then the view
    const tree = await page.$$eval("#tree .layer-row", (rows) => rows.map((r) => r.dataset.layer));
    const missing = o.layers.filter((l) => !tree.includes(l));
    if (missing.length) throw new Error(`not in the layer tree: ${missing.join(", ")} (tree: ${tree.join(", ")})`);
    for (const layer of o.layers) if (!(await page.isChecked(`#layer-${layer}`))) await page.check(`#layer-${layer}`);
    await page.evaluate(({ center, zoom }) => window.gp.map2d.map.jumpTo({ center, zoom }), o);
    await page.evaluate(IDLE);
    out.visible = await page.$$eval("#tree .layer-row", (rows) => rows.filter((r) => r.querySelector("input[type=checkbox]").checked)
      .map((r) => r.dataset.layer));
    out.view = await page.evaluate(() => {
      const m = window.gp.map2d.map, c = m.getCanvas();
      return { zoom: m.getZoom(), center: m.getCenter().toArray(), bounds: m.getBounds().toArray(),
               canvas: [c.clientWidth, c.clientHeight] };
    });
    out.setup_ms = Date.now() - t0;
    const steps = await page.evaluate(() => window.gp.steps.map((s) => ({ date: s.date, iso: s.iso })));
    const plan = o.dates.map((d) => {
      const index = steps.findIndex((s) => s.date === d && s.iso);
      if (index < 0) throw new Error(`the slider has no position ${d}`);
      return { date: d, index, iso: steps[index].iso };
    });
    plan.push({ date: "now", index: steps.length - 1, iso: null });
    log(`viewer ready in ${out.setup_ms} ms; layers ${out.visible.join(", ")}; z${out.view.zoom} at ${out.view.center.map((x) => x.toFixed(3))}`);

    for (const step of plan) {
      move += 1;
      const r = await page.evaluate(MOVE, { index: step.index, timeoutMs: o.move_timeout_ms });
      // the tile requests of this move still open at idle (none expected) get a moment
      const mine = () => [...tiles.values()].filter((t) => t.move === move && t.datetime === step.iso);
      const openAtIdle = mine().filter((t) => t.end === null).length;
      for (let i = 0; i < 100 && mine().some((t) => t.end === null); i++) await new Promise((ok) => setTimeout(ok, 50));
      const reqs = mine();
      const stale = [...tiles.values()].filter((t) => t.move === move && t.datetime !== step.iso).length;
      const ms = reqs.filter((t) => t.ms !== null).map((t) => t.ms);
      const status = {};
      for (const t of reqs) status[t.status ?? "open"] = (status[t.status ?? "open"] || 0) + 1;
      const zooms = [...new Set(reqs.map((t) => Number(t.path.split("/")[3])))].sort();
      const byLayer = {};
      for (const t of reqs) {
        const layer = t.path.split("/")[2];
        byLayer[layer] = Math.max(byLayer[layer] || 0, t.ms ?? 0);
      }
      const m = { date: step.date, index: step.index, label: r.label, idle: r.idle, nudged: r.nudged,
                  idle_ms: r.idle_ms, loaded_ms: r.loaded_ms, refresh_ms: r.refresh_ms, tiles_loaded: r.tiles_loaded,
                  tiles: reqs.length, tile_zooms: zooms, status, open_at_idle: openAtIdle, other_requests: stale,
                  slowest_tile_ms: ms.length ? Math.max(...ms) : null, slowest_by_layer: byLayer,
                  tile_url: r.tile_urls.buildings ?? Object.values(r.tile_urls)[0], message: r.message };
      out.moves.push(m);
      log(`${step.date.padEnd(10)} idle ${r.idle ? Math.round(r.idle_ms) + " ms" : "TIMEOUT"}`
          + ` (refresh ${Math.round(r.refresh_ms)} ms${r.nudged ? ", nudged" : ""}), ${reqs.length} tiles, slowest ${m.slowest_tile_ms ?? "-"} ms`
          + (openAtIdle ? `, ${openAtIdle} open at idle` : ""));
    }
  } catch (e) {
    out.error = String((e && (e.stack || e.message)) || e).split("\n").slice(0, 6).join("\n");
  } finally {
    process.stdout.write(JSON.stringify(out) + "\n");
    if (browser) await browser.close().catch(() => {});
  }
}

main().then(() => process.exit(0), (e) => { log(`driver: ${e && (e.stack || e)}`); process.exit(1); });
"""


def drive(options: dict, timeout_s: float) -> dict:
    """Run DRIVER in node; its last stdout line is the report. On timeout: SIGTERM (playwright
    closes its Chromium on it), then SIGKILL to its process group."""
    proc = subprocess.Popen(["node", "--input-type=module", "-e", DRIVER], cwd=REPO,
                            env={**os.environ, "BENCH_OPTIONS": json.dumps(options)},
                            stdout=subprocess.PIPE, stderr=None, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        raise RuntimeError(f"the browser run did not finish in {timeout_s:.0f} s") from None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    lines = out.decode().strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"the browser driver failed ({proc.returncode})")
    return json.loads(lines[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="city")
    ap.add_argument("--dates", type=int, default=12, help="month starts besides now")
    ap.add_argument("--zoom", type=float, default=11)
    ap.add_argument("--center", default=f"{CENTER[0]:.3f},{CENTER[1]:.3f}", help="lon,lat")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=800)
    ap.add_argument("--layers", default=",".join(MAIN),
                    help="tree layers to tick besides the viewer's defaults")
    ap.add_argument("--anonymous", action="store_true", help="no token: public layers only")
    ap.add_argument("--move-timeout", type=float, default=120, help="s to wait for idle")
    args = ap.parse_args()
    layers = [x for x in args.layers.split(",") if x]
    if args.anonymous:
        layers = [x for x in layers if x != "persons"]

    build = subprocess.run(["node", str(REPO / "gisplatform" / "viewer" / "build.mjs")], cwd=REPO,
                           capture_output=True, text=True, timeout=300)
    if build.returncode != 0:
        sys.exit(f"viewer build failed: {build.stderr[-2000:]}")
    running = EmbeddedPostgres(ROOT / ".data" / args.size).is_running()
    pg, url = database(args.size)
    results: dict = {"size": args.size, "cpus": os.cpu_count(), "zoom": args.zoom,
                     "window": [args.width, args.height], "reused_running_cluster": running}
    try:
        token = None
        if not args.anonymous:
            with psycopg.connect(url) as conn:
                _, token = create_token(conn, "gongan", [("persons", "read")], "bench viewer slider")
                conn.commit()
        port = free_port()
        env = {"DATABASE_URL": url, "GISPLATFORM_DATA_DIR": str(ROOT / ".data" / "app-viewer-slider"),
               "GISPLATFORM_TILE_CACHE_MEMORY_MB": "0", "GISPLATFORM_TILE_CACHE_DISK_MB": "0"}
        cli = str(Path(sys.executable).with_name("gisplatform"))
        proc = serve([cli, "serve", "--port", str(port)], env, f"http://127.0.0.1:{port}/health")
        try:
            dates = months(args.dates)
            options = {"url": f"http://127.0.0.1:{port}/", "chromium": CHROMIUM, "token": token,
                       "width": args.width, "height": args.height, "zoom": args.zoom,
                       "center": [float(v) for v in args.center.split(",")], "layers": layers,
                       "dates": dates, "timeout_ms": int(args.move_timeout * 1000) + 60_000,
                       "move_timeout_ms": int(args.move_timeout * 1000)}
            out = drive(options, 120 + (len(dates) + 1) * (args.move_timeout + 10))
        finally:
            stop(proc)
    finally:
        if not running:
            pg.stop()

    moves = out.get("moves", [])
    for m in moves:
        for k in ("idle_ms", "loaded_ms", "refresh_ms", "slowest_tile_ms"):
            if m.get(k) is not None:
                m[k] = round(m[k], 1)
    idle = [m["idle_ms"] for m in moves if m["idle_ms"] is not None]
    results.update({
        "layers_visible": out.get("visible"), "view": out.get("view"), "setup_ms": out.get("setup_ms"),
        "signed_in": token is not None,
        "moves": [{k: m[k] for k in ("date", "label", "idle_ms", "loaded_ms", "refresh_ms", "nudged",
                                     "tiles", "tile_zooms", "status", "slowest_tile_ms", "slowest_by_layer",
                                     "open_at_idle", "other_requests", "tiles_loaded")}
                  for m in moves],
    })
    if idle:
        tile_ms = [m["slowest_tile_ms"] for m in moves if m["slowest_tile_ms"] is not None]
        results["summary"] = {
            "moves": len(moves), "idle_p50_ms": round(percentile(idle, 0.5), 1),
            "idle_p95_ms": round(percentile(idle, 0.95), 1), "idle_max_ms": round(max(idle), 1),
            "within_1s": sum(1 for v in idle if v <= 1000),
            "nudged": sum(1 for m in moves if m["nudged"]),
            "tiles_per_move_p50": percentile([m["tiles"] for m in moves], 0.5),
            "slowest_tile_max_ms": round(max(tile_ms), 1) if tile_ms else None,
        }
    problems = {k: out.get(k) for k in ("console_errors", "bad_responses", "request_failures")
                if out.get(k)}
    if out.get("error"):
        problems["error"] = out["error"]
    if len(moves) != args.dates + 1 and "error" not in problems:
        problems["moves"] = f"{len(moves)} of {args.dates + 1} moves done"
    if any(not m["idle"] for m in moves):
        problems["no_idle"] = [m["date"] for m in moves if not m["idle"]]
    results["expected_refusals"] = out.get("expected_refusals", 0)
    results["aborted_requests"] = out.get("aborted", 0)
    if problems:
        results["problems"] = problems
    print(json.dumps(results, indent=1))
    if problems:
        sys.exit("viewer_slider: page errors, failed requests or moves that never drew: "
                 + json.dumps(problems)[:3000])


if __name__ == "__main__":
    main()
