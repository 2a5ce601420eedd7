// Drive the statistics page (/viewer/stats.html) in headless Chromium and report what it drew.
//
//   echo '{"url": "http://127.0.0.1:PORT/viewer/stats.html#topic=population&from=2024-01&to=2024-12"}' \
//     | node tests/js/stats_check.mjs
//
// Options (JSON on stdin): url (required), chromium, timeout_ms (60000), screenshot (a path).
// Prints one JSON object: console_errors, bad_responses, request_failures, foreign_requests,
// first (the chart as loaded), evaluation (after choosing that topic and "department"),
// lang (titles before/after switching to English).
import { readFileSync } from "node:fs";
import { chromium } from "playwright-core";

const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync"];

// page side: what the chart shows
const CHART = () => {
  const svg = document.querySelector("#chart svg");
  const lines = [...document.querySelectorAll("#chart g[data-figure]")].map((g) => ({
    figure: g.dataset.figure,
    points: g.querySelectorAll("circle.pt").length,
    vertices: [...g.querySelectorAll("polyline")].reduce((n, p) => n + p.points.numberOfItems, 0),
  }));
  return { months: svg ? Number(svg.dataset.months) : 0, lines, title: document.getElementById("chart-title").textContent,
           series: document.getElementById("series").value,
           options: document.getElementById("series").options.length,
           message: document.getElementById("message").textContent, hash: location.hash };
};

async function main() {
  const o = JSON.parse(readFileSync(0, "utf8"));
  const out = { console_errors: [], bad_responses: [], request_failures: [], foreign_requests: [] };
  let browser;
  try {
    browser = await chromium.launch({ executablePath: o.chromium || "/usr/bin/chromium", headless: true, args: ARGS });
    const page = await browser.newPage({ viewport: { width: 1100, height: 700 } });
    page.setDefaultTimeout(o.timeout_ms ?? 60000);
    const origin = new URL(o.url).origin;
    page.on("console", (m) => { if (m.type() === "error") out.console_errors.push(m.text()); });
    page.on("pageerror", (e) => out.console_errors.push(`page error: ${e.message}`));
    page.on("requestfailed", (r) => out.request_failures.push(`${r.url()}: ${r.failure()?.errorText}`));
    page.on("request", (r) => {
      const u = r.url();
      if (!u.startsWith("data:") && !u.startsWith("blob:") && new URL(u).origin !== origin) out.foreign_requests.push(u);
    });
    page.on("response", (r) => { if (r.status() >= 400) out.bad_responses.push(`${r.status()} ${r.url()}`); });
    const ready = () => page.waitForFunction(() => window.gpStats && window.gpStats.ready);
    await page.goto(o.url, { waitUntil: "load" });
    await ready();
    out.first = await page.evaluate(CHART);
    out.csv = await page.getAttribute("#csv", "href");
    if (o.screenshot) await page.screenshot({ path: o.screenshot });

    await page.selectOption("#topic", "evaluation");
    await ready();
    await page.selectOption("#by", "department");
    await ready();
    out.evaluation = await page.evaluate(CHART);

    const before = await page.textContent("#title");
    await page.click("#lang");
    out.lang = { before, after: await page.textContent("#title"), topic: await page.$eval("#topic", (s) => s.selectedOptions[0].text) };
  } catch (e) {
    out.error = String(e && (e.stack || e));
  } finally {
    if (browser) await browser.close();
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

main();
