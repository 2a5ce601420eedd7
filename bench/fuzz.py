"""schemathesis over both OpenAPI documents, longer than the test suite's run.

    .venv/bin/python bench/fuzz.py                       # own throwaway database + server
    .venv/bin/python bench/fuzz.py --examples 200        # a longer run
    .venv/bin/python bench/fuzz.py --url http://127.0.0.1:8000   # a running server (reads,
                                                         # and writes refused without a token)

Without --url it loads the small demo city into a throwaway cluster (never a shared
database: the write runs change it), serves it with `gisplatform serve` (bench/ogc_vs_tipg's
`serve`) and creates a token granted write + read_personal on every layer. Runs:

  platform   /openapi.json (tiles, 3D, search, health, metrics, PATCH), anonymous
  ogc-read   /ogc/openapi, every GET, anonymous
  anon-writes  the item writes (POST/PUT/DELETE items, PATCH) without a token: every
             write answered 401/403, and the database unchanged
  ogc-token  /ogc/openapi, every operation, with the write token (conditional layers too)
  token-writes  the item writes with the token: invalid bodies and parameters must be
             4xx (negative_data_rejection), never 5xx

Every run checks: no 5xx, statuses and media types as documented, bodies matching their
schemas. Prints one line per run and a JSON summary; exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ST = str(Path(sys.executable).with_name("schemathesis"))
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_schema_conformance")
WRITES = ("PUT", "DELETE", "PATCH")  # and POST with a GeoJSON body (a POST of JSON is a CQL2 query)


def schemathesis(doc: str, base: str, *, examples: int, seed: int, report_dir: Path,
                 token: str | None = None, checks: str = CHECKS, phases: str = "examples,fuzzing",
                 select: tuple[str, ...] = (), timeout: float = 3600) -> dict:
    """One schemathesis run; its JSON report's figures and the requests it made (HAR)."""
    report_dir.mkdir(parents=True, exist_ok=True)
    cmd = [ST, "run", doc, "--url", base, "-c", checks, "-n", str(examples),
           "--phases", phases, "--seed", str(seed), "--no-color", "--workers", "1",
           "--suppress-health-check", "all",  # slow / filtered generation is not a failure
           # no example database: a run is the same in a clean clone (CI) as here
           "--generation-database", "none",
           "--report", "json,har", "--report-dir", str(report_dir), *select]
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    t = time.perf_counter()
    r = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout)
    report = json.loads(Path(_one(report_dir, "json-*.json")).read_text())
    har = json.loads(Path(_one(report_dir, "har-*.json")).read_text())["log"]["entries"]
    return {"exit": r.returncode, "seconds": round(time.perf_counter() - t, 1),
            "operations": report["operations"]["tested"],
            "cases": report["test_cases"]["generated"],
            "failures": report["test_cases"]["unique_failures"],
            "errors": len(report["errors"]),
            "failure_kinds": {f["title"]: f["count"] for f in report["failures"]},
            "output": r.stdout, "requests": har}


def _one(directory: Path, pattern: str) -> str:
    found = sorted(glob.glob(str(directory / pattern)))
    if not found:
        raise RuntimeError(f"schemathesis wrote no {pattern} in {directory}")
    return found[-1]


def is_write(entry: dict) -> bool:
    req = entry["request"]
    if req["method"] in WRITES:
        return True
    # POST application/json to items is a CQL2 search (a read); a GeoJSON body is a write
    media = {h["name"].lower(): h["value"] for h in req["headers"]}.get("content-type", "")
    return req["method"] == "POST" and "/items" in req["url"] and media.startswith("application/geo+json")


def unauthorized_writes(entries: list[dict]) -> list[str]:
    """Writes (see is_write) answered other than 401/403."""
    return [f"{e['request']['method']} {e['request']['url'][:120]} -> {e['response']['status']}"
            for e in entries if is_write(e) and e["response"]["status"] not in (401, 403)]


# item writes only: POST/PUT/DELETE on the OGC items paths (pygeoapi's document)
OGC_WRITES = ("--include-path-regex", "/items", "--exclude-method", "GET",
              "--exclude-method", "OPTIONS")


def runs(base: str, token: str | None, examples: int, seed: int, out: Path,
         count=None) -> dict:
    """The runs above; `count()`, when given, is taken before and after the anonymous writes."""
    platform, ogc = f"{base}/openapi.json", f"{base}/ogc/openapi?f=json"
    res = {"platform": schemathesis(platform, base, examples=examples, seed=seed,
                                    report_dir=out / "platform"),
           "ogc-read": schemathesis(ogc, f"{base}/ogc", examples=examples, seed=seed,
                                    report_dir=out / "ogc-read",
                                    select=("--include-method", "GET"))}
    before = count() if count else None
    anon = [schemathesis(ogc, f"{base}/ogc", examples=examples, seed=seed,
                         report_dir=out / "anon-ogc", select=OGC_WRITES),
            schemathesis(platform, base, examples=examples, seed=seed,
                         report_dir=out / "anon-patch", select=("--include-method", "PATCH"))]
    after = count() if count else None
    merged = _merged(anon)
    res["anon-writes"] = {
        **merged, "writes_sent": sum(1 for e in merged["requests"] if is_write(e)),
        "not_refused": unauthorized_writes(merged["requests"]),
        "database_unchanged": before == after if count else None}
    if token:  # last: they write
        res["ogc-token"] = schemathesis(ogc, f"{base}/ogc", examples=examples, seed=seed,
                                        token=token, report_dir=out / "ogc-token")
        # invalid bodies and parameters of writes are 4xx. Not asked of reads: pygeoapi
        # takes `lang` as a preference and falls back on an unknown one (OGC API Common),
        # which this check would count as accepting invalid data.
        writes = [schemathesis(ogc, f"{base}/ogc", examples=examples, seed=seed, token=token,
                               report_dir=out / "token-writes", select=OGC_WRITES,
                               checks=CHECKS + ",negative_data_rejection"),
                  schemathesis(platform, base, examples=examples, seed=seed, token=token,
                               report_dir=out / "token-patch", select=("--include-method", "PATCH"),
                               checks=CHECKS + ",negative_data_rejection")]
        res["token-writes"] = _merged(writes)
    return res


def _merged(parts: list[dict]) -> dict:
    return {**{k: sum(p[k] for p in parts) for k in ("operations", "cases", "failures", "errors")},
            "seconds": round(sum(p["seconds"] for p in parts), 1),
            "exit": max(p["exit"] for p in parts),
            "failure_kinds": {k: v for p in parts for k, v in p["failure_kinds"].items()},
            "output": "\n".join(p["output"] for p in parts),
            "requests": [e for p in parts for e in p["requests"]]}


def table_counts(url: str) -> dict:
    """Rows in every version table and write audits: what the anonymous run must not change."""
    import psycopg

    from layers import LAYERS

    with psycopg.connect(url) as conn:
        out = {n: conn.execute(f'select count(*) from city."{lay.spec.version_table}"').fetchone()[0]
               for n, lay in LAYERS.items()}
        out["audit_writes"] = conn.execute(
            "select count(*) from city.audit_log where action = 'write'").fetchone()[0]
    return out


def throwaway(root: Path):
    """The small demo in a throwaway cluster, a write token, a served app."""
    import psycopg
    from ogc_vs_tipg import serve  # bench/: how bench scripts start the app

    from gisplatform.db import migrate
    from gisplatform.db.embedded import EmbeddedPostgres, free_port
    from gisplatform.security import create_token
    from gisplatform.temporal import parse_instant
    from layers import LAYERS
    from layers.demo import load_demo

    os.chmod(root, 0o755)  # the cluster runs as postgres when we are root
    pg = EmbeddedPostgres(root / "pg", port=free_port(), durable=False)
    url = pg.start()
    try:
        migrate.upgrade(url)
        with psycopg.connect(url) as conn:
            load_demo(conn, "small", 42, parse_instant("2026-11-01T00:00:00+08:00"))
            _, token = create_token(
                conn, "dashuju", [(n, lvl) for n in LAYERS for lvl in ("write", "read_personal")],
                label="bench-fuzz")
        port = free_port()
        cli = str(Path(sys.executable).with_name("gisplatform"))
        proc = serve([cli, "serve", "--port", str(port)],
                     {"DATABASE_URL": url, "GISPLATFORM_DATA_DIR": str(root / "data"),
                      "GISPLATFORM_PUBLIC_URL": f"http://127.0.0.1:{port}"},
                     f"http://127.0.0.1:{port}/health")
    except BaseException:
        pg.stop()
        raise
    return pg, url, proc, f"http://127.0.0.1:{port}", token


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--examples", type=int, default=50, help="cases per operation and phase")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--url", help="an already running server (no token: reads and refused writes)")
    ap.add_argument("--token", help="with --url: a write token for the ogc-token run")
    ap.add_argument("--reports", type=Path, help="keep schemathesis' reports here")
    args = ap.parse_args()
    if args.examples < 1:
        ap.error("--examples must be at least 1")
    with tempfile.TemporaryDirectory(prefix="gisplatform-fuzz-") as tmp:
        root = Path(tmp)
        out = args.reports or root / "reports"
        if args.url:
            results = runs(args.url.rstrip("/"), args.token, args.examples, args.seed, out)
        else:
            pg, url, proc, base, token = throwaway(root)
            try:
                results = runs(base, token, args.examples, args.seed, out,
                               count=lambda: table_counts(url))
            finally:
                from tiles_vs_tipg import stop
                stop(proc)
                pg.stop()
    failed = False
    for name, r in results.items():
        bad = (r["failures"] or r["errors"] or r["exit"] or r.get("not_refused")
               or r.get("database_unchanged") is False)
        failed |= bool(bad)
        print(f"{name:16} {r['operations']:4} operations {r['cases']:6} cases "
              f"{r['failures']:3} failures {r['errors']:2} errors  {r['seconds']:6}s"
              + (f"  writes sent {r['writes_sent']}, not refused {len(r['not_refused'])},"
                 f" database unchanged {r['database_unchanged']}" if "writes_sent" in r else ""))
        if bad:
            print(r["output"][-6000:])
            for w in r.get("not_refused", [])[:20]:
                print("  not refused:", w)
    print(json.dumps({k: {f: v for f, v in r.items() if f not in ("output", "requests")}
                      for k, r in results.items()}, ensure_ascii=False))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
