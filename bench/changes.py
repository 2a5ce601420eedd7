"""The change feed under write load: does a consumer keep up with 1 000 writes/s?

    .venv/bin/python bench/changes.py                      # small demo, 30 s, 1 000 writes/s
    .venv/bin/python bench/changes.py --rate 2000 --seconds 60

On a throwaway copy of the small demo database (CREATE DATABASE … TEMPLATE, in the
cluster `bench/ogc_vs_tipg.py` keeps under bench/.data/small; dropped at the end, so the
shared data is not changed), served by `gisplatform serve`:

- writers: WRITERS threads, each its own connection, write buildings through
  `TemporalStore` in batches of BATCH features per transaction (as an import applies a
  file: one transaction per batch): half new buildings (`insert`, one change each), half
  new versions of the buildings added the batch before (`update`, three changes each: the
  old version superseded, its copy with the validity ended, the new version), paced to
  `--rate` features per second in total. Each feature written is one write. Each writer
  records its transaction's id and the wall-clock time right after COMMIT returned.
- consumers, at the same time: `poll` follows `GET /api/changes` (limit 10 000; asks again
  at once after a full page, else after POLL seconds); `webhook` is a local HTTP receiver
  subscribed with `gisplatform changes subscribe` semantics (signed POSTs, NOTIFY-woken).
- lag of a transaction = when its last change reached the consumer − when its COMMIT
  returned (same clock). It includes the feed's deliberate hold-back: a committed
  transaction is served once every older write transaction has ended (see
  gisplatform/changefeed/feed.py), so with several writers it is at least the overlap of
  their transactions. "Kept up": every change received exactly once, the consumer had
  everything within 2 s of the last commit, and the lag did not grow over the run
  (median of the last third of transactions at most twice that of the first, or < 1 s).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import psycopg
import shapely

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ogc_vs_tipg import database, serve

from gisplatform.changefeed.feed import decode_cursor, head_cursor
from gisplatform.changefeed.webhooks import subscribe, verify
from gisplatform.db.embedded import free_port
from gisplatform.security import create_token
from gisplatform.temporal import Feature, TemporalStore
from layers import LAYERS

WRITERS = 4
BATCH = 100
POLL = 0.1
DB = "changes_bench"


class Lags:
    """Per consumer: xid -> time its latest change arrived."""

    def __init__(self):
        self.seen: dict[int, float] = {}
        self.changes = 0
        self.ids: set[str] = set()
        self.duplicates = 0
        self.lock = threading.Lock()

    def add(self, changes: list[dict], at: float) -> None:
        with self.lock:
            for c in changes:
                if c["id"] in self.ids:
                    self.duplicates += 1
                    continue
                self.ids.add(c["id"])
                self.changes += 1
                self.seen[decode_cursor(c["id"])[0]] = at


def poller(base: str, start: str, lags: Lags, stop: threading.Event) -> None:
    cursor = start
    with httpx.Client(timeout=60) as client:
        while not stop.is_set():
            page = client.get(f"{base}/api/changes", params={
                "layer": "buildings", "since": cursor, "limit": 10_000}).json()
            lags.add(page["changes"], time.time())
            cursor = page["next"]
            if not page["more"]:
                time.sleep(POLL)


def receiver(lags: Lags, secret: list[str]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            at = time.time()
            ok = verify(secret[0], self.headers["X-Gisplatform-Timestamp"], body,
                        self.headers["X-Gisplatform-Signature"])
            if ok:
                lags.add(json.loads(body)["changes"], at)
            self.send_response(204 if ok else 401)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def writer(url: str, w: int, rate: float, until: float, commits: dict[int, float],
           counts: list[int]) -> None:
    """Batches of BATCH features per transaction, as `gisplatform import` applies a file:
    half new buildings, half new versions of buildings this writer added a batch before."""
    store = TemporalStore(LAYERS["buildings"].spec)
    with psycopg.connect(url, autocommit=True) as conn:
        interval, nxt, n = BATCH / rate, time.monotonic(), 0
        previous: list[str] = []
        while time.monotonic() < until:
            fresh = [f"BENCH-{w}-{n}-{k}" for k in range(BATCH - len(previous))]
            with conn.transaction():
                store.insert(conn, [_building(f, n) for f in fresh])
                if previous:
                    store.update(conn, [_building(f, n) for f in previous])
                (xid,) = conn.execute("select pg_current_xact_id()::text").fetchone()
            commits[int(xid)] = time.time()
            counts[0] += BATCH
            counts[1] += len(fresh) + 3 * len(previous)  # changes this transaction logged
            previous = fresh[:BATCH // 2]
            n += 1
            nxt += interval
            time.sleep(max(0.0, nxt - time.monotonic()))


def _building(fid: str, n: int) -> Feature:
    i = hash(fid) % 10_000
    geom = shapely.Point(123.85 + (i % 100) / 1000, 41.85 + (i // 100) / 2000).buffer(0.0001)
    return Feature(fid, geom, {"building_code": fid, "floors": 1 + n % 30,
                               "height": 3.0 * (1 + n % 30), "use": "residential"})


def summary(name: str, lags: Lags, commits: dict[int, float], last_commit: float,
            expected_changes: int) -> dict:
    by_commit = sorted((t, lags.seen[x] - t) for x, t in commits.items() if x in lags.seen)
    got = [lag for _, lag in by_commit]
    missing = len(commits) - len(got)
    q = statistics.quantiles(got, n=100) if len(got) > 1 else [0.0] * 99
    third = max(1, len(got) // 3)
    first, last = statistics.median(got[:third]), statistics.median(got[-third:])
    caught_up = max(lags.seen.values(), default=last_commit) - last_commit
    out = {"consumer": name, "transactions": len(commits), "missing": missing,
           "changes": lags.changes, "expected_changes": expected_changes,
           "duplicates": lags.duplicates, "lag_p50_s": round(q[49], 3),
           "lag_p99_s": round(q[98], 3), "lag_max_s": round(max(got, default=0), 3),
           "lag_median_first_third_s": round(first, 3),
           "lag_median_last_third_s": round(last, 3),
           "caught_up_after_last_commit_s": round(caught_up, 3)}
    # kept up: everything once, no backlog left at the end, and the lag did not grow
    out["kept_up"] = (missing == 0 and lags.changes == expected_changes
                      and lags.duplicates == 0 and caught_up < 2
                      and last <= max(2 * first, 1.0))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=float, default=1000, help="features written per second")
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--writers", type=int, default=WRITERS, help="writer connections")
    args = ap.parse_args()

    pg, template_url = database("small")
    admin = pg.url("postgres")
    with psycopg.connect(template_url) as c:
        (template,) = c.execute("select current_database()").fetchone()
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'drop database if exists "{DB}"')
        c.execute(f'create database "{DB}" template "{template}"')
    url = pg.url(DB)
    server = proc = None
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            token_id, _ = create_token(conn, "zhujian", [("buildings", "read")],
                                       label="bench changes")
            start = head_cursor(conn)
        print(f"database {DB}: a copy of the small demo", flush=True)
        port = free_port()
        data = tempfile.mkdtemp(prefix="bench-changes-")
        base = f"http://127.0.0.1:{port}"
        cli = str(Path(sys.executable).with_name("gisplatform"))
        proc = serve([cli, "serve", "--port", str(port)],
                     {"DATABASE_URL": url, "GISPLATFORM_DATA_DIR": data}, f"{base}/health")
        hook_lags, poll_lags, secret = Lags(), Lags(), [""]
        server = receiver(hook_lags, secret)
        with psycopg.connect(url, autocommit=True) as conn:
            _, secret[0] = subscribe(conn, f"http://127.0.0.1:{server.server_port}/hook",
                                     "buildings", token_id)
        stop = threading.Event()
        poll_thread = threading.Thread(target=poller, args=(base, start, poll_lags, stop))
        poll_thread.start()

        commits: dict[int, float] = {}
        counts = [0, 0]  # writes, changes
        t0 = time.monotonic()
        until = t0 + args.seconds
        threads = [threading.Thread(target=writer, args=(
            url, w, args.rate / args.writers, until, commits, counts))
            for w in range(args.writers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t0
        last_commit = max(commits.values())
        expected = counts[1]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (
                poll_lags.changes < expected or hook_lags.changes < expected):
            time.sleep(0.2)
        stop.set()
        poll_thread.join()
        with psycopg.connect(url, autocommit=True) as conn:
            (logged,) = conn.execute(
                "select count(*) from city.change_log where layer = 'buildings'"
                " and (xid, seq) > (%s::text::xid8, %s)",
                [str(v) for v in decode_cursor(start)]).fetchone()
        report = {
            "writes": counts[0], "seconds": round(elapsed, 1),
            "writes_per_s": round(counts[0] / elapsed), "target_per_s": args.rate,
            "transactions": len(commits), "batch": BATCH, "writers": args.writers,
            "changes_logged": logged,
            "consumers": [summary("poll", poll_lags, commits, last_commit, expected),
                          summary("webhook", hook_lags, commits, last_commit, expected)]}
        print(json.dumps(report, indent=2))
    finally:
        if server is not None:
            server.shutdown()
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f'drop database if exists "{DB}" with (force)')
        pg.stop()


if __name__ == "__main__":
    os.environ.setdefault("GISPLATFORM_WEBHOOK_RETRY_SECONDS", "0.5")
    main()
