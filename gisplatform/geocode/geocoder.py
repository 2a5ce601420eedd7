"""Geocoding and reverse geocoding over the city's layers, at any instant.

`geocode(conn, sources, text, at)`: ranked candidates for an address query. The query is
normalised and parsed (parse.py) with the city's districts and towns as they were at `at`;
then
- a query naming a road is matched against the standard addresses valid at `at` (current
  knowledge). Candidates come from PostgreSQL by two paths: every address with the
  query's house number (a B-tree; a few hundred at city size), and the nearest addresses
  by trigram distance of the whole text (`city.trgm_key`, migration 0021: pg_trgm under
  any locale). Each is parsed and scored in Python (rank.py, rapidfuzz). An address whose
  number is not the query's stands for its road (level `road`), once per road;
- a query naming no road is matched against the districts and towns (levels `district`,
  `street`) and the place names (`place`), where the city has that layer.
Each candidate carries its point, the standard address, the division code and the unit-grid
cell its point lies in at `at`.

`reverse(conn, sources, lon, lat, at)`: the nearest standard address and its distance, the
building containing the point, the grid cell with its community, the street (town) and
district (GB/T 2260) areas containing it, and the responsibility zone (门前三包), if any.

Which layers: `Sources`, from the composition root (wiring.py). Access is the platform's
decision (`security.require` / `access`): the addresses layer must be readable (else
401/403); a source the caller may not read is left out of the answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache

from psycopg import sql
from rapidfuzz import fuzz, process

from gisplatform.security import access, require
from gisplatform.temporal import contains_sql

from .parse import AddressError, Gazetteer, Parsed, check_query, normalize, parse
from .rank import MATCH, level, score

SCHEMA = "city"
NEAREST = 40  # candidates by trigram distance
MAX_LIMIT = 50


@dataclass(frozen=True)
class Source:
    layer: str  # collection id
    sharing: str

    @property
    def table(self) -> sql.Identifier:
        return sql.Identifier(SCHEMA, self.layer.replace("-", "_") + "_version")


@dataclass(frozen=True)
class Sources:
    """The layers geocoding reads, with the columns it expects of each:
    addresses (address, street_name, house_number, division_code), admin areas (code, name,
    level: city | district | county | street), grid cells (grid_code, community_code);
    optional: buildings, responsibility zones (zone_code), place names (name)."""
    addresses: Source
    admin_areas: Source
    grid_cells: Source
    buildings: Source | None = None
    zones: Source | None = None
    places: Source | None = None


@dataclass
class Candidate:
    fid: str
    level: str
    score: float
    address: str
    lon: float
    lat: float
    division_code: str | None = None
    grid_code: str | None = None
    layer: str | None = None  # whose item `fid` is
    extra: dict = field(default_factory=dict)


def _current(alias: str = "v") -> str:
    """Valid at %(at)s, as known now."""
    return f"upper_inf({alias}.recorded) and " + contains_sql(f"{alias}.valid", "%(at)s")


@dataclass(frozen=True)
class Areas:
    """The admin areas valid at an instant: the gazetteer, and code → (name, level, parent)."""
    gazetteer: Gazetteer
    by_code: dict[str, tuple[str, str, str | None]]


def areas(conn, sources: Sources, at: datetime) -> Areas:
    rows = conn.execute(sql.SQL(
        "select code, name, level, parent_code from {} v where " + _current()).format(
        sources.admin_areas.table), {"at": at}).fetchall()
    districts = {n: c for c, n, lvl, _ in rows if lvl in ("district", "county")}
    towns = {n: c for c, n, lvl, _ in rows if lvl == "street"}
    city = next((n for _, n, lvl, _ in rows if lvl == "city"), None)
    return Areas(Gazetteer.of(districts, towns, city),
                 {c: (n, lvl, p) for c, n, lvl, p in rows})


_normalized = lru_cache(maxsize=100_000)(normalize)  # road names: a few thousand


@lru_cache(maxsize=200_000)
def _parsed(address: str, gazetteer: Gazetteer) -> Parsed:
    return parse(address, gazetteer)


def geocode(conn, sources: Sources, text: str, at: datetime, limit: int = 5,
            principal=None) -> list[Candidate]:
    """Ranked candidates, best first (module doc). `text` must have passed
    parse.check_query; `principal`: whose access decides (None: the current one)."""
    from gisplatform.security import current_principal

    who = principal or current_principal.get()
    require(who, sources.addresses.layer, sources.addresses.sharing)
    where = areas(conn, sources, at)
    norm = normalize(text)
    q = parse(norm, where.gazetteer, normalized=True)
    found: list[Candidate] = []
    if q.road is not None:
        found += _addresses(conn, sources, q, norm, at, where)
    if q.road is None or not found or max(c.score for c in found) < MATCH:
        found += _areas(q, where, conn, sources, at)
        if sources.places is not None and access(who, sources.places.layer,
                                                 sources.places.sharing).read:
            found += _places(conn, sources.places, q, norm, at)
    found.sort(key=lambda c: (-c.score, c.level != "number", c.address))
    unique = {}
    for c in found:  # a road found by both paths: once
        unique.setdefault(c.fid, c)
    best = list(unique.values())[:min(limit, MAX_LIMIT)]
    _grid_codes(conn, sources, best, at, who)
    return best


_BY_NUMBER = """
    select v.fid, v.address, v.street_name, v.division_code, st_x(v.geom), st_y(v.geom)
    from {t} v where v.house_number = any(%(numbers)s) and """ + _current()
_BY_TEXT = """
    select v.fid, v.address, v.street_name, v.division_code, st_x(v.geom), st_y(v.geom)
    from {t} v where """ + _current() + """
    order by city.trgm_key(%(q)s) <<-> city.trgm_key(v.address) limit %(n)s"""


PLACED = ("number", "building", "unit")  # levels that place a record at an address


def locate(conn, sources: Sources, text: str, at: datetime, principal=None) -> Candidate:
    """The standard address `text` names, where a record (an imported row, a reported
    case) is placed: the best candidate when it is a match (score ≥ MATCH) at house-number
    level or finer; else AddressError naming the best candidates."""
    try:
        found = geocode(conn, sources, check_query(text), at, 3, principal)
    except AddressError as e:
        raise AddressError(f"address {text!r}: {str(e).removeprefix('q: ')}") from None
    best = found[0] if found else None
    if best is None or best.score < MATCH or best.level not in PLACED:
        near = "; ".join(f"{c.address} ({c.score:.2f})" for c in found) or "none"
        raise AddressError(f"address {text!r} matches no standard address (score ≥ {MATCH}"
                           f" needed); best candidates: {near}")
    return best


def _addresses(conn, sources: Sources, q: Parsed, norm: str, at: datetime,
               where: Areas) -> list[Candidate]:
    """Standard addresses for a query naming a road: first those with its house number
    (a B-tree; the few hundred found cut to the NEAREST roads by name, rapidfuzz); only
    when none of them is a match, the nearest by trigram distance of the whole text (a
    GiST KNN over city.trgm_key: ~70 ms at city size, so not for every query)."""
    table = sources.addresses.table
    seen: set[str] = set()
    found: list[Candidate] = []
    if q.number is not None:
        rows = conn.execute(sql.SQL(_BY_NUMBER).format(t=table),
                            {"numbers": [f"{q.number}号", str(q.number)], "at": at}).fetchall()
        if len(rows) > NEAREST:
            names = [_normalized(r[2] or r[1]) for r in rows]
            rows = [rows[i] for _, _, i in process.extract(
                q.road, names, scorer=fuzz.ratio, limit=NEAREST)]
        found += _ranked(q, rows, where, sources, seen)
    if not any(c.score >= MATCH for c in found):
        rows = conn.execute(sql.SQL(_BY_TEXT).format(t=table),
                            {"q": norm, "at": at, "n": NEAREST}).fetchall()
        found += _ranked(q, rows, where, sources, seen)
    return found


def _ranked(q: Parsed, rows, where: Areas, sources: Sources, seen: set[str]) -> list[Candidate]:
    """Candidates scored against `q`; an address whose number is not the query's stands
    for its road (level `road`, the nearest number), once per road."""
    exact: list[Candidate] = []
    roads: dict[tuple, Candidate] = {}
    for fid, address, _, division, x, y in rows:
        if fid in seen:
            continue
        seen.add(fid)
        c = _parsed(address, where.gazetteer)
        if c.road is None:
            continue
        s = score(q, c, division)
        lvl = level(q, c)
        if lvl != "road":
            exact.append(Candidate(fid, lvl, s, address, x, y, division,
                                   layer=sources.addresses.layer))
            continue
        key = (division, c.road)
        gap = abs((c.number or 0) - (q.number or 0))
        kept = roads.get(key)
        if kept is None or gap < kept.extra["gap"]:
            roads[key] = Candidate(f"{division}:{c.road}", "road", s,
                                   _road_address(address, c.road), x, y, division,
                                   extra={"gap": gap, "nearest": address})
    for c in roads.values():
        c.extra.pop("gap")
    return exact + list(roads.values())


def _road_address(address: str, road: str) -> str:
    """The standard address cut after its road (抚顺市新抚区榆林1路), as written there."""
    norm = normalize(address)
    i = norm.find(road)
    return norm[: i + len(road)] if i >= 0 else norm


def _areas(q: Parsed, where: Areas, conn, sources: Sources, at: datetime) -> list[Candidate]:
    wanted = [(code, lvl) for code, lvl in ((q.town_code, "street"), (q.district_code, "district"))
              if code is not None]
    if not wanted:
        return []
    code, lvl = wanted[0]  # the finest named
    row = conn.execute(sql.SQL(
        "select st_x(p), st_y(p) from (select st_pointonsurface(v.geom) p from {} v"
        " where v.code = %(code)s and " + _current() + ") x").format(
        sources.admin_areas.table), {"code": code, "at": at}).fetchone()
    if row is None:
        return []
    name = where.by_code[code][0]
    # the finest part named is all there is: an exact area; with a road asked and not
    # found, the area is where it would be, a suggestion
    s = 1.0 if q.road is None and q.number is None else 0.5
    division = code[:6]
    return [Candidate(code, lvl, s, name, row[0], row[1], division, layer=sources.admin_areas.layer)]


def _places(conn, src: Source, q: Parsed, norm: str, at: datetime) -> list[Candidate]:
    """Place names (地名) ranked by rapidfuzz over the names valid at `at` (a gazetteer
    layer is small: hundreds to a few thousand names)."""
    if conn.execute("select to_regclass(%s)", (f"{SCHEMA}.{src.layer.replace('-', '_')}_version",)
                    ).fetchone()[0] is None:
        return []
    wanted = q.extra or norm
    rows = conn.execute(sql.SQL(
        "select v.fid, v.name, st_x(p), st_y(p) from {} v,"
        " lateral st_pointonsurface(v.geom) p where " + _current()).format(src.table),
        {"at": at}).fetchall()
    out = []
    for fid, name, x, y in rows:
        s = fuzz.ratio(wanted, normalize(name or "")) / 100
        if s >= 0.5:
            out.append(Candidate(fid, "place", round(s, 4), name, x, y, layer=src.layer))
    out.sort(key=lambda c: -c.score)
    return out[:MAX_LIMIT]


def _grid_codes(conn, sources: Sources, found: list[Candidate], at: datetime, who) -> None:
    """Each candidate's unit-grid cell at `at`, and its division code from the point where
    the candidate has none (place names)."""
    if not found:
        return
    grid_ok = access(who, sources.grid_cells.layer, sources.grid_cells.sharing).read
    rows = conn.execute(sql.SQL("""
        select i, (select g.grid_code from {g} g
                   where st_intersects(g.geom, p) and """ + _current("g") + """
                   order by g.grid_code limit 1),
                  (select a.code from {a} a
                   where a.level in ('district', 'county') and st_intersects(a.geom, p)
                     and """ + _current("a") + """ order by a.code limit 1)
        from unnest(%(xs)s::float8[], %(ys)s::float8[]) with ordinality as u(x, y, i),
             lateral st_setsrid(st_point(u.x, u.y), 4490) p""").format(
        g=sources.grid_cells.table, a=sources.admin_areas.table),
        {"xs": [c.lon for c in found], "ys": [c.lat for c in found], "at": at}).fetchall()
    for i, grid, division in rows:
        c = found[i - 1]
        c.grid_code = grid if grid_ok else None
        c.division_code = c.division_code or division


def reverse(conn, sources: Sources, lon: float, lat: float, at: datetime,
            principal=None) -> dict:
    """What is at (lon, lat) (EPSG:4490) at `at` (module doc)."""
    from gisplatform.security import current_principal

    who = principal or current_principal.get()
    require(who, sources.addresses.layer, sources.addresses.sharing)
    params = {"x": lon, "y": lat, "at": at}
    point = "st_setsrid(st_point(%(x)s, %(y)s), 4490)"
    out: dict = {"address": None, "distance_m": None, "building": None, "grid_code": None,
                 "community": None, "street": None, "district": None,
                 "responsibility_zone": None}
    # nearest in metres: `<->` on lon/lat degrees is not (a degree of longitude is 0.75 of
    # one of latitude here); the nearest by degrees bounds the search, the geodesic decides
    row = conn.execute(sql.SQL("""
        with p as (select """ + point + """ as g),
        bound as (select st_distance(v.geom::geography, p.g::geography) as d from {t} v, p
                  where """ + _current() + """ order by v.geom <-> p.g limit 1)
        select v.fid, v.address, v.division_code, st_x(v.geom), st_y(v.geom),
               st_distance(v.geom::geography, p.g::geography) as d
        from {t} v, p, bound
        where v.geom && st_expand(p.g, bound.d / (111000 * cos(radians(%(y)s))) + 1e-6,
                                  bound.d / 110000 + 1e-6) and """ + _current() + """
        order by d, v.fid limit 1""").format(t=sources.addresses.table), params).fetchone()
    if row is not None:
        fid, address, division, x, y, dist = row
        out["address"] = Candidate(fid, "number", 1.0, address, x, y, division,
                                   layer=sources.addresses.layer)
        out["distance_m"] = round(dist, 1)

    def inside(src: Source | None, columns: str, extra: str = "") -> tuple | None:
        if src is None or not access(who, src.layer, src.sharing).read:
            return None
        return conn.execute(sql.SQL(
            f"select {columns} from {{}} v where st_intersects(v.geom, {point}) {extra} and "
            + _current() + " order by v.fid limit 1").format(src.table), params).fetchone()

    if (b := inside(sources.buildings, "v.fid")) is not None:
        out["building"] = b[0]
    if (z := inside(sources.zones, "v.fid")) is not None:
        out["responsibility_zone"] = z[0]
    if (g := inside(sources.grid_cells, "v.grid_code, v.community_code")) is not None:
        out["grid_code"] = g[0]
        if g[1]:
            out["community"] = {"code": g[1]}
    for key, levels in (("street", "('street')"), ("district", "('district', 'county')")):
        a = inside(sources.admin_areas, "v.code, v.name", f"and v.level in {levels}")
        if a is not None:
            out[key] = {"code": a[0], "name": a[1]}
    return out
