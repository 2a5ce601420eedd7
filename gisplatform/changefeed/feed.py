"""Reading the change feed: the entries of `city.change_log` after a cursor, as pages.

Why not a cursor on time or on vid: `recorded` lower bounds are transaction *start* times
and `vid`s are drawn when a row is inserted, neither in *commit* order. A transaction that
started (or drew its vids) first may commit last; a reader that had already moved past
its time or vid would never see its rows. So each write logs its changes itself
(`city.change_log`, migration 0011, written by the version tables' statement triggers in
the writing transaction), stamped with the transaction id `pg_current_xact_id()` and a
sequence, and the feed serves only entries of transactions older than the reader's
snapshot xmin (`pg_snapshot_xmin(pg_current_snapshot())`): every transaction below xmin has
ended, so no entry can later appear below that line, and every transaction that commits
later has an id at or above it. Entries are served in (xid, seq) order; the cursor is the
last (xid, seq) served (an opaque string). Paging on it returns every change exactly once,
whatever commits in between. The price: a long-running write transaction (anywhere in the
database) holds the feed back until it ends — the feed lags by the longest open write
transaction, never skips. `idle_in_transaction_session_timeout` bounds a forgotten one.

Each change is one row of the version table, with its properties and geometry (GeoJSON
lon/lat on CGCS2000, EPSG:4490, as /ogc items serve by default):
- `change`: `opened` (a new version row), `closed` (an existing row's `recorded` upper bound
  set — superseded — or its `valid` changed in place), `purged` (legal erasure: the row is
  gone, only fid and vid are left);
- `what`: for opened rows `inserted` (a new feature, or one coming back), `new_version`
  (follows the version an update closed), `valid_closed` (the copy of a superseded version
  whose validity an update or retirement ended), `corrected` (replaces a superseded version);
  for closed rows `superseded`, `valid_changed` or `updated`; null when the row was purged
  since. `recorded_to` is as of the change (null for an opened row).
Properties are read when the page is served (versions are immutable, except for purges:
a purged version's earlier changes come back without properties or geometry).

Access is the OGC items' rule: anonymous on a conditional layer → 401, a token without a
grant → 403, personal fields masked without `read_personal`; an unmasked page is audited
(READ_PERSONAL_ACTION) in the same transaction that reads it.

Retention: `prune` deletes entries older than the retention period and remembers the last
one deleted (`city.change_log_horizon`); a cursor before it gets 410 Gone (the consumer
resynchronises from /ogc items, then follows from a fresh cursor). `since` omitted starts at
the oldest entry kept. Cursors are positions in this database's transaction-id sequence:
valid for the life of the cluster (pg_upgrade keeps them; a dump and restore does not).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import psycopg
from psycopg import sql

from gisplatform.security import (
    READ_PERSONAL_ACTION,
    Access,
    Principal,
    audit,
    mask_sql,
    require,
)
from gisplatform.temporal import SCHEMA, LayerSpec

__all__ = [
    "BEGINNING",
    "CHANNEL",
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "CursorError",
    "CursorGone",
    "FeedLayer",
    "Page",
    "check_access",
    "decode_cursor",
    "encode_cursor",
    "head_cursor",
    "prune",
    "read_page",
]

DEFAULT_LIMIT, MAX_LIMIT = 1000, 10_000
CHANNEL = "gisplatform_changes"  # NOTIFYed by the log trigger at commit, payload: the layer
BEGINNING = (0, 0)
_CURSOR = re.compile(r"^([0-9]{1,20})\.([0-9]{1,19})$")


class CursorError(ValueError):
    """A cursor that is not one of ours: HTTP 400."""


class CursorGone(Exception):
    """A cursor older than the retained log: HTTP 410."""


@dataclass(frozen=True)
class FeedLayer:
    name: str
    spec: LayerSpec
    sharing: str
    personal: Mapping[str, str | None]  # attribute -> mask kind


@dataclass
class Page:
    changes: list[str]  # each change as JSON text
    next: str  # cursor after the last change served (= since when none)
    more: bool  # a full page: ask again at once


# ------------------------------------------------------------------------- cursors

def encode_cursor(xid: int, seq: int) -> str:
    return base64.urlsafe_b64encode(f"{xid}.{seq}".encode()).decode().rstrip("=")


def decode_cursor(text: str | None) -> tuple[int, int]:
    if text is None:
        return BEGINNING
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raw = ""
    m = _CURSOR.match(raw)
    if not m or int(m[1]) >= 2**64 or int(m[2]) >= 2**63:
        raise CursorError(f"since: {text[:40]!r} is not a cursor of this feed (use the `next` "
                          "of a page, or omit it to start at the beginning)")
    return int(m[1]), int(m[2])


# -------------------------------------------------------------------------- access

def check_access(principal: Principal, layer: FeedLayer) -> Access:
    return require(principal, layer.name, layer.sharing)  # AuthError 401 / AccessDenied 403


# -------------------------------------------------------------------------- reading

def _row_json(layer: FeedLayer, acc: Access) -> sql.Composable:
    """One change as a JSON object (its `id` is added in Python: the cursor encoding)."""
    vt = sql.Identifier(SCHEMA, layer.spec.version_table)
    props: list[sql.Composable] = []
    for a in layer.spec.attributes:
        col = sql.SQL("v.{}").format(sql.Identifier(a.name))
        if a.name in layer.personal and not acc.unmask:
            col = sql.SQL(mask_sql(layer.personal[a.name])).format(c=col)
        props.append(sql.SQL("{}, {}").format(sql.Literal(a.name), col))
    assert len(props) <= 50, "json_build_object takes 100 arguments"
    same = sql.SQL(" and ").join(
        [sql.SQL("st_orderingequals(p.geom, v.geom)")]
        + [sql.SQL("p.{a} is not distinct from v.{a}").format(a=sql.Identifier(a.name))
           for a in layer.spec.attributes])
    # an opened row, by what the same transaction did to the feature's other rows (every
    # row it touched carries its start time in `recorded`)
    what_opened = sql.SQL("""case
        when not exists (select from {vt} p where p.fid = v.fid and p.vid <> v.vid
                         and upper(p.recorded) = lower(v.recorded)) then 'inserted'
        when exists (select from {vt} p where p.fid = v.fid
                     and upper(p.recorded) = lower(v.recorded)
                     and lower(p.valid) = lower(v.valid) and not upper_inf(v.valid)
                     and (upper_inf(p.valid) or upper(p.valid) > upper(v.valid))
                     and {same}) then 'valid_closed'
        when exists (select from {vt} s where s.fid = v.fid and s.vid <> v.vid
                     and lower(s.recorded) = lower(v.recorded)
                     and upper(s.valid) = lower(v.valid)) then 'new_version'
        else 'corrected' end""").format(vt=vt, same=same)
    return sql.SQL("""json_build_object(
        'change', case e.op when 'opened' then 'opened' when 'purged' then 'purged'
                  else 'closed' end,
        'what', case when e.op = 'purged' then null when e.op <> 'opened' then e.op
                     when v.vid is null then null else {what} end,
        'layer', {layer}, 'fid', coalesce(v.fid, e.fid), 'vid', e.vid,
        'valid_from', lower(v.valid), 'valid_to', upper(v.valid),
        'recorded_from', lower(v.recorded),
        'recorded_to', case when e.op = 'opened' then null else upper(v.recorded) end,
        'properties', case when v.vid is null then null else json_build_object({props}) end,
        'geometry', st_asgeojson(v.geom, 9, 0)::json)::text""").format(
        what=what_opened, layer=sql.Literal(layer.name), props=sql.SQL(", ").join(props))


def read_page(conn: psycopg.Connection, layer: FeedLayer, principal: Principal,
              since: str | None, limit: int = DEFAULT_LIMIT, until: str | None = None,
              client: str | None = None) -> Page:
    """The changes of `layer` after cursor `since` (and at most up to `until`), as
    `principal` may see them. One REPEATABLE READ transaction on `conn` (which must be
    idle): the snapshot line, the log, the rows and the audit record agree.
    Raises AuthError / AccessDenied, CursorError, CursorGone."""
    acc = check_access(principal, layer)
    x, s = decode_cursor(since)
    upto = decode_cursor(until) if until is not None else None
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be 1..{MAX_LIMIT}")
    bound = sql.SQL("and (xid, seq) <= (%(ux)s::text::xid8, %(us)s)") if upto else sql.SQL("")
    q = sql.SQL("""
        with e as (
          select xid, seq, op, vid, fid from city.change_log
          where layer = %(layer)s and (xid, seq) > (%(x)s::text::xid8, %(s)s) {bound}
            and xid < pg_snapshot_xmin(pg_current_snapshot())
          order by xid, seq limit %(n)s)
        select e.xid::text, e.seq, {row} from e left join {vt} v on v.vid = e.vid
        order by e.xid, e.seq""").format(
        bound=bound, row=_row_json(layer, acc),
        vt=sql.Identifier(SCHEMA, layer.spec.version_table))
    with conn.transaction():
        conn.execute("set transaction isolation level repeatable read")
        gone, ahead = conn.execute(
            "select coalesce((h.xid, h.seq) > (%(x)s::text::xid8, %(s)s), false),"
            " %(x)s::text::xid8 >= pg_snapshot_xmax(pg_current_snapshot())"
            " from (select) dummy left join city.change_log_horizon h on true",
            {"x": str(x), "s": s}).fetchone()
        if since is not None and gone:
            raise CursorGone("since: this cursor is older than the change log keeps; "
                             "resynchronise from /ogc items and follow from a new cursor")
        if ahead:
            raise CursorError("since: this cursor is ahead of this database "
                              "(from another database, or restored from a dump?)")
        rows = conn.execute(q, {"layer": layer.name, "x": str(x), "s": s, "n": limit,
                                "ux": str(upto[0]) if upto else None,
                                "us": upto[1] if upto else None}).fetchall()
        changes = [f'{{"id":"{encode_cursor(int(xid), seq)}",{body[1:]}' for xid, seq, body in rows]
        nxt = encode_cursor(int(rows[-1][0]), rows[-1][1]) if rows else encode_cursor(x, s)
        if acc.unmask and layer.personal and changes:
            audit(conn, principal, layer.name, READ_PERSONAL_ACTION,
                  {"feed": "changes", "changes": len(changes), "since": since, "next": nxt},
                  client)
    return Page(changes, nxt, len(changes) == limit)


def head_cursor(conn: psycopg.Connection) -> str:
    """A cursor from which the feed shows what commits from now on (and possibly a few
    changes committed just before: at least once, never a gap)."""
    (xmin,) = conn.execute("select pg_snapshot_xmin(pg_current_snapshot())::text").fetchone()
    return encode_cursor(int(xmin), 0)


def prune(conn: psycopg.Connection, older_than: timedelta) -> int:
    """Delete log entries of transactions that started more than `older_than` ago (and
    have ended), advance the horizon to the last one deleted; returns how many."""
    with conn.transaction():
        row = conn.execute(
            "select max(xid)::text from city.change_log where at < now() - %s"
            " and xid < pg_snapshot_xmin(pg_current_snapshot())", (older_than,)).fetchone()
        if row[0] is None:
            return 0
        n, hx, hs = conn.execute("""
            with d as (delete from city.change_log where xid <= %s::text::xid8 returning xid, seq)
            select count(*), (select xid::text from d order by xid desc, seq desc limit 1),
                   (select seq from d order by xid desc, seq desc limit 1) from d""",
                                 (row[0],)).fetchone()
        if n:
            conn.execute("""
                insert into city.change_log_horizon (xid, seq) values (%s::text::xid8, %s)
                on conflict (singleton) do update set xid = excluded.xid, seq = excluded.seq,
                  pruned_at = now()
                where (city.change_log_horizon.xid, city.change_log_horizon.seq)
                      < (excluded.xid, excluded.seq)""", (hx, hs))
    return n
