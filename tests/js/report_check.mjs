// Drive the field supervisors' phone page (/viewer/report.html) in headless Chromium as a
// phone (360×740, touch, a phone's user agent, the position overridden) and report what
// happened.
//
//   echo '{"url": "http://127.0.0.1:PORT/viewer/report.html", "token": "…", …}' | node tests/js/report_check.mjs
//
// Options (JSON on stdin): url (required: the page), token (one holding cases:accept),
// bad_token (one the platform refuses), norole_token (one without a role on cases), position ({lon, lat}: the device's position),
// photo (a JPEG file), offline_photo (a JPEG for the report made offline; none: no offline
// step), report ({kind, big_class, small_class, description}), offline_report (the same),
// chromium (/usr/bin/chromium), timeout_ms (60000), screenshots (a folder), debug.
// Prints one JSON object on stdout: console (every console error with the step it came in),
// foreign_requests (any request not to the page's origin), bad_responses (status >= 400,
// with their step), request_failures, and one entry per step: start, bad_token, norole, signin,
// tap, report, mine, lang, offline.
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { CHROMIUM_ARGS } from "./browser.mjs";

const PHONE_UA = "Mozilla/5.0 (Linux; Android 14; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) "
  + "Chrome/120.0.0.0 Mobile Safari/537.36";

async function main() {
  const o = JSON.parse(readFileSync(0, "utf8"));
  const timeoutMs = o.timeout_ms ?? 60000;
  const out = { console: [], foreign_requests: [], bad_responses: [], request_failures: [], timings_ms: {} };
  const t0 = Date.now();
  let step = "start";
  const mark = (k) => { out.timings_ms[k] = Date.now() - t0; };
  if (o.screenshots) mkdirSync(o.screenshots, { recursive: true });
  let browser;
  try {
    browser = await chromium.launch({ executablePath: o.chromium || "/usr/bin/chromium", headless: true,
                                      args: CHROMIUM_ARGS, timeout: 30000 });
    const origin = new URL(o.url).origin;
    const context = await browser.newContext({
      viewport: { width: 360, height: 740 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true,
      userAgent: PHONE_UA, locale: "zh-CN", timezoneId: "Asia/Shanghai",
      geolocation: { longitude: o.position.lon, latitude: o.position.lat, accuracy: 5 },
    });
    await context.grantPermissions(["geolocation"], { origin });
    await context.setGeolocation({ longitude: o.position.lon, latitude: o.position.lat, accuracy: 5 });
    const page = await context.newPage();
    page.setDefaultTimeout(timeoutMs);
    const shot = async (name) => { if (o.screenshots) await page.screenshot({ path: join(o.screenshots, name), fullPage: true }); };
    page.on("console", (m) => {
      if (m.type() === "error") out.console.push({ step, text: m.text() });
      if (o.debug) process.stderr.write(`${Date.now() - t0} ms [${step}] console.${m.type()} ${m.text()}\n`);
    });
    page.on("pageerror", (e) => out.console.push({ step, text: `page error: ${e.message}` }));
    page.on("request", (r) => {
      const u = r.url();
      if (!u.startsWith("data:") && !u.startsWith("blob:") && new URL(u).origin !== origin) out.foreign_requests.push(u);
    });
    page.on("requestfailed", (r) => {
      if (r.failure()?.errorText !== "net::ERR_ABORTED") out.request_failures.push({ step, url: r.url(), error: r.failure()?.errorText });
    });
    page.on("response", (r) => { if (r.status() >= 400) out.bad_responses.push({ step, status: r.status(), url: r.url() }); });

    // --- start: the page, its classes, the device's position, the map
    const response = await page.goto(o.url, { waitUntil: "load" });
    out.landing_status = response.status();
    await page.waitForSelector("body[data-ready='1']");
    await page.waitForSelector("#position[data-state='set']");
    await page.waitForFunction(() => document.body.dataset.map !== undefined);
    out.start = await page.evaluate(() => ({
      title: document.getElementById("title").textContent,
      position: { ...document.getElementById("position").dataset },
      position_text: document.getElementById("position").textContent,
      map: document.body.dataset.map,
      kinds: [...document.querySelectorAll("#kind option")].map((x) => [x.value, x.textContent]),
      scroll_width: document.documentElement.scrollWidth,
      inner_width: innerWidth,
      touch: navigator.maxTouchPoints,
      file_input: Object.fromEntries(["type", "accept", "capture"].map((k) => [k, document.getElementById("photo-input").getAttribute(k)])),
    }));
    if (out.start.map === "1") {
      await page.waitForFunction(() => window.gpReport.state.map.loaded());
    }
    mark("start");
    await shot("report-start.png");

    // --- a bad token: the platform's answer shown
    step = "bad_token";
    await page.fill("#token-input", o.bad_token);
    await page.tap("#signin-btn");
    await page.waitForFunction(() => document.getElementById("signin-msg").textContent.length > 0);
    out.bad_token = {
      message: await page.textContent("#signin-msg"),
      signed_in: await page.isVisible("#signed-in"),
      stored: await page.evaluate(() => sessionStorage.getItem("gp.token")),
    };
    mark("bad_token");

    // --- a token without a role on cases: signed in, but the report is refused with the
    // platform's description
    if (o.norole_token) {
      step = "norole";
      await page.fill("#token-input", o.norole_token);
      await page.tap("#signin-btn");
      await page.waitForSelector("#signed-in", { state: "visible" });
      await page.selectOption("#kind", "event");
      await page.selectOption("#big-class", "01");
      await page.tap("#submit-btn");
      await page.waitForSelector("#result[data-state='error']");
      out.norole = { text: await page.textContent("#result"), mine: await page.$$eval("#mine-list li", (l) => l.length) };
      await page.tap("#signout-btn");
      await page.waitForSelector("#signin", { state: "visible" });
      mark("norole");
    }

    // --- sign in
    step = "signin";
    await page.fill("#token-input", o.token);
    await page.tap("#signin-btn");
    await page.waitForSelector("#signed-in", { state: "visible" });
    out.signin = { text: await page.textContent("#signed-in-text"), message: await page.textContent("#signin-msg"),
                   stored: (await page.evaluate(() => sessionStorage.getItem("gp.token"))) === o.token };
    mark("signin");

    // --- a tap on the map places the point; "locate" takes the device's position again
    step = "tap";
    if (out.start.map === "1") {
      await page.locator("#map").scrollIntoViewIfNeeded();
      const box = await page.locator("#map canvas").boundingBox();
      const x = box.x + box.width * 0.3;
      const y = box.y + box.height * 0.6;
      const expected = await page.evaluate(([px, py]) => {
        const map = window.gpReport.state.map;
        const c = map.getCanvas().getBoundingClientRect();
        return map.unproject([px - c.left, py - c.top]).toArray();
      }, [x, y]);
      await page.touchscreen.tap(x, y);
      await page.waitForSelector("#position[data-how='map']");
      const got = await page.evaluate(() => ({ ...document.getElementById("position").dataset }));
      out.tap = { expected, got: [Number(got.lon), Number(got.lat)], how: got.how,
                  text: await page.textContent("#position"),
                  marker: await page.evaluate(() => window.gpReport.state.marker?.getLngLat().toArray() ?? null) };
      await page.tap("#locate-btn");
      await page.waitForSelector("#position[data-how='gps']");
      out.tap.back = await page.evaluate(() => ({ ...document.getElementById("position").dataset }));
    }
    mark("tap");

    // --- the report: classes, photo, description, submit
    step = "report";
    const r = o.report;
    await page.selectOption("#kind", r.kind);
    out.report = { big_options: await page.$$eval("#big-class option", (os) => os.map((x) => [x.value, x.textContent])) };
    await page.selectOption("#big-class", r.big_class);
    out.report.small_options = await page.$$eval("#small-class option", (os) => os.map((x) => [x.value, x.textContent]));
    if (r.small_class) await page.selectOption("#small-class", r.small_class);
    await page.setInputFiles("#photo-input", o.photo);
    await page.waitForFunction(() => {
      const img = document.getElementById("photo-preview");
      return img.complete && img.naturalWidth > 0;
    });
    out.report.preview = await page.evaluate(() => ({
      width: document.getElementById("photo-preview").naturalWidth,
      info: document.getElementById("photo-info").textContent }));
    await page.fill("#description", r.description || "");
    await shot("report-filled.png");
    await page.tap("#submit-btn");
    await page.waitForSelector("#result[data-state]:not([data-state='queued'])");
    Object.assign(out.report, await page.evaluate(() => {
      const res = document.getElementById("result");
      return { state: res.dataset.state, case_number: res.dataset.case || null, text: res.textContent,
               warning: document.getElementById("photo-warning")?.textContent ?? null,
               photo_ok: !!document.getElementById("photo-ok"),
               photo_error: document.getElementById("photo-error")?.textContent ?? null,
               cleared: !document.getElementById("photo-input").value && document.getElementById("photo-figure").hidden };
    }));
    mark("report");
    await shot("report-done.png");

    // --- my reports: this phone's case with its status
    step = "mine";
    if (out.report.case_number) {
      await page.waitForSelector(`#mine-list li[data-case='${out.report.case_number}']`);
      await page.tap("#mine-refresh");
      await page.waitForFunction((n) => document.querySelector(`#mine-list li[data-case='${n}'] .status`)?.textContent,
                                 out.report.case_number);
    }
    out.mine = await page.$$eval("#mine-list li", (lis) => lis.map((li) => ({
      case: li.dataset.case, status: li.dataset.status, status_text: li.querySelector(".status")?.textContent,
      deadline: li.querySelector(".deadline")?.textContent, meta: li.querySelector(".meta")?.textContent })));
    out.stored_mine = await page.evaluate(() => JSON.parse(localStorage.getItem("gp.report.mine") || "[]"));
    mark("mine");

    // --- English and back
    step = "lang";
    await page.tap("#lang");
    out.lang = { en: await page.textContent("#title"), en_status: await page.textContent("#mine-list li .status").catch(() => null),
                 en_kind: await page.$$eval("#kind option", (os) => os.map((x) => x.textContent)) };
    await page.tap("#lang");
    out.lang.back = await page.textContent("#title");
    out.end_scroll_width = await page.evaluate(() => document.documentElement.scrollWidth);

    // --- offline: queued (with its photo), then posted when the network is back
    if (o.offline_photo) {
      step = "offline";
      const q = o.offline_report;
      await context.setOffline(true);
      await page.waitForSelector("#net", { state: "visible" });
      await page.selectOption("#kind", q.kind);
      await page.selectOption("#big-class", q.big_class);
      if (q.small_class) await page.selectOption("#small-class", q.small_class);
      await page.setInputFiles("#photo-input", o.offline_photo);
      await page.fill("#description", q.description || "");
      await page.tap("#submit-btn");
      await page.waitForSelector("#result[data-state='queued']");
      await page.waitForSelector("body[data-queue='1']");
      out.offline = {
        result: await page.textContent("#result"),
        queue: await page.$$eval("#queue-list li", (lis) => lis.map((li) => li.textContent)),
        stored: await page.evaluate(async () => (await window.gpReport.queued()).map((it) => ({
          properties: it.feature.properties, coordinates: it.feature.geometry.coordinates,
          photo_bytes: it.photo ? it.photo.bytes.byteLength : 0, photo_type: it.photo?.type ?? null }))),
        requests_while_offline: out.bad_responses.filter((b) => b.step === "offline").length,
      };
      await shot("report-queued.png");
      await context.setOffline(false);
      await page.waitForSelector("body[data-queue='0']");
      await page.waitForSelector("#result[data-state='sent']");
      out.offline.sent = await page.evaluate(() => ({
        case_number: document.getElementById("result").dataset.case,
        text: document.getElementById("result").textContent,
        queue_hidden: document.getElementById("queue-box").hidden }));
      await page.waitForSelector(`#mine-list li[data-case='${out.offline.sent.case_number}']`);
      out.offline.mine = await page.$$eval("#mine-list li", (lis) => lis.map((li) => li.dataset.case));
      mark("offline");
    }
    step = "end";
    await shot("report-end.png");
  } catch (e) {
    out.error = `${step}: ${e && (e.stack || e)}`;
  } finally {
    if (browser) await browser.close();
  }
  mark("total");
  process.stdout.write(JSON.stringify(out) + "\n");
}

main();
