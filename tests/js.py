"""The JavaScript side of the tests: Khronos' glTF-Validator and CesiumJS in headless Chromium.

Both run as node scripts under tests/js/ with packages from node_modules (package.json) and
Debian's /usr/bin/chromium, which `make test` installs (scripts/bootstrap.sh). When they are
missing the calling test FAILS saying so: CI runs `make test`, so a missing tool is a broken
setup, never a reason to skip.

    from js import validate_glb, validate_glbs, cesium_load, gltf_errors

- `validate_glb(path)` / `validate_glbs(paths)`: the validator's report per file (one node
  process for all of them); `report["issues"]["numErrors"]`, `gltf_errors(report)`.
- `cesium_load(url)`: CesiumJS (node_modules/cesium/Build/Cesium, served from 127.0.0.1)
  loads the tileset at `url` (another origin: it needs CORS), zooms to it, waits until the
  view's tiles are loaded and reports tiles_loaded, failed (+ failures), console_errors,
  features, all_tiles_loaded, center_pick (the middle of the canvas hits the tileset),
  bounding_sphere (lon, lat, height, radius), webgl, timings_ms, and "error" when the
  tileset could not be loaded at all. No Cesium ion, no imagery, no network beyond loopback.
- `viewer_check(url)` / `report_check(url)`: the web viewer, and the field supervisors' phone
  page (/viewer/report.html, as a phone), driven in headless Chromium (tests/js/*_check.mjs).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
JS = Path(__file__).resolve().parent / "js"
NODE_MODULES = REPO / "node_modules"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))

_NEEDS = {
    "gltf-validator": NODE_MODULES / "gltf-validator" / "package.json",
    "playwright-core": NODE_MODULES / "playwright-core" / "package.json",
    "cesium": NODE_MODULES / "cesium" / "Build" / "Cesium" / "Cesium.js",
}


def missing(*, browser: bool = True) -> list[str]:
    """What the JS tests need and this checkout lacks (empty when all is there)."""
    out = []
    if shutil.which("node") is None:
        out.append("node (Node.js)")
    for name, marker in _NEEDS.items():
        if (browser or name == "gltf-validator") and not marker.is_file():
            out.append(f"the npm package {name} ({marker.relative_to(REPO)})")
    if browser and not os.access(CHROMIUM, os.X_OK):
        out.append(f"Chromium ({CHROMIUM})")
    return out


def require(*, browser: bool = True) -> None:
    """Fail the calling test when a JS tool is missing, saying how to get it."""
    lacking = missing(browser=browser)
    if lacking:
        pytest.fail("missing for the JS/browser tests: " + "; ".join(lacking)
                    + ". Run `make test` (scripts/bootstrap.sh installs package.json's packages"
                      " with npm ci and Debian's chromium), then pytest again.", pytrace=False)


def _node(script: str, options: dict, timeout_s: float) -> dict:
    """Run tests/js/<script> with `options` as JSON on stdin; its stdout is one JSON object.
    On timeout node gets SIGTERM (playwright closes its Chromium on it), then SIGKILL."""
    proc = subprocess.Popen(["node", str(JS / script)], cwd=REPO, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(json.dumps(options).encode(), timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        raise RuntimeError(f"{script} did not finish in {timeout_s:.0f} s: "
                           f"{err.decode(errors='replace')[-2000:]}") from None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"{script} failed ({proc.returncode}): "
                           f"{err.decode(errors='replace')[-4000:]}")
    return json.loads(out.decode().strip().splitlines()[-1])


# --- glTF ----------------------------------------------------------------------------

def validate_glbs(paths: Iterable[Path | str], *, max_issues: int = 100,
                  ignored_issues: Iterable[str] = (), timeout_s: float = 300) -> dict[Path, dict]:
    """Khronos glTF-Validator reports of many .glb/.gltf files, in one node process.
    A file the validator cannot read at all gets one error, code UNREADABLE."""
    require(browser=False)
    paths = [Path(p).resolve() for p in paths]
    if not paths:
        return {}
    reports = _node("validate_gltf.mjs", {"paths": [str(p) for p in paths],
                                          "max_issues": max_issues,
                                          "ignored_issues": list(ignored_issues)}, timeout_s)
    return {p: reports[str(p)] for p in paths}


def validate_glb(path: Path | str, **kw) -> dict:
    """The validator's report of one file (`report["issues"]["numErrors"]` …)."""
    return next(iter(validate_glbs([path], **kw).values()))


def gltf_errors(report: dict) -> list[str]:
    """The report's errors (severity 0) as 'CODE at pointer: message' lines."""
    return [f"{m['code']} at {m.get('pointer', '')}: {m['message']}"
            for m in report["issues"]["messages"] if m["severity"] == 0]


# --- CesiumJS ------------------------------------------------------------------------

def cesium_load(tileset_url: str, *, timeout_s: float = 60, screenshot: Path | None = None,
                flyto: bool = True, terrain_url: str | None = None, script: str | None = None,
                size: tuple[int, int] = (800, 600)) -> dict:
    """Load `tileset_url` in CesiumJS in headless Chromium (see the module doc).

    `terrain_url`: a quantized-mesh terrain (CesiumTerrainProvider.fromUrl) under the
    tileset; its tile errors count in `failed`. `script`: the body of an async JS function of
    (Cesium, viewer, tileset) run after loading; its JSON-able result is `["script"]`.
    `timeout_s` bounds the whole call (browser start included, about 5 s here)."""
    require(browser=True)
    options = {"tileset_url": tileset_url, "timeout_ms": int(timeout_s * 1000), "flyto": flyto,
               "terrain_url": terrain_url, "script": script, "chromium": str(CHROMIUM),
               "screenshot": str(screenshot) if screenshot else None,
               "width": size[0], "height": size[1]}
    return _node("cesium_load.mjs", options, timeout_s + 30)


# --- the web viewer ------------------------------------------------------------------

def viewer_check(url: str, *, timeout_s: float = 100, **options) -> dict:
    """Drive the viewer served at `url` (the app's root) in headless Chromium through
    tests/js/viewer_check.mjs (see there for `options`: building, token, screenshots, skip,
    wait_globe_ms, width/height) and return its report."""
    require(browser=True)
    options = {"url": url, "timeout_ms": int(timeout_s * 1000), "chromium": str(CHROMIUM), **options}
    if options.get("screenshots"):
        options["screenshots"] = str(options["screenshots"])
    return _node("viewer_check.mjs", options, timeout_s + 60)


# --- the field supervisors' phone page -----------------------------------------------

def report_check(url: str, *, timeout_s: float = 60, **options) -> dict:
    """Drive the phone page served at `url` (…/viewer/report.html) as a phone in headless
    Chromium through tests/js/report_check.mjs (see there for `options`: token, bad_token,
    position, photo, offline_photo, report, offline_report, screenshots) and return its
    report."""
    require(browser=True)
    options = {"url": url, "timeout_ms": int(timeout_s * 1000), "chromium": str(CHROMIUM), **options}
    for k in ("screenshots", "photo", "offline_photo"):
        if options.get(k):
            options[k] = str(options[k])
    return _node("report_check.mjs", options, timeout_s * 3 + 60)
