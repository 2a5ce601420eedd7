#!/usr/bin/env python3
"""Screenshots of the web viewer for a reviewer: screenshots/viewer-2d.png,
viewer-2d-2019.png, viewer-2d-popup.png (a building's attributes and history), viewer-3d.png
and viewer-3d-2019.png (headless Chromium, software GL).

    .venv/bin/python scripts/screenshots.py                  # a throwaway platform, then stop it
    .venv/bin/python scripts/screenshots.py --url http://127.0.0.1:8000/ [--token gp_…]

Without --url it starts its own `gisplatform up` (embedded PostGIS in a temporary data dir,
free ports — never 8000 — the small demo city with its rasters and 3D tilesets, about a
minute), creates a token that reads persons and cameras (so the 3D view shows the cameras'
view cones), takes the screenshots and stops the server and the database. With --url it
uses a running platform (`make run`); pass --token for the cameras.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / ".venv" / "bin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_health(base: str, proc: subprocess.Popen, log: Path, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"gisplatform up stopped: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    sys.exit(f"no /health from {base} in {timeout:.0f} s")


def shoot(url: str, out: Path, token: str | None, building: str | None) -> dict:
    options = {"url": url, "screenshots": str(out), "token": token, "building": building,
               "timeout_ms": 240000, "wait_globe_ms": 90000, "width": 1280, "height": 800,
               "skip": ["lang"] + ([] if token else ["signin"])}
    proc = subprocess.run(["node", str(REPO / "tests" / "js" / "viewer_check.mjs")], cwd=REPO,
                          input=json.dumps(options), capture_output=True, text=True, timeout=600,
                          check=False)
    if proc.returncode != 0:
        sys.exit(f"viewer_check failed: {proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="a running platform's root (default: start a throwaway one)")
    ap.add_argument("--token", help="a token (shows conditional layers and cameras)")
    ap.add_argument("--out", default=str(REPO / "screenshots"), help="folder (default screenshots/)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    build = subprocess.run(["node", str(REPO / "gisplatform" / "viewer" / "build.mjs")], cwd=REPO,
                           check=False)
    if build.returncode != 0:
        sys.exit("the viewer does not build: run make run (or npm ci) first")
    if args.url:
        report = shoot(args.url, out, args.token, None)
    else:
        data = Path(tempfile.mkdtemp(prefix="gisplatform-shots-"))
        os.chmod(data, 0o755)  # the embedded server may run as postgres
        port = free_port()
        env = {**os.environ, "GISPLATFORM_DATA_DIR": str(data), "GISPLATFORM_PORT": str(port),
               "GISPLATFORM_PG_PORT": str(free_port())}
        for k in ("DATABASE_URL", "PORT", "GISPLATFORM_PUBLIC_URL"):
            env.pop(k, None)
        log = data / "up.log"
        print(f"starting a throwaway platform on port {port} (data in {data}) …", file=sys.stderr)
        proc = subprocess.Popen([str(VENV / "gisplatform"), "up", "--port", str(port)], env=env,
                                stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_health(base, proc, log)
            created = subprocess.run([str(VENV / "gisplatform"), "token", "create", "-d", "gongan",
                                      "-g", "persons:read", "-g", "cameras:read", "--label", "screenshots"],
                                     env=env, capture_output=True, text=True, check=False)
            token = args.token or next(iter(re.findall(r"gp_[A-Za-z0-9_-]+", created.stdout + created.stderr)), None)
            with urllib.request.urlopen(f"{base}/ogc/collections/buildings/items?f=json&limit=1") as r:
                building = json.load(r)["features"][0]["id"]
            report = shoot(base + "/", out, token, building)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            subprocess.run([str(VENV / "gisplatform"), "db", "stop"], env=env, capture_output=True,
                           check=False)
            shutil.rmtree(data, ignore_errors=True)
    for name in ("viewer-2d.png", "viewer-2d-2019.png", "viewer-2d-popup.png", "viewer-3d.png",
                 "viewer-3d-2019.png"):
        p = out / name
        print(f"{p}: {p.stat().st_size // 1024} KiB" if p.exists() else f"{p}: missing", file=sys.stderr)
    problems = {k: report[k] for k in ("console_errors", "bad_responses", "request_failures",
                                       "foreign_requests", "error") if report.get(k)}
    if report.get("globe_incomplete"):
        problems["globe"] = "the 3D globe's imagery was still loading at the screenshot"
    if problems:
        print(json.dumps(problems, indent=1, ensure_ascii=False), file=sys.stderr)
    sys.exit(1 if "error" in problems else 0)


if __name__ == "__main__":
    main()
