"""Scoring a standard address against a query, both parsed (parse.py), with rapidfuzz.

score = 0.55 × road + 0.35 × number + 0.10 × district, over the parts the query has:
- road: rapidfuzz's normalised similarity of the two road names (新华大街 / 新华街 differ
  in the suffix only: an alias, a small loss); a query naming no road is not ranked against
  addresses (geocoder.py answers it with areas and place names);
- number: the house number, exactly (a number that is not on the road is another place);
- district: the query's district or county, when it names one (a missing prefix costs
  nothing); a town (街道/乡镇) named is checked the same way when both sides have one;
- building / unit: when the query and the standard address both have them.
A query part the standard address lacks (a building, a unit, a room finer than the address
data) costs nothing: the address is the finest the data knows (the level says which).
Calibration (bench/geocode.py): a one-character typo in a road name with the right number
scores about 0.86, the right road with a number not on it 0.65, an unknown road 0.6–0.75:
`MATCH` = 0.8 separates them.
"""

from __future__ import annotations

from rapidfuzz import fuzz

from .parse import Parsed, road_key

MATCH = 0.8  # at or above: a match (batch, importer, case intake); below: a suggestion


def road_similarity(a: str, b: str) -> float:
    """0–1: the names compared as written, an alias suffix (路/街/道 …) costing 5 %."""
    (na, sa), (nb, sb) = road_key(a), road_key(b)
    sim = fuzz.ratio(na, nb) / 100
    return sim if sa == sb else sim * 0.95


def score(q: Parsed, c: Parsed, c_district: str | None, c_town: str | None = None) -> float:
    """How well the standard address `c` (in district `c_district`, town `c_town` where
    known) answers the query `q`: 0–1 (module doc)."""
    total = weight = 0.0
    if q.road is not None:
        total += 0.55 * (road_similarity(q.road, c.road) if c.road else 0.0)
        weight += 0.55
    if q.number is not None:
        total += 0.35 * (q.number == c.number)
        weight += 0.35
    if q.district is not None:
        if q.district_code is not None:
            same = q.district_code == c_district
        else:  # a district the city does not have: not this one
            same = False
        total += 0.10 * same
        weight += 0.10
    if q.town_code is not None and c_town is not None:
        total += 0.05 * (q.town_code == c_town)
        weight += 0.05
    for part in ("building", "unit"):
        mine, theirs = getattr(q, part), getattr(c, part)
        if mine is not None and theirs is not None:
            total += 0.05 * (mine == theirs)
            weight += 0.05
    return round(total / weight, 4) if weight else 0.0


def level(q: Parsed, c: Parsed) -> str:
    """The finest part of `c` the query matched: unit, building, number or road."""
    if q.number is None or q.number != c.number:
        return "road"
    if q.building is not None and q.building == c.building:
        if q.unit is not None and q.unit == c.unit:
            return "unit"
        return "building"
    return "number"
