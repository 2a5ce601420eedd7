// Build the web viewer into gisplatform/viewer/dist (served by the app at /viewer/).
//
//   node gisplatform/viewer/build.mjs [--force]
//
// src/*.js → dist/app.js (esbuild, one ES module; maplibre-gl stays an import resolved by the
// page's import map to dist/vendor/maplibre-gl.mjs, whose worker sits next to it);
// stats.js and report.js → dist/ (the statistics page, the field supervisors' phone page);
// index.html, stats.html, report.html, css/ → dist/; node_modules/cesium/Build/Cesium (Cesium.js + Workers, Assets,
// ThirdParty, Widgets) → dist/vendor/cesium/ (CESIUM_BASE_URL; loaded on the first switch
// to 3D). Nothing is fetched from the network at build or at run time.
//
// Idempotent: dist/.stamp holds a SHA-256 of the viewer sources and package-lock.json; when
// it matches the build is skipped. The new dist is written next to the old one and renamed
// into place, so a failed build leaves the previous one.
import { createHash } from "node:crypto";
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync,
         statSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, "..", "..");
const DIST = join(HERE, "dist");
const NM = join(ROOT, "node_modules");
const SOURCES = ["build.mjs", "index.html", "stats.html", "report.html", "src", "css"];

function files(path) {
  if (!existsSync(path)) return [];
  if (statSync(path).isFile()) return [path];
  return readdirSync(path).sort().flatMap((n) => files(join(path, n)));
}

function checksum() {
  const h = createHash("sha256");
  for (const f of [...SOURCES.flatMap((s) => files(join(HERE, s))), join(ROOT, "package-lock.json")]) {
    h.update(relative(ROOT, f)).update("\0").update(existsSync(f) ? readFileSync(f) : "").update("\0");
  }
  return h.digest("hex");
}

async function main() {
  const force = process.argv.includes("--force");
  const sum = checksum();
  const stampFile = join(DIST, ".stamp");
  if (!force && existsSync(stampFile) && readFileSync(stampFile, "utf8").trim() === sum) {
    process.stderr.write("viewer: up to date (gisplatform/viewer/dist)\n");
    return;
  }
  for (const need of ["esbuild/package.json", "maplibre-gl/dist/maplibre-gl.mjs", "cesium/Build/Cesium/Cesium.js"]) {
    if (!existsSync(join(NM, need))) throw new Error(`node_modules/${need} is missing: run npm ci (make run does)`);
  }
  const esbuild = await import("esbuild");
  const t0 = Date.now();
  const tmp = `${DIST}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(join(tmp, "vendor"), { recursive: true });
  await esbuild.build({
    entryPoints: [join(HERE, "src", "main.js")], outfile: join(tmp, "app.js"),
    bundle: true, format: "esm", minify: true, sourcemap: true, target: ["chrome110", "firefox115", "safari16"],
    external: ["maplibre-gl"], legalComments: "none", logLevel: "warning",
    define: { "process.env.NODE_ENV": '"production"' },
  });
  // the statistics page (stats.html): its own bundle, no map libraries
  await esbuild.build({
    entryPoints: [join(HERE, "src", "stats.js")], outfile: join(tmp, "stats.js"),
    bundle: true, format: "esm", minify: true, sourcemap: true, target: ["chrome110", "firefox115", "safari16"],
    legalComments: "none", logLevel: "warning",
  });
  // the field supervisors' phone page (report.html): its own bundle; maplibre-gl from the
  // import map, as app.js
  await esbuild.build({
    entryPoints: [join(HERE, "src", "report.js")], outfile: join(tmp, "report.js"),
    bundle: true, format: "esm", minify: true, sourcemap: true, target: ["chrome110", "firefox115", "safari16"],
    external: ["maplibre-gl"], legalComments: "none", logLevel: "warning",
  });
  cpSync(join(HERE, "index.html"), join(tmp, "index.html"));
  cpSync(join(HERE, "stats.html"), join(tmp, "stats.html"));
  cpSync(join(HERE, "report.html"), join(tmp, "report.html"));
  cpSync(join(HERE, "css"), join(tmp, "css"), { recursive: true });
  const ml = join(NM, "maplibre-gl", "dist");
  for (const f of ["maplibre-gl.mjs", "maplibre-gl-worker.mjs", "maplibre-gl-shared.mjs", "maplibre-gl.css"]) {
    if (existsSync(join(ml, f))) cpSync(join(ml, f), join(tmp, "vendor", f));
  }
  const cesium = join(NM, "cesium", "Build", "Cesium");
  mkdirSync(join(tmp, "vendor", "cesium"));
  for (const f of ["Cesium.js", "Workers", "Assets", "ThirdParty", "Widgets"]) {
    cpSync(join(cesium, f), join(tmp, "vendor", "cesium", f), { recursive: true });
  }
  writeFileSync(join(tmp, ".stamp"), sum + "\n");
  const old = `${DIST}.old-${process.pid}`;
  if (existsSync(DIST)) renameSync(DIST, old);
  renameSync(tmp, DIST);
  rmSync(old, { recursive: true, force: true });
  const kb = (p) => Math.round(statSync(p).size / 1024);
  process.stderr.write(`viewer: built gisplatform/viewer/dist in ${((Date.now() - t0) / 1000).toFixed(1)} s `
    + `(app.js ${kb(join(DIST, "app.js"))} KiB, maplibre ${kb(join(DIST, "vendor", "maplibre-gl.mjs"))} KiB)\n`);
}

main().catch((e) => {
  process.stderr.write(`viewer build failed: ${e && (e.stack || e)}\n`);
  process.exit(1);
});
