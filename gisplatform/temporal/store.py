"""The bitemporal feature store, generic over layer version tables.

Writes are set-based: a batch is COPYed into a per-session staging table and
applied with a handful of statements, whatever its size. Every write runs in one
REPEATABLE READ transaction (or a savepoint of the caller's), so a failure
leaves nothing behind, and two writers racing on one fid cannot both win: the
loser gets ConflictError (serialization failure) or OverlapError (the GiST
exclusion constraint), never a silent overwrite.

Transaction time uses `now()` (the transaction's start): every row a
transaction opens or closes carries the same instant, so "as known at K" never
sees half a transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
import shapely
from psycopg import errors as pgerr
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg.types.json import Jsonb
from shapely.geometry.base import BaseGeometry

from .errors import (
    ConflictError,
    InvalidFeatureError,
    OverlapError,
    RetiredFeatureError,
    TemporalError,
    UnknownFeatureError,
)
from .instants import parse_instant
from .spec import SCHEMA, LayerSpec, drop_index_sql, index_sql

_MULTI = {
    "Point": "MultiPoint",
    "LineString": "MultiLineString",
    "Polygon": "MultiPolygon",
}


@dataclass
class Feature:
    fid: str
    geometry: BaseGeometry
    properties: dict[str, Any] = field(default_factory=dict)
    # Per-feature validity (imports of historical data); else the operation's.
    valid_from: datetime | str | None = None
    valid_to: datetime | str | None = None


@dataclass
class SyncResult:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    retired: int = 0
    # (fid, reason): rows that could not be applied and were skipped
    conflicts: list[tuple[str, str]] = field(default_factory=list)


@contextmanager
def write_transaction(conn: psycopg.Connection) -> Iterator[None]:
    """A REPEATABLE READ transaction, or a savepoint inside the caller's one.
    Database errors that mean "someone else got there first" become store errors."""
    try:
        if conn.info.transaction_status == TransactionStatus.IDLE:
            saved = conn.isolation_level
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            try:
                with conn.transaction():
                    yield
            finally:
                conn.isolation_level = saved
        else:
            with conn.transaction():
                yield
    except (pgerr.SerializationFailure, pgerr.DeadlockDetected, pgerr.LockNotAvailable) as e:
        raise ConflictError(
            "another transaction changed the same feature at the same time; "
            "nothing was written, retry on fresh data"
        ) from e
    except pgerr.ExclusionViolation as e:
        detail = e.diag.message_detail or ""
        raise OverlapError(
            "two current versions of one feature would overlap in valid time; "
            f"nothing was written ({detail})"
        ) from e
    except (pgerr.CheckViolation, pgerr.NotNullViolation, psycopg.DataError) as e:
        raise TemporalError(f"rejected by the database, nothing was written: {e}") from e


def _instant(value) -> datetime | None:
    return None if value is None else parse_instant(value)


class TemporalStore:
    """Versioned writes and as-of reads for one layer."""

    def __init__(self, spec: LayerSpec):
        self.spec = spec
        self.vt = sql.Identifier(SCHEMA, spec.version_table)
        self._attrs = [sql.Identifier(a) for a in spec.attribute_names]
        self._stage = sql.Identifier(f"_stage_{spec.table}")
        self._old = sql.Identifier(f"_old_{spec.table}")

    # ------------------------------------------------------------ validation

    def _check(self, features: Iterable[Feature],
               valid_from: datetime | str | None = None) -> list[Feature]:
        """Validated features; those without their own valid_from get `valid_from`."""
        default_from = _instant(valid_from)
        out, seen = [], set()
        names = set(self.spec.attribute_names)
        required = [a.name for a in self.spec.attributes if a.required]
        for f in features:
            if not isinstance(f.fid, str) or not f.fid.strip():
                raise InvalidFeatureError(f"{self.spec.name}: every feature needs a non-empty fid")
            if f.fid in seen:
                raise InvalidFeatureError(f"{self.spec.name}: fid {f.fid!r} appears twice in one batch")
            seen.add(f.fid)
            f.geometry = self.check_geometry(f.fid, f.geometry)
            unknown = set(f.properties) - names
            if unknown:
                raise InvalidFeatureError(
                    f"{self.spec.name}/{f.fid}: unknown attribute(s) {sorted(unknown)}; "
                    f"known: {sorted(names)}"
                )
            missing = [n for n in required if f.properties.get(n) is None]
            if missing:
                raise InvalidFeatureError(f"{self.spec.name}/{f.fid}: missing required {missing}")
            f.valid_from, f.valid_to = _instant(f.valid_from) or default_from, _instant(f.valid_to)
            if f.valid_from and f.valid_to and f.valid_to <= f.valid_from:
                raise InvalidFeatureError(f"{self.spec.name}/{f.fid}: valid_to must be after valid_from")
            out.append(f)
        return out

    def check_geometry(self, fid: str, geom) -> BaseGeometry:
        """The geometry as stored (single promoted to multi), or InvalidFeatureError."""
        where = f"{self.spec.name}/{fid}"
        if not isinstance(geom, BaseGeometry):
            raise InvalidFeatureError(f"{where}: geometry missing or not a geometry")
        if geom.is_empty:
            raise InvalidFeatureError(f"{where}: geometry is empty")
        want = self.spec.geometry_type
        if geom.geom_type != want:
            if _MULTI.get(geom.geom_type) == want:
                geom = getattr(shapely, want)([geom])
            else:
                raise InvalidFeatureError(f"{where}: geometry is {geom.geom_type}, layer takes {want}")
        if not geom.is_valid:
            raise InvalidFeatureError(f"{where}: invalid geometry ({shapely.is_valid_reason(geom)})")
        minx, miny, maxx, maxy = geom.bounds
        if not (-180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90):
            raise InvalidFeatureError(f"{where}: coordinates are not longitude/latitude degrees")
        return geom

    # -------------------------------------------------------------- staging

    def _ensure_stage(self, conn: psycopg.Connection) -> None:
        cols = sql.SQL("").join(
            sql.SQL(", {} {}").format(sql.Identifier(a.name), sql.SQL(a.type))
            for a in self.spec.attributes
        )
        conn.execute(sql.SQL(
            "create temp table if not exists {} (ord int, fid text, vf timestamptz,"
            " vt timestamptz, geom geometry{}) on commit delete rows"
        ).format(self._stage, cols))
        conn.execute(sql.SQL(
            "create temp table if not exists {} (like {}) on commit delete rows"
        ).format(self._old, self.vt))
        conn.execute(sql.SQL("truncate {}, {}").format(self._stage, self._old))

    def _copy_in(self, conn: psycopg.Connection, features: list[Feature], with_data: bool) -> None:
        self._ensure_stage(conn)
        cols = [sql.Identifier(c) for c in ("ord", "fid", "vf", "vt")]
        if with_data:
            cols += [sql.Identifier("geom"), *self._attrs]
        stmt = sql.SQL("copy {} ({}) from stdin").format(self._stage, sql.SQL(", ").join(cols))
        srid = self.spec.srid
        with conn.cursor() as cur, cur.copy(stmt) as cp:
            for i, f in enumerate(features):
                row: list[Any] = [i, f.fid, f.valid_from, f.valid_to]
                if with_data:
                    row.append(shapely.to_wkb(shapely.set_srid(f.geometry, srid),
                                              hex=True, include_srid=True))
                    for name in self.spec.attribute_names:
                        v = f.properties.get(name)
                        row.append(Jsonb(v) if isinstance(v, (dict, list)) else v)
                cp.write_row(row)

    # --------------------------------------------------------------- writes

    def insert(self, conn: psycopg.Connection, features: Iterable[Feature],
               valid_from: datetime | str | None = None) -> dict[str, int]:
        """Open the first version of new features. Returns fid -> vid."""
        feats = self._check(features, valid_from)
        with write_transaction(conn):
            self._copy_in(conn, feats, with_data=True)
            return self._insert_staged(conn)

    def update(self, conn: psycopg.Connection, features: Iterable[Feature],
               valid_from: datetime | str | None = None) -> dict[str, int]:
        """Close each feature's current version at valid_from and open the given one.
        Features carry the full new state (see `patch` for partial changes)."""
        feats = self._check(features, valid_from)
        with write_transaction(conn):
            self._copy_in(conn, feats, with_data=True)
            self._close_current(conn, "update")
            return self._insert_staged(conn)

    def _insert_staged(self, conn: psycopg.Connection) -> dict[str, int]:
        """Open a version for every staged feature; fid -> vid."""
        attrs = sql.SQL("").join(sql.SQL(", ") + a for a in self._attrs)
        return dict(conn.execute(sql.SQL(
            "insert into {vt} (fid, valid, geom{attrs})"
            " select fid, tstzrange(coalesce(vf, now()), vt), geom{attrs}"
            " from {stage} order by ord returning fid, vid"
        ).format(vt=self.vt, attrs=attrs, stage=self._stage)).fetchall())

    def patch(self, conn: psycopg.Connection, fid: str, *, properties: dict | None = None,
              geometry: BaseGeometry | None = None,
              valid_from: datetime | str | None = None) -> int:
        """Update one feature, changing only what is given."""
        with write_transaction(conn):
            cur = self.current(conn, fid)
            if cur is None:
                raise UnknownFeatureError(f"{self.spec.name}: no current feature {fid!r}")
            props = {n: cur[n] for n in self.spec.attribute_names}
            props.update(properties or {})
            geom = geometry if geometry is not None else shapely.from_geojson(
                json.dumps(cur["geometry"]))
            return self.update(conn, [Feature(fid, geom, props)], valid_from)[fid]

    def retire(self, conn: psycopg.Connection, fids: Iterable[str],
               at: datetime | str | None = None) -> int:
        """End the features' validity at `at` (demolished, deregistered ...)."""
        at_ = _instant(at)
        feats = [Feature(fid, None, valid_from=at_) for fid in fids]  # type: ignore[arg-type]
        if len({f.fid for f in feats}) != len(feats):
            raise InvalidFeatureError(f"{self.spec.name}: a fid appears twice in one batch")
        with write_transaction(conn):
            self._copy_in(conn, feats, with_data=False)
            return self._close_current(conn, "retire")

    def _close_current(self, conn: psycopg.Connection, what: str,
                       only: list[str] | None = None) -> int:
        """For each staged fid (or those in `only`), supersede its current version and
        record a copy whose validity ends at the staged `vf`. Errors name every
        offending fid."""
        rows = conn.execute(sql.SQL(
            "select s.fid, v.vid, lower(v.valid), upper(v.valid), coalesce(s.vf, now())"
            " from {stage} s left join lateral ("
            "   select vid, valid from {vt} v where v.fid = s.fid and upper_inf(v.recorded)"
            "   order by lower(v.valid) desc limit 1 for update) v on true"
            " where %s::text[] is null or s.fid = any(%s::text[])"
            " order by s.ord"
        ).format(stage=self._stage, vt=self.vt), (only, only)).fetchall()
        unknown = [r[0] for r in rows if r[1] is None]
        if unknown:
            raise UnknownFeatureError(f"{self.spec.name}: cannot {what} unknown fid(s) {unknown[:10]}")
        retired = [r[0] for r in rows if r[3] is not None]
        if retired:
            raise RetiredFeatureError(
                f"{self.spec.name}: cannot {what} retired fid(s) {retired[:10]}; "
                "insert a new version to bring one back"
            )
        early = [(r[0], r[4].isoformat(), r[2].isoformat()) for r in rows if r[4] <= r[2]]
        if early:
            fid, new, old = early[0]
            raise TemporalError(
                f"{self.spec.name}/{fid}: {what} at {new} is not after the current version's "
                f"start {old} (use correct to fix a version); {len(early)} such fid(s)"
            )
        vids = [r[1] for r in rows]
        self._supersede(conn, vids)
        attrs = sql.SQL("").join(sql.SQL(", ") + a for a in self._attrs)
        conn.execute(sql.SQL(
            "insert into {vt} (fid, valid, geom{attrs})"
            " select o.fid, tstzrange(lower(o.valid), coalesce(s.vf, now())), o.geom{o_attrs}"
            " from {old} o join {stage} s using (fid) where o.vid = any(%s)"
        ).format(vt=self.vt, attrs=attrs, old=self._old, stage=self._stage,
                 o_attrs=sql.SQL("").join(sql.SQL(", o.") + a for a in self._attrs)), (vids,))
        return len(vids)

    def sync(self, conn: psycopg.Connection, features: Iterable[Feature],
             valid_from: datetime | str | None = None,
             retire_missing: bool = False) -> SyncResult:
        """Make current knowledge match a full set of features (an import):
        new fids are inserted, changed ones get a new version from their valid_from,
        identical ones are left alone (re-importing a file changes nothing), and with
        `retire_missing` current fids absent from the set are retired. Rows whose
        valid_from does not come after their current version are skipped and reported."""
        feats = self._check(features, valid_from)
        default_from = _instant(valid_from)
        same = sql.SQL(" and ").join(
            [sql.SQL("st_orderingequals(v.geom, s.geom)")]
            + [sql.SQL("v.{a} is not distinct from s.{a}").format(a=a) for a in self._attrs])
        result = SyncResult()
        with write_transaction(conn):
            self._copy_in(conn, feats, with_data=True)
            rows = conn.execute(sql.SQL(
                "select s.fid, v.vid is not null, upper_inf(v.valid), {same},"
                " coalesce(s.vf, now()) > lower(v.valid),"
                " coalesce(s.vf, now()) >= coalesce(upper(v.valid), '-infinity')"
                " from {stage} s left join lateral ("
                "   select * from {vt} v where v.fid = s.fid and upper_inf(v.recorded)"
                "   order by lower(v.valid) desc limit 1 for update) v on true order by s.ord"
            ).format(same=same, stage=self._stage, vt=self.vt)).fetchall()
            to_update, skip = [], []
            for fid, known, is_open, identical, after_start, after_end in rows:
                if not known:
                    result.inserted += 1
                elif is_open and identical:
                    result.unchanged += 1
                    skip.append(fid)
                elif is_open and after_start:
                    result.updated += 1
                    to_update.append(fid)
                elif not is_open and after_end:
                    result.inserted += 1  # comes back after being retired
                else:
                    skip.append(fid)
                    result.conflicts.append((fid, "valid_from is not after the current version's "
                                             "start (or the retirement); correct it instead"))
            missing: list[str] = []
            if retire_missing:
                missing = [r[0] for r in conn.execute(sql.SQL(
                    "select v.fid from {vt} v where upper_inf(v.recorded) and upper_inf(v.valid)"
                    " and not exists (select 1 from {stage} s where s.fid = v.fid)"
                    " and lower(v.valid) < coalesce(%s::timestamptz, now())"
                ).format(vt=self.vt, stage=self._stage), (default_from,))]
            if skip:
                conn.execute(sql.SQL("delete from {} where fid = any(%s)").format(self._stage),
                             (skip,))
            if to_update:
                self._close_current(conn, "update", only=to_update)
            self._insert_staged(conn)
            if missing:
                result.retired = self.retire(conn, missing, at=default_from)
        return result

    def backfill(self, conn: psycopg.Connection, rows: Iterable[tuple],
                 rebuild_indexes: bool = False) -> int:
        """Bulk-load historical versions (demo data, migrations from other systems):
        rows are (fid, valid_from, valid_to | None, geometry as EWKT/hex EWKB, *attributes
        in spec order), several versions per fid allowed. The caller guarantees valid
        data; the table's constraints (no overlap, non-empty ranges) still hold it to it.
        `rebuild_indexes`: drop the exclusion constraint and indexes, COPY, build them
        again (for big loads; the table is locked meanwhile, all in one transaction)."""
        cols = [sql.Identifier(c) for c in ("fid", "valid", "geom")] + self._attrs
        stmt = sql.SQL("copy {} ({}) from stdin").format(self.vt, sql.SQL(", ").join(cols))
        n = 0
        with write_transaction(conn):
            if rebuild_indexes:
                for ddl in drop_index_sql(self.spec):
                    conn.execute(ddl)
            with conn.cursor() as cur, cur.copy(stmt) as cp:
                for fid, vf, vt, geom, *attrs in rows:
                    rng = f"[{vf.isoformat()},{vt.isoformat() if vt else ''})"
                    cp.write_row((fid, rng, geom, *attrs))
                    n += 1
            if rebuild_indexes:
                for ddl in index_sql(self.spec):
                    conn.execute(ddl)
        return n

    def _supersede(self, conn: psycopg.Connection, vids: list[int]) -> None:
        """Close `recorded` of these versions (copied into the old-rows table first).
        A version recorded by this very transaction was never visible to anyone:
        it is removed instead of getting an empty transaction-time range."""
        conn.execute(sql.SQL("insert into {} select * from {} where vid = any(%s)").format(
            self._old, self.vt), (vids,))
        conn.execute(sql.SQL(
            "delete from {} where vid = any(%s) and lower(recorded) >= now()").format(self.vt),
            (vids,))
        conn.execute(sql.SQL(
            "update {} set recorded = tstzrange(lower(recorded), now())"
            " where vid = any(%s) and lower(recorded) < now()").format(self.vt), (vids,))

    def correct(self, conn: psycopg.Connection, vid: int, *, properties: dict | None = None,
                geometry: BaseGeometry | None = None,
                valid: tuple[datetime | str, datetime | str | None] | None = None) -> int:
        """Fix a recorded version (wrong data, wrong dates): the old one is superseded in
        transaction time and kept, the corrected one replaces it in current knowledge."""
        properties = properties or {}
        unknown = set(properties) - set(self.spec.attribute_names)
        if unknown:
            raise InvalidFeatureError(f"{self.spec.name}: unknown attribute(s) {sorted(unknown)}")
        for a in self.spec.attributes:
            if a.required and a.name in properties and properties[a.name] is None:
                raise InvalidFeatureError(f"{self.spec.name}: {a.name} is required")
        if valid is not None:
            lo, hi = _instant(valid[0]), _instant(valid[1])
            if lo is None or (hi is not None and hi <= lo):
                raise TemporalError(f"{self.spec.name}: corrected validity must be non-empty")
        with write_transaction(conn):
            row = conn.execute(sql.SQL(
                "select fid, upper_inf(recorded) from {} where vid = %s for update"
            ).format(self.vt), (vid,)).fetchone()
            if row is None:
                raise UnknownFeatureError(f"{self.spec.name}: no version {vid}")
            if not row[1]:
                raise TemporalError(f"{self.spec.name}: version {vid} was already superseded; "
                                    "correct the version that replaced it")
            fid = row[0]
            if geometry is not None:
                geometry = self.check_geometry(fid, geometry)
            self._ensure_stage(conn)
            self._supersede(conn, [vid])
            sets: list[sql.Composable] = []
            params: list[Any] = []
            for a in self.spec.attribute_names:
                if a in properties:
                    sets.append(sql.SQL("%s"))
                    v = properties[a]
                    params.append(Jsonb(v) if isinstance(v, (dict, list)) else v)
                else:
                    sets.append(sql.Identifier(a))
            if geometry is not None:
                geom_sql = sql.SQL("st_geomfromewkb(%s)")
                params.insert(0, shapely.to_wkb(shapely.set_srid(geometry, self.spec.srid),
                                                include_srid=True))
            else:
                geom_sql = sql.SQL("geom")
            if valid is not None:
                valid_sql = sql.SQL("tstzrange(%s, %s)")
                params = [lo, hi, *params]
            else:
                valid_sql = sql.SQL("valid")
            attrs = sql.SQL("").join(sql.SQL(", ") + a for a in self._attrs)
            vals = sql.SQL("").join(sql.SQL(", ") + s for s in sets)
            new_vid = conn.execute(sql.SQL(
                "insert into {vt} (fid, valid, geom{attrs})"
                " select fid, {valid}, {geom}{vals} from {old} returning vid"
            ).format(vt=self.vt, attrs=attrs, valid=valid_sql, geom=geom_sql, vals=vals,
                     old=self._old), params).fetchone()[0]
        return new_vid

    def purge(self, conn: psycopg.Connection, fid: str, *, reason: str, actor: str) -> int:
        """Physically delete every version of a feature (legal erasure); audited."""
        if not reason or not reason.strip() or not actor or not actor.strip():
            raise TemporalError("purge needs a reason and an actor: it is audited")
        with write_transaction(conn):
            vids = [r[0] for r in conn.execute(sql.SQL(
                "delete from {} where fid = %s returning vid").format(self.vt), (fid,))]
            if not vids:
                raise UnknownFeatureError(f"{self.spec.name}: no feature {fid!r} to purge")
            conn.execute(
                "insert into city.purge_log (layer, fid, vids, reason, actor)"
                " values (%s, %s, %s, %s, %s)",
                (self.spec.name, fid, sorted(vids), reason.strip(), actor.strip()))
        return len(vids)

    # ---------------------------------------------------------------- reads

    def _select(self) -> sql.Composed:
        attrs = sql.SQL("").join(sql.SQL(", ") + a for a in self._attrs)
        return sql.SQL(
            "select vid, fid, lower(valid) as valid_from, upper(valid) as valid_to,"
            " lower(recorded) as recorded_from, upper(recorded) as recorded_to,"
            " st_asgeojson(geom, 9, 0)::json as geometry{attrs} from {vt}"
        ).format(attrs=attrs, vt=self.vt)

    def _fetch(self, conn, query, params) -> list[dict]:
        with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
            return cur.execute(query, params).fetchall()

    def snapshot(self, conn: psycopg.Connection, at: datetime | str | None = None,
                 known_at: datetime | str | None = None) -> list[dict]:
        """The features valid at `at` (default now), as currently known or as known at `known_at`."""
        at_, known = _instant(at), _instant(known_at)
        knowledge = (sql.SQL("upper_inf(recorded)") if known is None
                     else sql.SQL("recorded @> %(known)s::timestamptz"))
        q = sql.SQL("{} where valid @> coalesce(%(at)s::timestamptz, now()) and {} order by fid"
                    ).format(self._select(), knowledge)
        return self._fetch(conn, q, {"at": at_, "known": known})

    def current(self, conn: psycopg.Connection, fid: str) -> dict | None:
        """The latest valid version of `fid` in current knowledge (None if never known)."""
        q = sql.SQL("{} where fid = %s and upper_inf(recorded) order by lower(valid) desc limit 1"
                    ).format(self._select())
        rows = self._fetch(conn, q, (fid,))
        return rows[0] if rows else None

    def history(self, conn: psycopg.Connection, fid: str,
                known_at: datetime | str | None = None, superseded: bool = False) -> list[dict]:
        """Versions of `fid` in valid-time order: current knowledge by default,
        as known at `known_at`, or every row ever recorded with `superseded=True`."""
        known = _instant(known_at)
        if superseded:
            cond, params = sql.SQL("true"), {}
        elif known is None:
            cond, params = sql.SQL("upper_inf(recorded)"), {}
        else:
            cond, params = sql.SQL("recorded @> %(known)s::timestamptz"), {"known": known}
        q = sql.SQL("{} where fid = %(fid)s and {} order by lower(valid), lower(recorded), vid"
                    ).format(self._select(), cond)
        return self._fetch(conn, q, {"fid": fid, **params})

    def changes(self, conn: psycopg.Connection, start: datetime | str, end: datetime | str,
                axis: str = "valid") -> list[dict]:
        """What changed in [start, end).

        axis="valid": per fid, how the city changed (current knowledge): `created`,
        `retired`, `modified`, or `transient` (appeared and vanished in the window).
        axis="recorded": what the platform learned: one event per version
        `recorded` or `superseded` in the window, in transaction-time order."""
        t1, t2 = parse_instant(start), parse_instant(end)
        if t2 <= t1:
            raise TemporalError("changes: end must be after start")
        p = {"t1": t1, "t2": t2}
        if axis == "recorded":
            q = sql.SQL(
                "select * from ("
                " select lower(recorded) as at, 'recorded' as event, vid, fid from {vt}"
                "  where lower(recorded) >= %(t1)s and lower(recorded) < %(t2)s"
                " union all"
                " select upper(recorded), 'superseded', vid, fid from {vt}"
                "  where upper(recorded) >= %(t1)s and upper(recorded) < %(t2)s) e"
                " order by at, vid, event"
            ).format(vt=self.vt)
            return self._fetch(conn, q, p)
        if axis != "valid":
            raise TemporalError("changes: axis is 'valid' or 'recorded'")
        q = sql.SQL(
            "with cur as (select fid, vid, valid from {vt} where upper_inf(recorded)),"
            " touched as (select fid, array_agg(vid order by lower(valid)) as vids from cur"
            "  where (lower(valid) >= %(t1)s and lower(valid) < %(t2)s)"
            "     or (upper(valid) >= %(t1)s and upper(valid) < %(t2)s) group by fid)"
            " select t.fid, t.vids,"
            "  exists (select 1 from cur c where c.fid = t.fid and lower(c.valid) < %(t1)s"
            "          and coalesce(upper(c.valid) >= %(t1)s, true)) as before,"
            "  exists (select 1 from cur c where c.fid = t.fid and lower(c.valid) < %(t2)s"
            "          and coalesce(upper(c.valid) >= %(t2)s, true)) as after"
            " from touched t order by t.fid"
        ).format(vt=self.vt)
        out = []
        for r in self._fetch(conn, q, p):
            kind = {(False, True): "created", (True, False): "retired",
                    (True, True): "modified", (False, False): "transient"}[(r["before"], r["after"])]
            out.append({"fid": r["fid"], "change": kind, "vids": r["vids"]})
        return out
