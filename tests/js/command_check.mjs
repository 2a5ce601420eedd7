// Drive the viewer's command view (监督指挥) in headless Chromium and report what it shows.
//
//   echo '{"url": "http://127.0.0.1:PORT/viewer/", ...}' | node tests/js/command_check.mjs
//
// Options (JSON on stdin): url (the viewer), center ([lon, lat]) and zoom to look at the
// cases, cases ({case_number: [lon, lat]}: where they are), click (a case number to click in
// the map), inbox_click (a case number to click in the inbox), missing (a case number the
// API does not know, opened last), handle_token (a token with
// cases:handle), other_token (a token without any cases role), timeout_ms (60000),
// chromium, width/height (1100x700), screenshots (a folder), debug.
// Prints one JSON object: console_errors, bad_responses, request_failures, foreign_requests,
// and per step what the page showed (rendered cases by layer, panel timelines, inbox).
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { CHROMIUM_ARGS, IDLE } from "./browser.mjs";



// page side: the cases the command view draws, by layer
const RENDERED = () => {
  const map = window.gp.map2d.map;
  const layers = ["cmd-cases", "cmd-cases-overdue"].filter((id) => map.getLayer(id));
  const out = {};
  for (const f of map.queryRenderedFeatures({ layers })) {
    out[f.properties.fid] = { layer: f.layer.id, status: f.properties.status };
  }
  return {
    cases: out, layers,
    platform_point: !!map.getLayer("cases-point"),
    overdue_paint: map.getLayer("cmd-cases-overdue") ? {
      stroke: map.getPaintProperty("cmd-cases-overdue", "circle-stroke-color"),
      width: map.getPaintProperty("cmd-cases-overdue", "circle-stroke-width"),
    } : null,
    open_paint: map.getLayer("cmd-cases") ? {
      stroke: map.getPaintProperty("cmd-cases", "circle-stroke-color"),
      width: map.getPaintProperty("cmd-cases", "circle-stroke-width"),
    } : null,
    filter: map.getLayer("cmd-cases-overdue") ? JSON.stringify(map.getFilter("cmd-cases-overdue")) : null,
  };
};

// page side: what the panel shows of a case
const PANEL = () => {
  const root = document.getElementById("panel");
  const text = (sel) => root.querySelector(sel)?.textContent ?? null;
  const field = (f) => root.querySelector(`.case-summary td[data-field='${f}']`)?.nextElementSibling?.textContent ?? null;
  return {
    hidden: root.hidden, fid: root.dataset.fid, layer: root.dataset.layer, status: root.dataset.status,
    overdue: root.dataset.overdue, title: text("h2"),
    steps: [...root.querySelectorAll("ol.case-steps > li")].map((li) => ({
      step: li.dataset.step, at: li.dataset.at, name: li.querySelector(".step-name")?.textContent,
      time: li.querySelector("time")?.textContent, department: li.querySelector(".step-dept")?.textContent,
      note: li.querySelector(".step-note")?.textContent ?? null,
      photos: [...li.querySelectorAll("img.thumb")].map((img) => ({
        sha: img.dataset.sha, state: img.dataset.state || null, blob: img.src.startsWith("blob:"),
        width: img.naturalWidth })),
    })),
    fields: Object.fromEntries(["status", "class", "deadline", "overdue", "remaining", "department",
      "reporter_name", "reporter_phone"].map((f) => [f, field(f)])),
    error: text(".api-error"),
  };
};

const INBOX = () => {
  const box = document.getElementById("inbox");
  return {
    hidden: box.hidden, state: box.dataset.state || null, message: box.dataset.message || null,
    title: box.querySelector(".inbox-head")?.textContent,
    entries: [...box.querySelectorAll("#inbox-list li.task")].map((li) => ({
      case: li.dataset.case, overdue: li.dataset.overdue === "true", text: li.textContent,
      remaining: li.querySelector(".remaining")?.textContent })),
  };
};

async function main() {
  const o = JSON.parse(readFileSync(0, "utf8"));
  const timeoutMs = o.timeout_ms ?? 60000;
  const t0 = Date.now();
  const out = { console_errors: [], bad_responses: [], request_failures: [], foreign_requests: [], timings_ms: {} };
  const mark = (k) => { out.timings_ms[k] = Date.now() - t0; };
  if (o.screenshots) mkdirSync(o.screenshots, { recursive: true });
  const shot = async (page, name) => { if (o.screenshots) await page.screenshot({ path: join(o.screenshots, name) }); };
  let browser, page;
  try {
    browser = await chromium.launch({ executablePath: o.chromium || "/usr/bin/chromium", headless: true,
                                      args: CHROMIUM_ARGS, timeout: 30000 });
    page = await browser.newPage({ viewport: { width: o.width || 1100, height: o.height || 700 } });
    page.setDefaultTimeout(timeoutMs);
    const origin = new URL(o.url).origin;
    page.on("console", (m) => {
      if (m.type() === "error") out.console_errors.push(m.text());
      if (o.debug) process.stderr.write(`${Date.now() - t0} ms console.${m.type()} ${m.text()}\n`);
    });
    page.on("pageerror", (e) => out.console_errors.push(`page error: ${e.message}`));
    page.on("requestfailed", (r) => {
      if (r.failure()?.errorText !== "net::ERR_ABORTED") out.request_failures.push(`${r.url()}: ${r.failure()?.errorText}`);
    });
    page.on("request", (r) => {
      const u = r.url();
      if (!u.startsWith("data:") && !u.startsWith("blob:") && new URL(u).origin !== origin) out.foreign_requests.push(u);
    });
    page.on("response", (r) => { if (r.status() >= 400) out.bad_responses.push(`${r.status()} ${new URL(r.url()).pathname}`); });

    await page.goto(o.url, { waitUntil: "load" });
    await page.waitForSelector("body[data-ready='1']");
    await page.evaluate(IDLE);
    mark("ready");
    out.before = { legend_hidden: await page.evaluate(() => document.getElementById("legend").hidden),
                   inbox_hidden: await page.evaluate(() => document.getElementById("inbox").hidden),
                   button: await page.textContent("#command-btn") };

    // the command view, anonymous: the cases by status, the overdue one ringed; no inbox
    await page.click("#command-btn");
    await page.waitForFunction(() => document.body.classList.contains("command") && window.gp.map2d.map.getLayer("cmd-cases"));
    await page.evaluate(([c, z]) => window.gp.map2d.map.jumpTo({ center: c, zoom: z }), [o.center, o.zoom]);
    await page.evaluate(IDLE);
    out.anonymous = { ...(await page.evaluate(RENDERED)), inbox: await page.evaluate(INBOX),
      legend: await page.$$eval("#legend li", (li) => li.map((x) => [x.dataset.status, x.textContent])),
      legend_title: await page.textContent("#legend h3"),
      pressed: await page.getAttribute("#command-btn", "aria-pressed") };
    await shot(page, "command-anonymous.png");
    mark("anonymous");

    const look = async () => {
      await page.evaluate(([c, z]) => window.gp.map2d.map.jumpTo({ center: c, zoom: z }), [o.center, o.zoom]);
      await page.evaluate(IDLE);
    };
    // a click on a case's point in the map (centred first: nothing of the page over it)
    const clickCase = async (number) => {
      const [lon, lat] = o.cases[number];
      await page.evaluate(([x, y]) => window.gp.map2d.map.jumpTo({ center: [x, y], zoom: 16 }), [lon, lat]);
      await page.evaluate(IDLE);
      const p = await page.evaluate(([x, y]) => {
        const pt = window.gp.map2d.map.project([x, y]);
        const box = window.gp.map2d.map.getCanvas().getBoundingClientRect();
        return { x: box.left + pt.x, y: box.top + pt.y };
      }, [lon, lat]);
      await page.mouse.click(p.x, p.y);
      await page.waitForFunction((n) => {
        const r = document.getElementById("panel");
        return !r.hidden && r.dataset.fid === n && r.dataset.state === "done";
      }, number);
    };
    // a click on a case: its timeline (anonymous: the cases layer is unconditional)
    await clickCase(o.click);
    out.click_anonymous = await page.evaluate(PANEL);

    // sign in with a handling department's token: its inbox
    await page.fill("#token-input", o.handle_token);
    await page.click("#signin-btn");
    await page.waitForFunction(() => document.getElementById("inbox").dataset.state === "done");
    out.inbox = await page.evaluate(INBOX);
    await page.evaluate(IDLE);
    // the case again, signed in: photos fetched with the token
    await page.click("#panel-close");
    await clickCase(o.click);
    await page.waitForFunction(() => [...document.querySelectorAll("#panel img.thumb")].every((i) => i.dataset.state)
      , null, { timeout: 20000 });
    out.click = await page.evaluate(PANEL);
    out.html = await page.content(); // A's panel open: its reporter as the API answered
    await shot(page, "command-case.png");
    // an inbox entry: the map flies there, the timeline opens
    await page.click(`#inbox-list li[data-case='${o.inbox_click}']`);
    await page.waitForFunction((n) => {
      const r = document.getElementById("panel");
      return r.dataset.fid === n && r.dataset.state === "done";
    }, o.inbox_click);
    await page.evaluate(IDLE);
    out.inbox_click = { panel: await page.evaluate(PANEL),
      center: await page.evaluate(() => window.gp.map2d.map.getCenter().toArray()),
      zoom: await page.evaluate(() => window.gp.map2d.map.getZoom()),
      active: await page.$$eval("#inbox-list li.active", (l) => l.map((x) => x.dataset.case)) };
    await look();
    out.signed_in = await page.evaluate(RENDERED);
    await shot(page, "command-inbox.png");
    mark("inbox");

    // English and back
    await page.click("#lang");
    out.english = { legend_title: await page.textContent("#legend h3"), inbox: await page.evaluate(INBOX),
                    button: await page.textContent("#command-btn") };
    await page.waitForFunction(() => document.getElementById("panel").dataset.state === "done");
    out.english.panel = await page.evaluate(PANEL);
    await page.click("#lang");
    await page.waitForFunction(() => document.getElementById("panel").dataset.state === "done");

    // the time slider to 2019 (no case then) and back; the tiles are asked anew at each
    // instant (setTiles reloads them after the map may have reported idle: wait for it)
    const moveTo = async (index, marker) => {
      await page.locator("#time").fill(String(index));
      await page.evaluate(() => window.gp.settled());
      await page.waitForFunction((m) => (window.gp.map2d.map.getSource("cases").tiles[0].includes("datetime=") === !!m)
        && (!m || window.gp.map2d.map.getSource("cases").tiles[0].includes(m)), marker);
      await page.waitForTimeout(300);
      await page.evaluate(IDLE);
    };
    await look();
    const index = await page.evaluate(() => window.gp.steps.findIndex((s) => s.date === "2019-01-01"));
    await moveTo(index, "2019-01-01");
    out.in_2019 = await page.evaluate(RENDERED);
    out.in_2019.label = await page.textContent("#time-value");
    await moveTo(await page.evaluate(() => window.gp.steps.length - 1), null);
    out.back_now = await page.evaluate(RENDERED);

    // sign out: no inbox; a token without a cases role: no inbox either
    await page.click("#signout-btn");
    await page.evaluate(() => window.gp.settled());
    out.signed_out = { inbox: await page.evaluate(INBOX) };
    await page.fill("#token-input", o.other_token);
    await page.click("#signin-btn");
    await page.waitForFunction(() => document.getElementById("signed-in").hidden === false);
    await page.waitForFunction(() => document.getElementById("inbox").dataset.state === "denied");
    await look();
    out.other = { inbox: await page.evaluate(INBOX), rendered: await page.evaluate(RENDERED),
                  message: await page.textContent("#message") };
    await clickCase(o.click);
    out.other.panel = await page.evaluate(PANEL);
    await shot(page, "command-other.png");

    // the command view off: the platform's own cases layer again
    await page.click("#command-btn");
    await page.waitForFunction(() => !document.body.classList.contains("command"));
    await look();
    out.off = { ...(await page.evaluate(RENDERED)),
                platform: await page.evaluate(() => window.gp.map2d.map.queryRenderedFeatures({ layers: ["cases-point"] })
                  .map((f) => f.properties.fid).sort()),
                legend_hidden: await page.evaluate(() => document.getElementById("legend").hidden),
                inbox_hidden: await page.evaluate(() => document.getElementById("inbox").hidden) };
    // a case the API does not have (option missing): the panel shows the API's answer
    if (o.missing) {
      await page.evaluate((n) => window.gp.openFeature("cases", n, {}), o.missing);
      out.missing = await page.evaluate(PANEL);
    }
    mark("done");
  } catch (e) {
    out.error = String((e && (e.stack || e.message)) || e).split("\n").slice(0, 6).join("\n");
    if (page) {
      out.state = await page.evaluate(() => ({ panel: { ...document.getElementById("panel")?.dataset },
        inbox: { ...document.getElementById("inbox")?.dataset }, message: document.getElementById("message")?.textContent,
        body: document.body.className })).catch((x) => String(x));
    }
  } finally {
    out.timings_ms.wall = Date.now() - t0;
    process.stdout.write(JSON.stringify(out) + "\n");
    if (browser) await browser.close().catch(() => {});
  }
}

main().then(() => process.exit(0), (e) => {
  process.stderr.write(`command_check: ${e && (e.stack || e)}\n`);
  process.exit(1);
});
