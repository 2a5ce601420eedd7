// Drive the web viewer (/viewer/) in headless Chromium and report what happened.
//
//   echo '{"url": "http://127.0.0.1:PORT/"}' | node tests/js/viewer_check.mjs
//
// Options (JSON on stdin): url (required: the app's root, which redirects to /viewer/),
// building (a building code to search for), token (a token that reads persons and cameras),
// screenshots (a folder: viewer-2d.png, viewer-2d-2019.png, viewer-2d-popup.png, viewer-3d.png,
// viewer-3d-2019.png are written),
// skip (a list of steps to leave out: "slider", "click", "search", "lang", "signin", "3d"),
// timeout_ms (90000), chromium (/usr/bin/chromium), width/height (1024x700), wait_globe_ms (also wait that long for the globe's imagery and terrain), debug.
// Prints one JSON object on stdout: console_errors, bad_responses (status >= 400),
// request_failures, foreign_requests (any request not to the page's origin), mvt (200 /
// 204 counts), raster_png, and one entry per step.
import { readFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { CHROMIUM_ARGS, IDLE } from "./browser.mjs";



// page side: the building codes the 2D map draws (every feature of its loaded tiles, which
// reach a little beyond the view)
const BUILDINGS = () => {
  const map = window.gp.map2d.map;
  const fids = new Set(map.querySourceFeatures("buildings", { sourceLayer: "buildings" })
    .filter((f) => f.properties.fid !== undefined).map((f) => f.properties.fid));
  return [...fids].sort();
};

async function main() {
  const o = JSON.parse(readFileSync(0, "utf8"));
  const timeoutMs = o.timeout_ms ?? 90000;
  const skip = new Set(o.skip || []);
  const t0 = Date.now();
  const out = { console_errors: [], bad_responses: [], request_failures: [], foreign_requests: [],
                mvt: { 200: 0, 204: 0, other: 0 }, raster_png: 0, tile_datetimes: [], timings_ms: {} };
  const mark = (k) => { out.timings_ms[k] = Date.now() - t0; };
  if (o.screenshots) mkdirSync(o.screenshots, { recursive: true });
  const shot = async (page, name) => { if (o.screenshots) await page.screenshot({ path: join(o.screenshots, name) }); };
  let browser;
  try {
    browser = await chromium.launch({ executablePath: o.chromium || "/usr/bin/chromium", headless: true,
                                      args: CHROMIUM_ARGS, timeout: 30000 });
    const page = await browser.newPage({ viewport: { width: o.width || 1024, height: o.height || 700 } });
    page.setDefaultTimeout(timeoutMs);
    out.step_page = page;
    const origin = new URL(o.url).origin;
    page.on("console", (m) => {
      if (m.type() === "error") out.console_errors.push(m.text());
      if (o.debug) process.stderr.write(`${Date.now() - t0} ms console.${m.type()} ${m.text()}\n`);
    });
    page.on("pageerror", (e) => out.console_errors.push(`page error: ${e.message}`));
    // a tile the map no longer needs (zoomed past) is cancelled: ERR_ABORTED is no failure
    page.on("requestfailed", (r) => {
      if (r.failure()?.errorText !== "net::ERR_ABORTED") out.request_failures.push(`${r.url()}: ${r.failure()?.errorText}`);
      else out.aborted = (out.aborted || 0) + 1;
    });
    page.on("request", (r) => {
      const u = r.url();
      if (!u.startsWith("data:") && !u.startsWith("blob:") && new URL(u).origin !== origin) out.foreign_requests.push(u);
    });
    page.on("response", (r) => {
      const u = new URL(r.url());
      if (r.status() >= 400) out.bad_responses.push(`${r.status()} ${r.url()}`);
      if (u.pathname.endsWith(".mvt")) {
        out.mvt[r.status() === 200 ? 200 : r.status() === 204 ? 204 : "other"] += 1;
        const dt = u.searchParams.get("datetime") || "now";
        if (!out.tile_datetimes.includes(dt)) out.tile_datetimes.push(dt);
      }
      if (u.pathname.startsWith("/raster/") && u.pathname.endsWith(".png") && r.status() === 200) out.raster_png += 1;
    });
    // the root redirects to /viewer/
    const response = await page.goto(o.url, { waitUntil: "load" });
    out.landed = page.url();
    out.landing_status = response.status();
    await page.waitForSelector("body[data-ready='1']");
    await page.evaluate(IDLE);
    mark("2d_ready");
    out.tree = await page.$$eval("#tree .layer-row", (rows) => rows.map((r) => r.dataset.layer));
    out.themes = await page.$$eval("#tree .theme", (d) => d.map((x) => x.dataset.theme));
    out.tree_titles = await page.$$eval("#tree .layer-row", (rows) => Object.fromEntries(
      rows.map((r) => [r.dataset.layer, r.querySelector("label")?.textContent])));
    const now = await page.evaluate(BUILDINGS);
    out.buildings_now = now.length;
    await shot(page, "viewer-2d.png");

    if (!skip.has("slider")) {
      const index = await page.evaluate(() => window.gp.steps.findIndex((s) => s.date === "2019-01-01"));
      await page.locator("#time").fill(String(index));
      await page.evaluate(IDLE);
      const then = new Set(await page.evaluate(BUILDINGS));
      out.slider = {
        label: await page.textContent("#time-value"), ortho: await page.textContent("#ortho-year"),
        buildings: (await page.evaluate(BUILDINGS)).length,
        only_now: now.filter((f) => !then.has(f)).length,
        tiles: await page.evaluate(() => window.gp.map2d.map.getSource("buildings").tiles[0]),
        ortho_source: await page.evaluate(() => window.gp.map2d.map.getSource("ortho")?.tiles?.[0] ?? null),
      };
      await shot(page, "viewer-2d-2019.png");
      const last = await page.evaluate(() => window.gp.steps.length - 1);
      await page.locator("#time").fill(String(last));
      await page.evaluate(IDLE);
      out.slider.buildings_back = (await page.evaluate(BUILDINGS)).length;
      mark("slider");
    }

    if (!skip.has("click")) {
      // a point inside a building where the building is the topmost feature
      const target = await page.evaluate(() => {
        const map = window.gp.map2d.map;
        const box = map.getContainer().getBoundingClientRect();
        for (const f of map.queryRenderedFeatures({ layers: ["buildings-fill"] })) {
          const ring = f.geometry.type === "Polygon" ? f.geometry.coordinates[0] : f.geometry.coordinates[0][0];
          const pts = ring.slice(0, -1);
          const c = [pts.reduce((a, p) => a + p[0], 0) / pts.length, pts.reduce((a, p) => a + p[1], 0) / pts.length];
          const px = map.project(c);
          if (px.x < 20 || px.y < 20 || px.x > box.width - 60 || px.y > box.height - 20) continue;
          const top = map.queryRenderedFeatures(px, { layers: window.gp.map2d.interactiveLayers() })[0];
          if (top && top.source === "buildings" && top.properties.fid === f.properties.fid) {
            return { x: box.left + px.x, y: box.top + px.y, fid: f.properties.fid };
          }
        }
        return null;
      });
      out.click = { target };
      if (target) {
        await page.mouse.click(target.x, target.y);
        await page.waitForSelector("#panel[data-state='done']");
        Object.assign(out.click, await page.evaluate(() => ({
          layer: document.getElementById("panel").dataset.layer, fid: document.getElementById("panel").dataset.fid,
          versions: Number(document.querySelector("#panel .history")?.dataset.versions ?? -1),
          version_items: [...document.querySelectorAll("#panel ol.versions li")].map((li) => li.textContent),
          attributes: document.querySelectorAll("#panel table.attributes tr").length,
          item_link: document.querySelector("#panel a.item-link")?.getAttribute("href"),
        })));
        await shot(page, "viewer-2d-popup.png");
      }
      mark("click");
    }

    if (!skip.has("search") && o.building) {
      await page.fill("#search-input", o.building);
      await page.press("#search-input", "Enter");
      await page.waitForFunction((code) => document.getElementById("panel").dataset.fid === code
        && document.getElementById("panel").dataset.state === "done", o.building);
      await page.waitForFunction(() => !window.gp.map2d.map.isMoving());
      await page.evaluate(IDLE);
      out.search = await page.evaluate(() => ({
        results: [...document.querySelectorAll("#search-results li")].map((li) => li.textContent),
        hit: window.gp.lastHit, center: window.gp.map2d.map.getCenter().toArray(), zoom: window.gp.map2d.map.getZoom(),
      }));
      mark("search");
    }

    if (!skip.has("lang")) {
      const before = await page.evaluate(() => [document.getElementById("title").textContent,
        document.querySelector("#layers h2").textContent, document.querySelector("#tree .theme h3")?.textContent]);
      await page.click("#lang");
      const after = await page.evaluate(() => [document.getElementById("title").textContent,
        document.querySelector("#layers h2").textContent, document.querySelector("#tree .theme h3")?.textContent]);
      await page.click("#lang");
      const back = await page.evaluate(() => document.getElementById("title").textContent);
      out.lang = { before, after, back };
    }

    if (!skip.has("signin") && o.token) {
      await page.fill("#token-input", o.token);
      await page.click("#signin-btn");
      await page.waitForSelector("#tree .layer-row[data-layer='cameras']");
      await page.evaluate(IDLE);
      out.signin = {
        tree: await page.$$eval("#tree .layer-row", (rows) => rows.map((r) => r.dataset.layer)),
        text: await page.textContent("#signed-in-text"),
        cones: await page.evaluate(() => (window.gp.map2d.map.getLayer("camera-cones-fill")
          ? window.gp.map2d.map.getSource("camera-cones")._data?.features?.length ?? window.gp.map2d.cones.features.length : 0)),
      };
      mark("signin");
    }

    if (!skip.has("3d")) {
      // back over the urban core (the real-scene block is there), then 3D
      if (await page.isVisible("#panel-close")) await page.click("#panel-close");
      await page.evaluate(() => window.gp.map2d.map.jumpTo({ center: window.gp.CENTER, zoom: 14 }));
      await page.click("#mode-3d");
      await page.waitForFunction(() => window.gp.map3d && window.gp.map3d.stats.ready);
      // loaded once both tilesets have loaded tiles and need no more, for three checks in a
      // row (the globe's imagery may still stream: titiler renders it on demand)
      const settle = async () => {
        await page.waitForFunction(() => {
          const m = window.gp.map3d;
          const ok = m.stats.buildings > 0 && m.stats.realscene > 0 && m.buildings.tilesLoaded
            && m.realscenes.every((x) => x.tilesLoaded);
          m._ok = ok ? (m._ok || 0) + 1 : 0;
          m.viewer.scene.requestRender();
          return m._ok >= 3;
        }, null, { polling: 250 });
        if (o.wait_globe_ms) {
          await page.waitForFunction(() => { window.gp.map3d.viewer.scene.requestRender(); return window.gp.map3d.viewer.scene.globe.tilesLoaded; },
            null, { polling: 500, timeout: o.wait_globe_ms }).catch(() => { out.globe_incomplete = true; });
        }
      };
      await settle();
      out.threeD = await page.evaluate(() => {
        const m = window.gp.map3d;
        return { ...m.stats, failures: m.stats.failures.slice(0, 5), style: m.buildings?.style?.show?.expression,
                 imagery: m.viewer.imageryLayers.length };
      });
      await shot(page, "viewer-3d.png");
      mark("3d");
      // the slider restyles the buildings: shown as of 2019-01-01
      const index = await page.evaluate(() => window.gp.steps.findIndex((s) => s.date === "2019-01-01"));
      await page.locator("#time").fill(String(index));
      await page.evaluate(() => window.gp.settled());
      out.threeD.style_2019 = await page.evaluate(() => window.gp.map3d.buildings.style.show.expression);
      out.threeD.ortho_2019 = await page.evaluate(() => window.gp.map3d.orthoName);
      if (o.screenshots) { await settle(); await shot(page, "viewer-3d-2019.png"); }
      const last = await page.evaluate(() => window.gp.steps.length - 1);
      await page.locator("#time").fill(String(last));
      await page.evaluate(() => window.gp.settled());
      // a picked 3D building opens its history too
      const pick = await page.evaluate(() => {
        const m = window.gp.map3d, C = window.Cesium;
        const canvas = m.viewer.scene.canvas, box = canvas.getBoundingClientRect();
        for (let y = 0.3; y <= 0.8; y += 0.05) for (let x = 0.2; x <= 0.8; x += 0.05) {
          const p = new C.Cartesian2(canvas.clientWidth * x, canvas.clientHeight * y);
          const f = m.viewer.scene.pick(p);
          if (f instanceof C.Cesium3DTileFeature && f.tileset === m.buildings) {
            return { x: box.left + p.x, y: box.top + p.y, fid: f.getProperty("fid") };
          }
        }
        return null;
      });
      out.pick3d = { target: pick };
      if (pick) {
        await page.mouse.click(pick.x, pick.y);
        await page.waitForFunction((fid) => document.getElementById("panel").dataset.fid === fid
          && document.getElementById("panel").dataset.state === "done", pick.fid);
        out.pick3d.versions = await page.evaluate(() => Number(document.querySelector("#panel .history")?.dataset.versions ?? -1));
      }
      await page.click("#mode-2d");
      await page.evaluate(IDLE);
    }

    if (!skip.has("signin") && o.token) {
      await page.click("#signout-btn");
      await page.waitForFunction(() => !document.querySelector("#tree .layer-row[data-layer='cameras']"));
      await page.evaluate(IDLE);
      out.signout = { tree: await page.$$eval("#tree .layer-row", (rows) => rows.map((r) => r.dataset.layer)) };
    }
  } catch (e) {
    // report what was seen up to the failure, with the failure
    out.error = String((e && (e.stack || e.message)) || e).split("\n").slice(0, 6).join("\n");
    if (out.step_page) {
      out.state = await out.step_page.evaluate(() => {
        const m = window.gp?.map3d;
        return { busy: window.gp?.busy, panel: document.getElementById("panel")?.dataset,
                 message: document.getElementById("message")?.textContent,
                 map3d: m && { ...m.stats, globe_loaded: m.viewer?.scene.globe.tilesLoaded, buildings_loaded: m.buildings?.tilesLoaded,
                               realscene_loaded: m.realscenes?.map((x) => x.tilesLoaded) } };
      }).catch((x) => String(x));
    }
  } finally {
    delete out.step_page;
    out.timings_ms.wall = Date.now() - t0;
    process.stdout.write(JSON.stringify(out) + "\n");
    if (browser) await browser.close().catch(() => {});
  }
}

main().then(() => process.exit(0), (e) => {
  process.stderr.write(`viewer_check: ${e && (e.stack || e)}\n`);
  process.exit(1);
});
