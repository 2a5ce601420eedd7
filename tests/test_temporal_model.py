"""Property-based: random operation sequences against a tiny in-memory model of the
same semantics, checked on both time axes (valid time, and "as known at")."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely.geometry import Point

from gisplatform.temporal import (
    Feature,
    OverlapError,
    RetiredFeatureError,
    TemporalError,
    UnknownFeatureError,
)

T0 = datetime(2020, 1, 1, tzinfo=timezone.utc)
FIDS = ["a", "b", "c"]


def at(d: int) -> datetime:
    return T0 + timedelta(days=d)


class Model:
    """fid -> list of [from_day, to_day|None, value] in current knowledge."""

    def __init__(self):
        self.v: dict[str, list[list]] = {}

    def copy(self) -> Model:
        m = Model()
        m.v = {k: [list(x) for x in vs] for k, vs in self.v.items()}
        return m

    def apply(self, op, fid, d, value):
        vs = self.v.get(fid, [])
        if op == "insert":
            if any(to is None or to > d for _, to, _ in vs):
                return OverlapError
            self.v.setdefault(fid, []).append([d, None, value])
            return None
        if not vs:
            return UnknownFeatureError
        last = max(vs, key=lambda x: x[0])
        if last[1] is not None:
            return RetiredFeatureError
        if d <= last[0]:
            return TemporalError
        last[1] = d
        if op == "update":
            vs.append([d, None, value])
        return None

    def snapshot(self, d):
        return sorted((fid, val) for fid, vs in self.v.items()
                      for fr, to, val in vs if fr <= d and (to is None or d < to))

    def history(self, fid):
        return sorted((at(fr), None if to is None else at(to), val)
                      for fr, to, val in self.v.get(fid, []))


ops = st.lists(
    st.tuples(st.sampled_from(["insert", "update", "retire"]), st.sampled_from(FIDS),
              st.integers(0, 30), st.integers(0, 99)),
    min_size=1, max_size=12)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seq=ops)
def test_store_matches_model(db_url, things, seq):
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f'truncate city."{things.spec.version_table}"')
        model = Model()
        known = []  # (transaction time after op k, model state after op k)
        for op, fid, d, value in seq:
            want = model.apply(op, fid, d, str(value))
            try:
                feat = Feature(fid, Point(123.9, 41.85), {"name": str(value)})
                if op == "insert":
                    things.insert(conn, [feat], valid_from=at(d))
                elif op == "update":
                    things.update(conn, [feat], valid_from=at(d))
                else:
                    things.retire(conn, [fid], at=at(d))
                got = None
            except TemporalError as e:
                got = type(e)
            assert got is want, (op, fid, d, got, want)
            known.append((conn.execute("select clock_timestamp()").fetchone()[0], model.copy()))
        for fid in FIDS:
            rows = things.history(conn, fid)
            assert [(r["valid_from"], r["valid_to"], r["name"]) for r in rows] == model.history(fid)
        for d in (0, 7, 15, 31):
            snap = [(r["fid"], r["name"]) for r in things.snapshot(conn, at=at(d))]
            assert snap == model.snapshot(d)
            # what the platform knew after each step is still answerable
            for k_time, k_model in known:
                past = [(r["fid"], r["name"]) for r in things.snapshot(conn, at=at(d), known_at=k_time)]
                assert past == k_model.snapshot(d)
