// Load a 3D Tiles tileset in CesiumJS inside headless Chromium and report what happened.
//
//   echo '{"tileset_url": "http://127.0.0.1:PORT/3d/NAME/tileset.json"}' | node tests/js/cesium_load.mjs
//
// Options (JSON on stdin): tileset_url (required), timeout_ms (60000), flyto (true),
// screenshot (a PNG path), terrain_url (a quantized-mesh terrain, CesiumTerrainProvider),
// script (the body of an async function(Cesium, viewer, tileset) run after loading; what it
// returns lands in "script"), chromium (/usr/bin/chromium), width/height (800x600),
// debug (log every request and console message to stderr).
// Prints one JSON object on stdout: tiles_loaded, failed, failures, console_errors,
// request_failures, features, all_tiles_loaded, center_pick, bounding_sphere, webgl,
// timings_ms, (script), and error when the tileset could not be loaded at all.
// The page side is cesium_harness.js.
//
// The page and the Cesium build (node_modules/cesium/Build/Cesium) are served by a static
// server on 127.0.0.1 inside this process; the tileset comes from its own origin (CORS).
// No Cesium ion, no imagery, no geocoder: nothing leaves the machine.

import { readFileSync, existsSync, statSync, createReadStream } from "node:fs";
import { createServer } from "node:http";
import { dirname, extname, join, normalize, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { CHROMIUM_ARGS } from "./browser.mjs";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, "..", "..");
const CESIUM_DIR = join(ROOT, "node_modules", "cesium", "Build", "Cesium");

const MIME = {
  ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript",
  ".css": "text/css", ".json": "application/json", ".wasm": "application/wasm",
  ".png": "image/png", ".jpg": "image/jpeg", ".svg": "image/svg+xml", ".xml": "application/xml",
  ".glb": "model/gltf-binary", ".ktx2": "image/ktx2",
};

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8">
<script>window.CESIUM_BASE_URL = "/cesium/";</script>
<script src="/cesium/Cesium.js"></script>
<script src="/harness.js"></script>
<link href="/cesium/Widgets/widgets.css" rel="stylesheet">
<style>html, body, #c { margin: 0; width: 100%; height: 100%; overflow: hidden; }</style>
</head><body><div id="c"></div></body></html>`;

function serve() {
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
    if (path === "/" || path === "/index.html") {
      res.writeHead(200, { "Content-Type": MIME[".html"] });
      res.end(PAGE);
      return;
    }
    if (path === "/harness.js") {
      res.writeHead(200, { "Content-Type": MIME[".js"] });
      res.end(readFileSync(join(HERE, "cesium_harness.js")));
      return;
    }
    if (path === "/favicon.ico") { res.writeHead(204); res.end(); return; }
    if (path.startsWith("/cesium/")) {
      const file = normalize(join(CESIUM_DIR, path.slice("/cesium/".length)));
      if (file.startsWith(CESIUM_DIR + sep) && existsSync(file) && statSync(file).isFile()) {
        res.writeHead(200, { "Content-Type": MIME[extname(file)] || "application/octet-stream" });
        createReadStream(file).pipe(res);
        return;
      }
    }
    res.writeHead(404, { "Content-Type": "text/plain" });
    res.end("not found");
  });
  return new Promise((ok) => server.listen(0, "127.0.0.1", () => ok(server)));
}

// Rejects after `ms` unless `promise` settled: the page may wait forever on a server that
// never answers; the finally below then still closes the browser.
function within(promise, ms, what) {
  let timer;
  const expired = new Promise((_, no) => { timer = setTimeout(() => no(new Error(`${what}: no result in ${ms} ms`)), ms); });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

async function main() {
  const o = JSON.parse(readFileSync(0, "utf8"));
  if (!o.tileset_url) throw new Error("tileset_url is required");
  const timeoutMs = o.timeout_ms ?? 60000;
  const started = Date.now();
  const since = () => Date.now() - started;
  const consoleErrors = [];
  const requestFailures = [];
  let server, browser;
  try {
    server = await serve();
    const origin = `http://127.0.0.1:${server.address().port}`;
    browser = await chromium.launch({
      executablePath: o.chromium || "/usr/bin/chromium",
      headless: true, args: CHROMIUM_ARGS, timeout: 30000,
    });
    const launched = since();
    const page = await browser.newPage({ viewport: { width: o.width || 800, height: o.height || 600 } });
    page.setDefaultTimeout(timeoutMs);
    page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
    page.on("pageerror", (e) => consoleErrors.push(`page error: ${e.message}`));
    page.on("requestfailed", (r) => requestFailures.push(`${r.url()}: ${r.failure()?.errorText}`));
    if (o.debug) {
      page.on("request", (r) => process.stderr.write(`${since()} ms request ${r.url()}\n`));
      page.on("console", (m) => process.stderr.write(`${since()} ms console.${m.type()} ${m.text()}\n`));
    }
    await page.goto(`${origin}/`, { waitUntil: "load" });
    const loaded = since();
    // the page stops waiting for tiles 3 s before the deadline, to report what it has
    const out = await within(page.evaluate((opts) => window.cesiumHarness(opts), {
      tileset_url: o.tileset_url, terrain_url: o.terrain_url || null, flyto: o.flyto ?? true,
      script: o.script || null, load_timeout_ms: Math.max(1000, timeoutMs - since() - 3000),
    }), Math.max(1000, timeoutMs - since()), "cesium");
    out.timings_ms.browser_launch = launched;
    out.timings_ms.page_load = loaded - launched;
    if (o.screenshot) {
      const shot = Date.now();
      await page.screenshot({ path: o.screenshot });
      out.timings_ms.screenshot = Date.now() - shot;
    }
    out.console_errors = [...consoleErrors, ...out.page_errors];
    delete out.page_errors;
    out.request_failures = requestFailures;
    out.timings_ms.wall = since();
    process.stdout.write(JSON.stringify(out) + "\n");
  } finally {
    if (browser) await browser.close().catch(() => {});
    if (server) server.close();
  }
}

main().then(() => process.exit(0), (e) => {
  process.stderr.write(`cesium_load: ${e && (e.stack || e)}\n`);
  process.exit(1);
});
