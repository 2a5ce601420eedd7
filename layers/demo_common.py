"""Shared pieces of the deterministic demo city: sizes, the timeline, geometry text.

Events are drawn on a fixed calendar (2018-01-01 → HORIZON) from one seeded generator,
then cut at `until` (default today): the same seed gives the same city, and a later
`until` only adds what happened since.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

import numpy as np

from gisplatform.temporal import BEIJING_TIME

CST = BEIJING_TIME  # the city's clock
START = datetime(2018, 1, 1, tzinfo=CST)
HORIZON = datetime(2030, 1, 1, tzinfo=CST)
SPAN_S = (HORIZON - START).total_seconds()


@dataclass(frozen=True)
class Size:
    name: str
    buildings: int
    units: int
    persons: int
    legal_persons: int
    cameras: int
    components: int
    cases: int
    # where the buildings stand (lon0, lat0, lon1, lat1)
    area: tuple[float, float, float, float]


SIZES = {
    "small": Size("small", 600, 3000, 5000, 400, 120, 800, 1500, (123.86, 41.85, 123.93, 41.885)),
    "city": Size("city", 250_000, 700_000, 1_800_000, 120_000, 8_000, 60_000, 400_000,
                 (123.66, 41.79, 124.29, 41.97)),
}


@dataclass
class Ctx:
    """What the generators share: the random stream, the cut-off, and what earlier
    generators produced (later layers refer to buildings, units, grid cells ...)."""
    size: Size
    seed: int
    until: datetime
    fid_key: bytes = b""  # the database's pseudonym key (persons' fids)
    rng: np.random.Generator = field(init=False)
    shared: dict = field(default_factory=dict)

    def __post_init__(self):
        self.rng = np.random.default_rng(self.seed)

    def times(self, n: int, lo: datetime = START, hi: datetime = HORIZON) -> np.ndarray:
        """n instants uniform in [lo, hi), as epoch seconds (float64), whole minutes."""
        a, b = lo.timestamp(), hi.timestamp()
        return np.floor(self.rng.uniform(a, b, n) / 60) * 60


def ts(epoch: float) -> datetime:
    return datetime.fromtimestamp(float(epoch), CST)


def clip_versions(versions: list[tuple], until: datetime) -> list[tuple]:
    """Versions are (valid_from, valid_to|None, *rest) in order; drop what starts after
    `until` and reopen what ends after it (the future has not happened yet)."""
    out = []
    for v in versions:
        vf, vt = v[0], v[1]
        if vf > until:
            break
        if vt is not None and vt > until:
            vt = None
        out.append((vf, vt, *v[2:]))
    return out


def point_wkt(x: float, y: float) -> str:
    return f"SRID=4490;POINT({x:.7f} {y:.7f})"


def polygon_wkt(coords: np.ndarray) -> str:
    """A closed ring (n x 2) as a one-polygon MULTIPOLYGON."""
    ring = ",".join(f"{x:.7f} {y:.7f}" for x, y in coords)
    return f"SRID=4490;MULTIPOLYGON((({ring})))"


def box_wkt(x0: float, y0: float, x1: float, y1: float) -> str:
    return polygon_wkt(np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]))


def today_cst() -> datetime:
    d = datetime.now(CST).date()
    return datetime(d.year, d.month, d.day, tzinfo=CST)


def as_date(epoch: float) -> date:
    return ts(epoch).date()


def load_rows(conn, spec, rows) -> int:
    """Bulk-load a generator's rows (fid, valid_from, valid_to, EWKT, attributes) into the
    layer `spec` (TemporalStore.backfill, indexes built once at the end); how many."""
    from gisplatform.temporal import TemporalStore

    names = spec.attribute_names
    return TemporalStore(spec).backfill(conn, (
        (fid, vf, vt, geom, *(attrs[a] for a in names)) for fid, vf, vt, geom, attrs in rows),
        rebuild_indexes=True)
