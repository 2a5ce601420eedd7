"""The change feed (/api/changes) and its webhooks: exactly-once paging over the demo's history
and under deliberately interleaved concurrent writes, masking and access like OGC items,
bad and expired cursors, and signed, retried, at-least-once webhook delivery."""

from __future__ import annotations

import json
import random
import threading
import time
from datetime import date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import psycopg
import pytest
import shapely
from conftest import fresh_database, serving

from gisplatform.changefeed.feed import (
    CursorError,
    CursorGone,
    FeedLayer,
    decode_cursor,
    encode_cursor,
    head_cursor,
    prune,
    read_page,
)
from gisplatform.changefeed.webhooks import verify
from gisplatform.security import (
    ANONYMOUS,
    AccessDenied,
    AuthError,
    Principal,
    create_token,
)
from gisplatform.temporal import Feature, TemporalStore
from layers import LAYERS


def feed(name: str) -> FeedLayer:
    layer = LAYERS[name]
    personal = {a.name: a.mask for a in layer.spec.attributes if a.personal}
    return FeedLayer(name, layer.spec, layer.sharing, personal)


BUILDINGS = feed("buildings")
STORE = TemporalStore(LAYERS["buildings"].spec)


def building(fid: str, floors: int = 3, x: float = 123.9) -> Feature:
    geom = shapely.Point(x, 41.86).buffer(0.0001)
    return Feature(fid, geom, {"building_code": fid, "floors": floors, "height": 3.0 * floors,
                               "use": "residential"})


def drain(conn, layer: FeedLayer, since: str | None, limit: int,
          principal: Principal = ANONYMOUS) -> tuple[list[dict], str | None]:
    """Every page from `since` until a short page; the changes and the last cursor."""
    out = []
    while True:
        page = read_page(conn, layer, principal, since, limit)
        out += [json.loads(c) for c in page.changes]
        since = page.next
        if not page.more:
            return out, since


def expected_changes(conn, layer: FeedLayer) -> set[tuple[int, str]]:
    """What the version table says happened: each row opened once, each closed row closed
    once (the store never deletes a row another transaction could have seen)."""
    vt = f"city.{layer.spec.version_table}"
    rows = conn.execute(f"select vid, upper_inf(recorded) from {vt}").fetchall()
    return {(vid, "opened") for vid, _ in rows} | {(vid, "closed") for vid, cur in rows
                                                   if not cur}


def assert_exactly_once(changes: list[dict], conn, layer: FeedLayer) -> None:
    ids = [c["id"] for c in changes]
    assert len(ids) == len(set(ids)), "a change was served twice"
    assert [decode_cursor(i) for i in ids] == sorted(decode_cursor(i) for i in ids)
    got = [(c["vid"], c["change"]) for c in changes]
    assert len(got) == len(set(got))
    assert set(got) == expected_changes(conn, layer)
    (logged,) = conn.execute("select count(*) from city.change_log where layer = %s",
                             (layer.name,)).fetchone()
    assert logged == len(changes)


# ------------------------------------------------------------------ the demo's history

def test_small_pages_over_the_demo_history_return_every_change_once(demo_url):
    with psycopg.connect(demo_url, autocommit=True) as conn:
        changes, _ = drain(conn, BUILDINGS, None, 37)
        assert len(changes) > 200  # the demo's buildings and their later versions
        assert_exactly_once(changes, conn, BUILDINGS)
        whats = {c["what"] for c in changes}
        assert "inserted" in whats
        sample = next(c for c in changes if c["change"] == "opened")
        assert sample["geometry"]["type"] == "MultiPolygon"
        lon, lat = sample["geometry"]["coordinates"][0][0][0]
        assert 120 < lon < 126 and 40 < lat < 43  # GeoJSON lon, lat (EPSG:4490 as /ogc)
        assert sample["recorded_to"] is None and sample["properties"]["building_code"]
        # one page of the same feed with a big limit is the same sequence
        whole = read_page(conn, BUILDINGS, ANONYMOUS, None, 10_000)
        assert [json.loads(c)["id"] for c in whole.changes] == [c["id"] for c in changes]


# ------------------------------------------------------------------ writes and kinds

@pytest.fixture(scope="module")
def own_url(pg):
    """A database of our own (empty layers): these tests write."""
    return fresh_database(pg, "changes")


def test_each_change_says_what_happened(own_url):
    with psycopg.connect(own_url, autocommit=True) as conn:
        start = read_page(conn, BUILDINGS, ANONYMOUS, None, 10_000).next
        STORE.insert(conn, [building("K-1")], "2024-01-01T00:00:00+08:00")
        STORE.update(conn, [building("K-1", 5)], "2024-06-01T00:00:00+08:00")
        vid = STORE.current(conn, "K-1")["vid"]
        STORE.correct(conn, vid, properties={"floors": 6})
        STORE.retire(conn, ["K-1"], "2025-01-01T00:00:00+08:00")
        # a version opened and superseded by one transaction was never visible: no change
        with conn.transaction():
            STORE.insert(conn, [building("K-2")], "2024-01-01T00:00:00+08:00")
            STORE.update(conn, [building("K-2", 4)], "2024-03-01T00:00:00+08:00")
        STORE.purge(conn, "K-2", reason="test erasure", actor="test")
        changes, _ = drain(conn, BUILDINGS, start, 3)
    seq = [(c["fid"], c["change"], c["what"]) for c in changes]
    assert seq == [
        ("K-1", "opened", "inserted"),
        # update: the old version superseded, a copy of it with its validity ended, the new one
        ("K-1", "closed", "superseded"), ("K-1", "opened", "valid_closed"),
        ("K-1", "opened", "new_version"),
        ("K-1", "closed", "superseded"), ("K-1", "opened", "corrected"),
        ("K-1", "closed", "superseded"), ("K-1", "opened", "valid_closed"),
        # K-2: inserted, then (same transaction) replaced: only the two rows anyone could see
        ("K-2", "opened", None), ("K-2", "opened", None),
        ("K-2", "purged", None), ("K-2", "purged", None)]
    corrected = changes[5]
    assert corrected["properties"]["floors"] == 6 and corrected["recorded_to"] is None
    closed = changes[6]
    assert closed["recorded_to"] is not None and closed["properties"]["floors"] == 6
    retired = changes[7]
    assert datetime.fromisoformat(retired["valid_to"]) == datetime.fromisoformat(
        "2025-01-01T00:00:00+08:00")
    assert all(c["properties"] is None and c["geometry"] is None for c in changes[8:])


# ------------------------------------------------------------------ concurrent writes

def test_concurrent_interleaved_writes_are_served_exactly_once(own_url):
    with psycopg.connect(own_url, autocommit=True) as reader:
        start = cursor = read_page(reader, BUILDINGS, ANONYMOUS, None, 10_000).next
        served: list[dict] = []

        def page_all():
            nonlocal cursor
            got, cursor = drain(reader, BUILDINGS, cursor, 5)
            served.extend(got)
            return got

        # begin A, begin B, B commits, reader pages, A commits, reader pages
        with psycopg.connect(own_url) as a, psycopg.connect(own_url) as b:
            a.execute("select 1")  # open transactions: the store writes in savepoints
            b.execute("select 1")
            STORE.insert(a, [building(f"A-{i}") for i in range(3)])  # A's xid is older
            STORE.insert(b, [building(f"B-{i}") for i in range(3)])
            b.commit()
            assert page_all() == []  # B is committed but A is still open: held back
            a_vids = [r[0] for r in a.execute(
                "select vid from city.buildings_version where fid like 'A-%'")]
            b_vids = [r[0] for r in reader.execute(
                "select vid from city.buildings_version where fid like 'B-%'")]
            assert max(a_vids) < min(b_vids)  # a reader past B's vids would have skipped A
            a.commit()
        got = page_all()
        assert [c["fid"][0] for c in got] == ["A"] * 3 + ["B"] * 3

        # writers with overlapping transactions held open while the reader keeps paging
        stop = time.monotonic() + 4
        errors: list[BaseException] = []

        def writer(w: int):
            rnd = random.Random(w)
            try:
                with psycopg.connect(own_url) as c:
                    previous: list[str] = []
                    n = 0
                    while time.monotonic() < stop:
                        c.execute("select 1")
                        fids = [f"W{w}-{n}-{k}" for k in range(rnd.randint(1, 4))]
                        n += 1
                        STORE.insert(c, [building(f) for f in fids])
                        time.sleep(rnd.random() * 0.05)  # the transaction stays open
                        if previous and rnd.random() < 0.6:
                            STORE.update(c, [building(previous[0], rnd.randint(2, 9))])
                        time.sleep(rnd.random() * 0.05)
                        c.commit()
                        previous = fids
            except BaseException as e:  # noqa: BLE001 -- surfaced below
                errors.append(e)

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(3)]
        for t in threads:
            t.start()
        pages = 0
        while any(t.is_alive() for t in threads):
            page_all()
            pages += 1
        for t in threads:
            t.join()
        assert not errors, errors
        page_all()
        assert pages > 10
        # everything written since the start, as the table says, nothing twice
        ids = [c["id"] for c in served]
        assert len(ids) == len(set(ids))
        assert sum(1 for c in served if c["fid"].startswith("W")) > 20
        (logged,) = reader.execute(
            "select count(*) from city.change_log where layer = 'buildings' and"
            " (xid, seq) > (%s::text::xid8, %s)",
            [str(v) for v in decode_cursor(start)]).fetchone()
        assert logged == len(served)
        fids = {c["fid"] for c in served}
        table = {(vid, ch) for vid, ch in expected_changes(reader, BUILDINGS)
                 if reader.execute("select fid from city.buildings_version where vid = %s",
                                   (vid,)).fetchone()[0] in fids}
        assert {(c["vid"], c["change"]) for c in served} == table


# ------------------------------------------------------------------ cursors

def test_bad_and_expired_cursors(own_url):
    with psycopg.connect(own_url, autocommit=True) as conn:
        for bad in ("garbage", encode_cursor(1, 2) + "x", "MS4yLjM", "LTEuMg", ""):
            with pytest.raises(CursorError):
                read_page(conn, BUILDINGS, ANONYMOUS, bad, 10)
        with pytest.raises(CursorError, match="ahead"):
            read_page(conn, BUILDINGS, ANONYMOUS, encode_cursor(2**40, 1), 10)
        old = read_page(conn, BUILDINGS, ANONYMOUS, None, 1).next  # after the first change
        STORE.insert(conn, [building("P-1")])
        assert prune(conn, timedelta(0)) > 0
        with pytest.raises(CursorGone):
            read_page(conn, BUILDINGS, ANONYMOUS, old, 10)
        # omitted since: from the oldest entry kept; the horizon itself is a valid cursor
        assert read_page(conn, BUILDINGS, ANONYMOUS, None, 10).changes == []
        STORE.insert(conn, [building("P-2")])
        changes, _ = drain(conn, BUILDINGS, None, 10)
        assert [c["fid"] for c in changes] == ["P-2"]


def test_access_is_decided_like_ogc_items(demo_url):
    persons = feed("persons")
    with psycopg.connect(demo_url, autocommit=True) as conn:
        with pytest.raises(AuthError):
            read_page(conn, persons, ANONYMOUS, None, 5)
        with pytest.raises(AccessDenied):
            read_page(conn, persons, Principal(1, "zhujian", {"buildings": {"read"}}), None, 5)


# ------------------------------------------------------------------ over HTTP

@pytest.fixture(scope="module")
def server(own_url, tmp_path_factory):
    """The app over our own database, retrying webhooks quickly."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GISPLATFORM_WEBHOOK_RETRY_SECONDS", "0.3")
        with serving(own_url, tmp_path_factory.mktemp("changes")) as base:
            yield base


@pytest.fixture(scope="module")
def people(own_url):
    """60 persons written after a head cursor, and tokens: (cursor, tokens)."""
    store = TemporalStore(LAYERS["persons"].spec)
    with psycopg.connect(own_url, autocommit=True) as conn:
        start = head_cursor(conn)
        store.insert(conn, [Feature(
            f"P{i:03d}", shapely.Point(123.9 + i / 1000, 41.86),
            {"id_number": f"2104021980010{i:03d}X"[-18:].rjust(18, "1"), "name": f"张{'三丰'[i % 2]}",
             "sex": "M", "birth_date": date(1980, 1, 1 + i % 28), "household_type": "registered",
             "phone": f"138{i:08d}"}) for i in range(60)], "2020-01-01T00:00:00+08:00")
        tokens = {level: create_token(conn, "gongan", [("persons", level)])
                  for level in ("read", "read_personal")}
        tokens["other"] = create_token(conn, "zhujian", [("buildings", "read")])
        settled(conn)
    return start, tokens


def settled(conn, timeout: float = 60) -> None:
    """Wait until the server's start-up build (tile pyramids, rollups: wiring.build_derived,
    in the background under an advisory lock) is over and every write transaction open now
    has ended. The feed serves only changes below the oldest open write (feed.py): a page
    read while one is open is rightly short."""
    deadline = time.monotonic() + timeout
    while conn.execute("select pg_try_advisory_lock(hashtext('gisplatform.build_derived'))"
                       ).fetchone()[0] is False:
        assert time.monotonic() < deadline, "the server's start-up build did not end"
        time.sleep(0.05)
    conn.execute("select pg_advisory_unlock(hashtext('gisplatform.build_derived'))")
    (line,) = conn.execute("select pg_snapshot_xmax(pg_current_snapshot())").fetchone()
    while conn.execute("select pg_snapshot_xmin(pg_current_snapshot()) < %s",
                       (line,)).fetchone()[0]:
        assert time.monotonic() < deadline, "a write transaction stayed open"
        time.sleep(0.05)


def test_http_masking_status_and_audit(server, own_url, people):
    start, tokens = people
    url = f"{server}/api/changes"
    assert httpx.get(url, params={"layer": "persons"}).status_code == 401
    r = httpx.get(url, params={"layer": "persons"},
                  headers={"Authorization": f"Bearer {tokens['other'][1]}"})
    assert r.status_code == 403 and r.json()["code"] == "Forbidden"

    def page(level: str, **params):
        r = httpx.get(url, params={"layer": "persons", "limit": 25, "since": start, **params},
                      headers={"Authorization": f"Bearer {tokens[level][1]}"})
        assert r.status_code == 200, r.text
        return r.json()

    audited = ("select count(*) from city.audit_log where action = 'read_personal'"
               " and layer = 'persons'")
    with psycopg.connect(own_url, autocommit=True) as conn:
        before = conn.execute(audited).fetchone()[0]
        masked = page("read")
        assert conn.execute(audited).fetchone()[0] == before  # masked: nothing to audit
        clear = page("read_personal")
        assert conn.execute(audited).fetchone()[0] == before + 1
        detail, token_id = conn.execute(
            "select detail, token_id from city.audit_log where action = 'read_personal'"
            " order by id desc limit 1").fetchone()
        truth = dict(conn.execute(
            "select vid, id_number from city.persons_version where vid = any(%s)",
            ([c["vid"] for c in clear["changes"]],)).fetchall())
    assert token_id == tokens["read_personal"][0]
    assert detail["feed"] == "changes" and detail["changes"] == 25
    assert masked["numberReturned"] == clear["numberReturned"] == 25 and masked["more"]
    for m, c in zip(masked["changes"], clear["changes"]):
        assert m["id"] == c["id"]
        assert c["properties"]["id_number"] == truth[c["vid"]]
        assert m["properties"]["id_number"] != truth[c["vid"]]
        assert "*" in m["properties"]["id_number"] and "*" in m["properties"]["name"]
        assert m["properties"]["phone"].startswith("138") and "*" in m["properties"]["phone"]
        assert m["properties"]["household_type"] == "registered"  # not personal: as is
    # the next link continues where the page ended; the -history collection id is the same feed
    nxt = httpx.get(masked["links"][0]["href"],
                    headers={"Authorization": f"Bearer {tokens['read'][1]}"}).json()
    assert nxt["since"] == masked["next"]
    hist = page("read", layer="persons-history", since=masked["next"])
    assert [c["id"] for c in hist["changes"]] == [c["id"] for c in nxt["changes"]]
    assert decode_cursor(nxt["changes"][0]["id"]) > decode_cursor(masked["next"])
    rest = page("read", since=nxt["next"], limit=10_000)
    assert not rest["more"] and len(masked["changes"] + nxt["changes"] + rest["changes"]) == 60


@pytest.mark.parametrize("params", [
    {"layer": "nope"}, {}, {"layer": "population-grid"},
    {"layer": "buildings", "since": "garbage"}, {"layer": "buildings", "limit": "0"},
    {"layer": "buildings", "limit": "10001"}, {"layer": "buildings", "limit": "abc"}])
def test_http_bad_parameters_are_400(server, params):
    r = httpx.get(f"{server}/api/changes", params=params)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "InvalidParameterValue"


def test_http_expired_cursor_is_410(server, own_url):
    with psycopg.connect(own_url, autocommit=True) as conn:
        STORE.insert(conn, [building("G-1")])
        old = read_page(conn, BUILDINGS, ANONYMOUS, None, 1).next
        STORE.insert(conn, [building("G-2")])
        prune(conn, timedelta(0))
    r = httpx.get(f"{server}/api/changes", params={"layer": "buildings", "since": old})
    assert r.status_code == 410 and r.json()["code"] == "Gone"


# ------------------------------------------------------------------ webhooks

class Receiver:
    """A local HTTP receiver: records every POST; the first `fail` answers are 500."""

    def __init__(self, fail: int = 0):
        self.fail = fail
        self.posts: list[tuple[dict, bytes, int]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = 500 if len(outer.posts) < outer.fail else 204
                outer.posts.append((dict(self.headers), body, status))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def delivered(self) -> dict[str, dict]:
        """Successful deliveries by id (a retried batch once)."""
        return {h["X-Gisplatform-Delivery"]: json.loads(b) for h, b, s in self.posts
                if s == 204}

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def cli(url: str, *args: str):
    """`gisplatform changes …` in this process (a subprocess costs seconds of imports)."""
    from typer.testing import CliRunner

    from gisplatform.cli import app
    from gisplatform.config import get_settings

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATABASE_URL", url)
        get_settings.cache_clear()
        try:
            return CliRunner().invoke(app, ["changes", *args])
        finally:
            get_settings.cache_clear()


def subscribe(url: str, hook: str, token_id: int) -> tuple[int, str]:
    r = cli(url, "subscribe", hook, "--layer", "buildings", "--token-id", str(token_id))
    assert r.exit_code == 0, r.output
    first, second = r.stdout.splitlines()[:2]
    return int(first.split()[1].rstrip(":")), second.removeprefix("secret: ")


def wait_for(pred, seconds: float = 20):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return False


def test_webhooks_deliver_every_change_once_signed_and_retried(own_url, server):
    with psycopg.connect(own_url, autocommit=True) as conn:
        token_id, _ = create_token(conn, "zhujian", [("buildings", "read")], label="hooks")
    bad = cli(own_url, "subscribe", "ftp://x", "--layer", "buildings", "--token-id", "1")
    assert bad.exit_code == 2 and "http" in bad.output
    assert cli(own_url, "subscribe", "http://127.0.0.1:9/", "--layer", "nope",
               "--token-id", "1").exit_code == 2
    ok, flaky = Receiver(), Receiver(fail=3)
    try:
        _, ok_secret = subscribe(own_url, ok.url, token_id)
        flaky_id, flaky_secret = subscribe(own_url, flaky.url, token_id)
        with psycopg.connect(own_url, autocommit=True) as conn:
            state = ("select cursor, attempts, last_status, delivered from city.webhooks"
                     " where id = %s")
            start = conn.execute(state, (flaky_id,)).fetchone()[0]
            for i in range(4):  # four inserts, then two updates of 3 changes each
                STORE.insert(conn, [building(f"H-{i}")], "2024-01-01T00:00:00+08:00")
            STORE.update(conn, [building(f"H-{i}", 7) for i in range(2)],
                         "2024-05-01T00:00:00+08:00")
            log_ids = {encode_cursor(int(x), s) for x, s in conn.execute(
                "select xid::text, seq from city.change_log where layer = 'buildings'"
                " and fid like 'H-%'")}
            assert len(log_ids) == 10
            # the failing receiver: attempts counted, the cursor stays where it was
            assert wait_for(lambda: len(flaky.posts) >= 2)
            cur, attempts, status, _ = conn.execute(state, (flaky_id,)).fetchone()
            assert cur == start and attempts >= 1 and status == 500

            def got_all(r: Receiver) -> bool:
                return sum(len(b["changes"]) for b in r.delivered().values()) >= len(log_ids)
            assert wait_for(lambda: got_all(ok) and got_all(flaky)), (ok.posts, flaky.posts)
            time.sleep(0.5)  # nothing more arrives
            cur, attempts, _, delivered = conn.execute(state, (flaky_id,)).fetchone()
            assert attempts == 0 and delivered == len(log_ids) and cur != start
            listing = cli(own_url, "list")
        assert listing.exit_code == 0 and ok_secret not in listing.stdout
        assert f"delivered {len(log_ids)}" in listing.stdout
        for r, secret in ((ok, ok_secret), (flaky, flaky_secret)):
            for headers, body, _ in r.posts:
                ts, sig = headers["X-Gisplatform-Timestamp"], headers["X-Gisplatform-Signature"]
                assert verify(secret, ts, body, sig)
                assert not verify("whsec_wrong", ts, body, sig)
                assert not verify(secret, ts, body + b" ", sig)
                assert not verify(secret, ts, body, sig, now=int(ts) + 600)  # a replay
            ids = [c["id"] for b in r.delivered().values() for c in b["changes"]]
            assert len(ids) == len(set(ids)) and set(ids) == log_ids  # each change once
        # the retries resent the same batch under the same delivery id, then it went through
        fails = [h["X-Gisplatform-Delivery"] for h, _, s in flaky.posts if s == 500]
        assert len(fails) == 3 and len(set(fails)) == 1 and fails[0] in flaky.delivered()
        # the feed over HTTP from the subscription's start holds the same changes
        body = httpx.get(f"{server}/api/changes", params={
            "layer": "buildings", "since": start}).json()
        assert {c["id"] for c in body["changes"]} == log_ids
    finally:
        ok.close()
        flaky.close()
