"""CQL2 (as parsed by pygeofilter) → a psycopg SQL fragment.

Every attribute name goes through the caller's `column` lookup (which refuses names the
collection lacks and fields the caller receives masked) and every literal goes in as a
bound literal (psycopg quotes it): a filter can narrow a query, never extend it.
Geometry literals arrive in EPSG:4490 authority order (see `value`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime

from psycopg import sql
from pygeofilter import ast, values


class FilterError(ValueError):
    pass


COMPARISON = {ast.Equal: "=", ast.NotEqual: "<>", ast.LessThan: "<", ast.LessEqual: "<=",
              ast.GreaterThan: ">", ast.GreaterEqual: ">="}
SPATIAL = {ast.GeometryIntersects: "st_intersects", ast.GeometryDisjoint: "st_disjoint",
           ast.GeometryContains: "st_contains", ast.GeometryWithin: "st_within",
           ast.GeometryTouches: "st_touches", ast.GeometryCrosses: "st_crosses",
           ast.GeometryOverlaps: "st_overlaps", ast.GeometryEquals: "st_equals"}
TEMPORAL = {ast.TimeAfter: ">", ast.TimeBefore: "<", ast.TimeEquals: "="}


def to_sql(node, column: Callable[[str], sql.Composable], geometry: sql.Composable,
           srid: int = 4490) -> sql.Composable:
    """`column`: a property name -> the SQL expression it stands for; it raises for a name
    the caller may not use (FilterError, or the security kernel's MaskedFieldInput)."""

    def value(v) -> sql.Composable:
        if isinstance(v, ast.Attribute):
            if v.name in ("geometry", "geom"):
                return geometry
            return column(v.name)
        # pygeoapi has already moved geometry literals into the storage CRS, in its
        # authority axis order (EPSG:4490: lat, lon); stored geometries are lon, lat.
        if isinstance(v, values.Geometry):
            return sql.SQL("st_flipcoordinates(st_setsrid(st_geomfromgeojson({}), {}))").format(
                sql.Literal(json.dumps(v.geometry)), sql.Literal(srid))
        if isinstance(v, values.Envelope):
            return sql.SQL("st_makeenvelope({}, {}, {}, {}, {})").format(
                *(sql.Literal(float(x)) for x in (v.y1, v.x1, v.y2, v.x2)), sql.Literal(srid))
        if isinstance(v, (str, int, float, bool, date, datetime)) or v is None:
            return sql.Literal(v)
        if isinstance(v, ast.Node):
            return walk(v)
        raise FilterError(f"unsupported value {v!r}")

    def walk(n) -> sql.Composable:
        if isinstance(n, ast.And):
            return sql.SQL("({} and {})").format(walk(n.lhs), walk(n.rhs))
        if isinstance(n, ast.Or):
            return sql.SQL("({} or {})").format(walk(n.lhs), walk(n.rhs))
        if isinstance(n, ast.Not):
            return sql.SQL("(not {})").format(walk(n.sub_node))
        if type(n) in COMPARISON:
            return sql.SQL("({} {} {})").format(value(n.lhs), sql.SQL(COMPARISON[type(n)]),
                                                value(n.rhs))
        if isinstance(n, ast.Between):
            return sql.SQL("({} {}between {} and {})").format(
                value(n.lhs), sql.SQL("not " if n.not_ else ""), value(n.low), value(n.high))
        if isinstance(n, ast.Like):
            pattern = _like_pattern(n.pattern, n.wildcard, n.singlechar, n.escapechar)
            return sql.SQL("({}::text {}{} {})").format(
                value(n.lhs), sql.SQL("not " if n.not_ else ""),
                sql.SQL("ilike" if n.nocase else "like"), sql.Literal(pattern))
        if isinstance(n, ast.In):
            return sql.SQL("({} {}in ({}))").format(
                value(n.lhs), sql.SQL("not " if n.not_ else ""),
                sql.SQL(", ").join(value(x) for x in n.sub_nodes))
        if isinstance(n, ast.IsNull):
            return sql.SQL("({} is {}null)").format(value(n.lhs), sql.SQL("not " if n.not_ else ""))
        if type(n) in SPATIAL:
            return sql.SQL("{}({}, {})").format(sql.SQL(SPATIAL[type(n)]), value(n.lhs), value(n.rhs))
        if isinstance(n, ast.DistanceWithin):
            return sql.SQL("st_dwithin({}::geography, {}::geography, {})").format(
                value(n.lhs), value(n.rhs), sql.Literal(float(_metres(n.distance, n.units))))
        if type(n) in TEMPORAL:
            return sql.SQL("({} {} {})").format(value(n.lhs), sql.SQL(TEMPORAL[type(n)]),
                                                value(n.rhs))
        if isinstance(n, ast.Include):
            return sql.SQL("false" if n.not_ else "true")
        raise FilterError(f"unsupported filter operation {type(n).__name__}")

    return walk(node)


def _like_pattern(pattern: str, wildcard: str, singlechar: str, escape: str | None) -> str:
    """CQL2 LIKE uses % and _ (pygeofilter may report others); map to SQL LIKE."""
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if escape and ch == escape and i + 1 < len(pattern):
            out.append("\\" + pattern[i + 1])
            i += 2
            continue
        out.append("%" if ch == wildcard else "_" if ch == singlechar else ch)
        i += 1
    return "".join(out)


def _metres(distance: float, units: str | None) -> float:
    factor = {None: 1, "meters": 1, "m": 1, "metres": 1, "kilometers": 1000, "km": 1000}
    if units not in factor:
        raise FilterError(f"distance units {units!r}: use meters or kilometers")
    return distance * factor[units]
