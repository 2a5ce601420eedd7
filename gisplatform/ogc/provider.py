"""pygeoapi feature provider over the bitemporal store.

Replaces pygeoapi's PostgreSQL provider, which on this data answered 500 on range
columns, ignored EPSG:4490 axis order in bbox queries and served ~2 req/s: here the
GeoJSON is built in the database with only the asked properties, CRS output is one
ST_Transform/ST_FlipCoordinates, time is the version table's `valid`/`recorded`, and
connections come from one pool. Access and masking go through gisplatform.security.
"""

from __future__ import annotations

import base64
import functools
import json
import math
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import psycopg
from psycopg import sql
from pygeoapi.provider.base import (
    BaseProvider,
    ProviderConnectionError,
    ProviderGenericError,
    ProviderInvalidQueryError,
    ProviderItemNotFoundError,
)

from gisplatform.crs import CRSError, resolve_crs
from gisplatform.security import (
    READ,
    READ_PERSONAL_ACTION,
    WRITE,
    AccessDenied,
    AuthError,
    MaskedFieldInput,
    access,
    audit,
    check_inputs,
    current_principal,
    mask_sql,
    masked_fields,
    require,
)
from gisplatform.temporal import (
    SCHEMA,
    TemporalError,
    TemporalStore,
    city_midnight,
    contains_sql,
    parse_instant,
    parse_interval,
    parse_request_instant,
)

from . import catalog
from .cql import FilterError, to_sql

KNOWN_AT = "known_at"  # vendor parameter: transaction time ("as known at")
CURSOR = "cursor"  # vendor parameter: where a `next` page starts (the last row's sort key)
MAX_LIMIT = 10_000
# True while pygeoapi builds a queryables document (guards.queryables_for_the_caller): the
# provider's `fields` are then the ones this caller may use as inputs.
LISTING_QUERYABLES: ContextVar[bool] = ContextVar("listing_queryables", default=False)
# The items request being answered — pygeoapi's collections URL and the query parameters
# (mount.py sets it): the base of the `next` links the provider writes.
ITEMS_REQUEST: ContextVar[tuple[str, dict] | None] = ContextVar("items_request", default=None)

@contextmanager
def connection() -> Iterator[psycopg.Connection]:
    """A pooled connection. The database down, restarting or out of connections is a 503
    the client may retry, never a traceback; other errors pass through unchanged."""
    try:
        with catalog.pool().connection() as conn:
            yield conn
    except psycopg.OperationalError as e:  # PoolTimeout and a lost connection included
        raise DatabaseUnavailable(
            user_msg=f"the database is unavailable ({type(e).__name__}); retry shortly") from e


class DatabaseUnavailable(ProviderConnectionError):
    ogc_exception_code = "ServiceUnavailable"
    http_status_code = 503
    default_msg = "the database is unavailable; retry shortly"


class Forbidden(ProviderGenericError):
    ogc_exception_code = "Forbidden"
    http_status_code = 403
    default_msg = "forbidden"


class Conflict(ProviderGenericError):
    ogc_exception_code = "Conflict"
    http_status_code = 409
    default_msg = "conflict"


class Unauthorized(ProviderGenericError):
    ogc_exception_code = "Unauthorized"
    http_status_code = 401
    default_msg = "this collection needs a token (Authorization: Bearer …)"


JSON_TYPES = {"text": ("string", None), "integer": ("integer", None), "bigint": ("integer", None),
              "double precision": ("number", None), "numeric": ("number", None),
              "boolean": ("boolean", None), "date": ("string", "date"),
              "timestamptz": ("string", "date-time")}



def parse_datetime(value: str | None):
    """None, an instant, or an interval (lo, hi) with open ends as None.
    A bare date means 00:00 in the city's time (UTC+8); the rest is the store's parsers."""
    if value is None:
        return None
    try:
        if "/" in value:
            lo, _, hi = value.partition("/")
            return parse_interval(f"{city_midnight(lo)}/{city_midnight(hi)}")
        return parse_request_instant(value)
    except TemporalError as e:
        raise ProviderInvalidQueryError(user_msg=f"datetime: {e}") from None


def envelope(bbox) -> sql.Composable:
    """pygeoapi hands the bbox over in the storage CRS's axis order (EPSG:4490: lat, lon)."""
    lat0, lon0, lat1, lon1 = (float(v) for v in bbox[:4])
    if not all(math.isfinite(v) for v in (lat0, lon0, lat1, lon1)) or not (
            -90 <= lat0 <= lat1 <= 90 and -180 <= lon0 <= lon1 <= 180):
        raise ProviderInvalidQueryError(
            user_msg="bbox: longitudes must lie in -180..180 and latitudes in -90..90, "
                     "lower corner first")
    return sql.SQL("st_makeenvelope({}, {}, {}, {}, 4490)").format(
        *(sql.Literal(float(x)) for x in (lon0, lat0, lon1, lat1)))


def encode_cursor(key: tuple) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def decode_cursor(text: str, history: bool) -> tuple:
    """The sort key a `cursor` carries: (fid, vid) of a snapshot's last row, (vid,) of a
    history's. Anything else is a 400: cursors come from our `next` links only."""
    try:
        key = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if history and isinstance(key, list) and len(key) == 1 and type(key[0]) is int:
            return (key[0],)
        if (not history and isinstance(key, list) and len(key) == 2
                and isinstance(key[0], str) and type(key[1]) is int):
            return tuple(key)
    except (ValueError, UnicodeDecodeError):
        pass
    raise ProviderInvalidQueryError(user_msg="cursor: not a cursor of this collection's "
                                             "`next` links")


class TemporalProvider(BaseProvider):
    def __init__(self, provider_def):
        super().__init__(provider_def)
        self.collection = catalog.get(provider_def["data"])
        spec = self.collection.spec
        self.spec = spec
        self.kind = self.collection.kind
        self.id_field = "vid" if self.kind == catalog.HISTORY else (
            "code" if self.kind == catalog.AGGREGATE else "fid")
        self.include_extra_query_parameters = True  # for the known_at vendor parameter
        self.get_fields()

    # ------------------------------------------------------------- schema

    def get_fields(self):
        if self._fields:
            return self._fields
        if self.kind == catalog.AGGREGATE:
            self._fields = {"code": {"type": "string"}, "name": {"type": "string"},
                            "total": {"type": "integer"}, "registered": {"type": "integer"},
                            "floating": {"type": "integer"}}
            return self._fields
        fields = {}
        if self.kind == catalog.HISTORY:
            fields["fid"] = {"type": "string"}
        else:
            fields["vid"] = {"type": "integer"}
        fields["valid_from"] = {"type": "string", "format": "date-time"}
        fields["valid_to"] = {"type": "string", "format": "date-time"}
        if self.kind == catalog.HISTORY:
            fields["recorded_from"] = {"type": "string", "format": "date-time"}
            fields["recorded_to"] = {"type": "string", "format": "date-time"}
        for a in self.spec.attributes:
            t, fmt = JSON_TYPES[a.type.split("(")[0]]
            if a.name in self.collection.personal:
                t, fmt = "string", None  # masked values are strings
            fields[a.name] = {"type": t, **({"format": fmt} if fmt else {}),
                              **({"description": a.description} if a.description else {})}
        self._fields = fields
        return fields

    def _columns(self) -> dict[str, sql.Composable]:
        """Property name -> SQL expression over the version table `v` (inputs reach it
        through `_input_column`, which asks the security kernel first)."""
        cols: dict[str, sql.Composable] = {
            "fid": sql.SQL("v.fid"), "vid": sql.SQL("v.vid"),
            "valid_from": sql.SQL("lower(v.valid)"), "valid_to": sql.SQL("upper(v.valid)"),
            "recorded_from": sql.SQL("lower(v.recorded)"), "recorded_to": sql.SQL("upper(v.recorded)"),
        }
        for a in self.spec.attributes:
            cols[a.name] = sql.SQL("v.{}").format(sql.Identifier(a.name))
        return cols

    def _input_column(self, acc, name: str) -> sql.Composable:
        """The SQL of a property used as an input — a property filter, a CQL2 attribute, a
        sort key. Unknown: 400. Received masked by this caller: 400 (MaskedFieldInput from
        `security.check_inputs`), so a masked value cannot be recovered by asking about it."""
        check_inputs([name], self.collection.personal, acc, self.collection.layer)
        cols = self._columns()
        if name not in cols:
            raise FilterError(f"unknown property {name!r}; see /queryables")
        return cols[name]

    @property
    def fields(self) -> dict:
        return self.queryable_fields() if LISTING_QUERYABLES.get() else self.get_fields()

    def queryable_fields(self) -> dict:
        """The fields this request's caller may use as inputs: the queryables it is shown."""
        acc = access(current_principal.get(), self.collection.layer, self.collection.sharing)
        hidden = masked_fields(self.collection.personal, acc)
        return {k: v for k, v in self.get_fields().items() if k not in hidden}

    # ------------------------------------------------------------ access

    def _require(self, need: str):
        """security.require, its refusal as pygeoapi's errors (401 / 403)."""
        principal = current_principal.get()
        try:
            return principal, require(principal, self.collection.layer, self.collection.sharing,
                                      need)
        except AuthError as e:
            raise Unauthorized(user_msg=str(e)) from None
        except AccessDenied as e:
            raise Forbidden(user_msg=str(e)) from None

    def _access(self):
        if self.kind == catalog.AGGREGATE:  # public aggregate by design
            principal = current_principal.get()
            return principal, access(principal, self.collection.layer, self.collection.sharing)
        return self._require(READ)

    # ------------------------------------------------------------- query

    def query(self, offset=0, limit=10, resulttype="results", bbox=[], datetime_=None,
              properties=[], sortby=[], select_properties=[], skip_geometry=False, q=None,
              filterq=None, crs_transform_spec=None, **kwargs):
        principal, acc = self._access()
        # pygeoapi reads `limit=true` as True, an int to Python (a 500 from the database)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 0 <= limit <= MAX_LIMIT:
            raise ProviderInvalidQueryError(user_msg=f"limit must be 0..{MAX_LIMIT}")
        props = list(properties or [])
        known_at = cursor = None
        for k, v in list(props):
            if k == "token":  # credentials (read by the app's middleware), not a filter
                props.remove((k, v))
            elif k == KNOWN_AT:
                known_at = parse_datetime(v)
                if isinstance(known_at, tuple):
                    raise ProviderInvalidQueryError(user_msg="known_at is an instant")
                props.remove((k, v))
            elif k == CURSOR:
                if sortby:
                    raise ProviderInvalidQueryError(
                        user_msg="cursor pages follow the default order: drop sortby or cursor")
                cursor = decode_cursor(str(v), self.kind == catalog.HISTORY)
                props.remove((k, v))
        if self.kind == catalog.AGGREGATE:
            if filterq is not None:  # was silently ignored: every cell matched any filter
                raise ProviderInvalidQueryError(
                    user_msg=f"{self.collection.id} takes no CQL2 filter (datetime=, bbox=)")
            return self._aggregate(datetime_, bbox, offset, limit, resulttype, skip_geometry,
                                   crs_transform_spec)
        when = parse_datetime(datetime_)
        try:
            where, distinct = self._where(acc, bbox, when, props, filterq, known_at)
            order = self._order(acc, sortby)
        except (FilterError, MaskedFieldInput) as e:
            raise ProviderInvalidQueryError(user_msg=str(e)) from None
        select = self._feature_json(select_properties, skip_geometry, crs_transform_spec, acc)
        base = sql.SQL("from {vt} v where {where}").format(
            vt=sql.Identifier(SCHEMA, self.spec.version_table), where=where)
        if distinct:  # an interval: one item per fid, its latest version in the window
            inner = sql.SQL("select distinct on (v.fid) v.* {base} order by v.fid, lower(v.valid) desc"
                            ).format(base=base)
            base = sql.SQL("from ({inner}) v where true").format(inner=inner)
        # Pages in the default order continue from the last row's key (`cursor`, in the
        # `next` link): an index range read, where an offset reads and drops every row it
        # skips (persons at city size, offset=100000: 1.3 s against 0.4 s for the first page)
        keyset = not sortby
        page = base
        if cursor is not None:
            page = sql.SQL("{} and {} > {}").format(
                base, sql.SQL("v.vid" if self.kind == catalog.HISTORY else "(v.fid, v.vid)"),
                sql.Literal(cursor[0]) if len(cursor) == 1 else sql.SQL("({}, {})").format(
                    *map(sql.Literal, cursor)))
        skip = sql.SQL("") if cursor is not None else sql.SQL(" offset {}").format(
            sql.Literal(offset))
        try:
            with connection() as conn:
                rows = []
                if resulttype != "hits" and limit > 0:
                    # the page's rows first, then their GeoJSON: built over the sorted rows,
                    # it was built for every row the offset skips too (persons at city size,
                    # offset=100000: 7 s against 0.8 s for the first page)
                    rows = conn.execute(sql.SQL(
                        "select {select}, v.fid, v.vid from (select v.* {page} order by {order}"
                        " limit {limit}{skip}) v order by {order}"
                    ).format(select=select, page=page, order=order, limit=sql.Literal(limit),
                             skip=skip)).fetchall()
                feats = [r[0] for r in rows]
                if 0 < len(feats) < limit or (offset == 0 and len(feats) < limit):
                    matched = offset + len(feats)  # a short page is the last one: no count
                else:
                    matched = conn.execute(sql.SQL("select count(*) {}").format(base)).fetchone()[0]
                self._audit(conn, principal, acc, READ_PERSONAL_ACTION, len(feats))
        except (FilterError, CRSError) as e:
            raise ProviderInvalidQueryError(user_msg=str(e)) from None
        except ProviderGenericError:
            raise
        except psycopg.errors.DataError as e:  # a NUL byte, a bad timestamp, a huge offset
            raise ProviderInvalidQueryError(
                user_msg=f"a parameter value the database cannot take: {e.diag.message_primary or e}"
            ) from None
        except Exception as e:  # an unexpected database error: a JSON 500, not a traceback
            raise ProviderConnectionError(user_msg=f"database error: {type(e).__name__}") from e
        out = {"type": "FeatureCollection", "features": feats,
               "numberMatched": matched, "numberReturned": len(feats)}
        if keyset and len(feats) == limit and matched > offset + limit:
            last = (rows[-1][2],) if self.kind == catalog.HISTORY else tuple(rows[-1][1:])
            out["links"] = self._page_links(offset, limit, encode_cursor(last))
        return out

    def _page_links(self, offset: int, limit: int, cursor: str) -> list[dict]:
        """`next` (from the cursor) and `prev` links as pygeoapi would write them, which it
        leaves to a provider that gives a `next` link."""
        request = ITEMS_REQUEST.get()
        if request is None:
            return []
        collections_url, params = request
        rest = [(k, v) for k, v in params.items() if k not in ("offset", CURSOR)]
        uri = f"{collections_url}/{self.collection.id}/items"
        links = [{"type": "application/geo+json", "rel": "next", "title": "Items (next)",
                  "href": f"{uri}?" + urllib.parse.urlencode(
                      [*rest, ("offset", offset + limit), (CURSOR, cursor)])}]
        if offset > 0:
            links.append({"type": "application/geo+json", "rel": "prev", "title": "Items (prev)",
                          "href": f"{uri}?" + urllib.parse.urlencode(
                              [*rest, ("offset", max(0, offset - limit))])})
        return links

    def get(self, identifier, **kwargs):
        principal, acc = self._access()
        if self.kind == catalog.AGGREGATE:
            res = self._aggregate(None, [], 0, 10_000, "results", False,
                                  kwargs.get("crs_transform_spec"))
            for f in res["features"]:
                if f["id"] == identifier:
                    return f
            raise ProviderItemNotFoundError(user_msg=f"no {identifier}")
        select = self._feature_json([], False, kwargs.get("crs_transform_spec"), acc)
        if self.kind == catalog.HISTORY:
            try:
                vid = int(identifier)
            except ValueError:
                raise ProviderItemNotFoundError(user_msg=f"no version {identifier}") from None
            cond = sql.SQL("v.vid = {}").format(sql.Literal(vid))
        else:
            cond = sql.SQL("v.fid = {} and upper_inf(v.recorded) and "
                           + contains_sql("v.valid", "now()")).format(
                sql.Literal(str(identifier)))
        with connection() as conn:
            row = conn.execute(sql.SQL("select {} from {} v where {} limit 1").format(
                select, sql.Identifier(SCHEMA, self.spec.version_table), cond)).fetchone()
            if row is None:
                raise ProviderItemNotFoundError(user_msg=f"no {self.collection.id} item {identifier}")
            self._audit(conn, principal, acc, READ_PERSONAL_ACTION, 1, item=str(identifier))
        return row[0]

    # ----------------------------------------------------------- helpers

    def _audit(self, conn, principal, acc, action, count, **detail):
        if acc.unmask and self.collection.personal and count:
            audit(conn, principal, self.collection.layer, action,
                  {"collection": self.collection.id, "features": count, **detail})
            conn.commit()

    def _where(self, acc, bbox, when, props, filterq, known_at):
        parts: list[sql.Composable] = []
        if known_at is None:
            parts.append(sql.SQL("upper_inf(v.recorded)"))
        else:
            parts.append(sql.SQL(contains_sql("v.recorded", "{0}::timestamptz")).format(
                sql.Literal(known_at)))
        distinct = False
        if isinstance(when, tuple):
            parts.append(sql.SQL("v.valid && tstzrange({}, {}, '[]')").format(
                sql.Literal(when[0]), sql.Literal(when[1])))
            distinct = self.kind == catalog.SNAPSHOT
        elif when is not None:
            parts.append(sql.SQL(contains_sql("v.valid", "{0}::timestamptz")).format(
                sql.Literal(when)))
        elif self.kind == catalog.SNAPSHOT:
            parts.append(sql.SQL(contains_sql("v.valid", "now()")))
        if bbox:
            # intersects (as OGC API Features asks), not just bounding boxes overlapping
            parts.append(sql.SQL("st_intersects(v.geom, {})").format(envelope(bbox)))
        column = functools.partial(self._input_column, acc)
        for k, v in props:
            parts.append(sql.SQL("{}::text = {}").format(column(k), sql.Literal(str(v))))
            if k == self.collection.fid_attribute:  # one object: its versions by the key
                parts.append(sql.SQL("v.fid = {}").format(sql.Literal(str(v))))
        if filterq is not None:
            try:
                parts.append(to_sql(filterq, column, sql.SQL("v.geom")))
            except FilterError as e:
                raise FilterError(f"filter: {e}") from None
        return sql.SQL(" and ").join(parts), distinct

    def _order(self, acc, sortby) -> sql.Composable:
        terms = []
        for s in sortby or []:
            terms.append(sql.SQL("{} {}").format(self._input_column(acc, s["property"]),
                                                 sql.SQL("desc" if s["order"] == "-" else "asc")))
        terms.append(sql.SQL("v.vid" if self.kind == catalog.HISTORY else "v.fid, v.vid"))
        return sql.SQL(", ").join(terms)

    def _geometry_sql(self, crs_transform_spec, column="v.geom") -> sql.Composable:
        geom = sql.SQL(column)
        # pygeoapi passes no spec when the asked CRS is the storage CRS (EPSG:4490, whose
        # axis order is lat, lon); without a `crs` parameter it asks for CRS84.
        uri = crs_transform_spec.target_crs_uri if crs_transform_spec else "EPSG:4490"
        try:
            target = resolve_crs(uri)
        except CRSError as e:
            raise ProviderInvalidQueryError(user_msg=str(e)) from None
        if target.srid not in (None, 4490, 4326):
            geom = sql.SQL("st_transform({}, {})").format(geom, sql.Literal(target.srid))
        if target.latlon_axis_order:  # EPSG order: lat, lon (or northing, easting)
            geom = sql.SQL("st_flipcoordinates({})").format(geom)
        return geom

    def _feature_json(self, select_properties, skip_geometry, crs_transform_spec, acc):
        names = [a.name for a in self.spec.attributes]
        if select_properties:
            unknown = set(select_properties) - set(self.get_fields())
            if unknown:
                raise ProviderInvalidQueryError(user_msg=f"unknown properties {sorted(unknown)}")
        pairs: list[sql.Composable] = []

        def add(name: str, expr: sql.Composable):
            if not select_properties or name in select_properties:
                pairs.append(sql.SQL("{}, {}").format(sql.Literal(name), expr))

        if self.kind == catalog.HISTORY:
            add("fid", sql.SQL("v.fid"))
        else:
            add("vid", sql.SQL("v.vid"))
        add("valid_from", sql.SQL("lower(v.valid)"))
        add("valid_to", sql.SQL("upper(v.valid)"))
        if self.kind == catalog.HISTORY:
            add("recorded_from", sql.SQL("lower(v.recorded)"))
            add("recorded_to", sql.SQL("upper(v.recorded)"))
        for n in names:
            col = sql.SQL("v.{}").format(sql.Identifier(n))
            if n in self.collection.personal and not acc.unmask:
                col = sql.SQL(mask_sql(self.collection.personal[n])).format(c=col)
            add(n, col)
        # json (not jsonb) keeps the properties in schema order; 100 arguments at most
        assert len(pairs) <= 50, "json_build_object takes 100 arguments"
        props = sql.SQL("json_build_object({})").format(sql.SQL(", ").join(pairs))
        geom = sql.SQL("null") if skip_geometry else sql.SQL("st_asgeojson({}, 9, 0)::json").format(
            self._geometry_sql(crs_transform_spec))
        ident = sql.SQL("v.vid" if self.kind == catalog.HISTORY else "v.fid")
        return sql.SQL("json_build_object('type', 'Feature', 'id', {}, 'geometry', {},"
                       " 'properties', {})").format(ident, geom, props)

    def _aggregate(self, datetime_, bbox, offset, limit, resulttype, skip_geometry,
                   crs_transform_spec):
        when = parse_datetime(datetime_)
        if isinstance(when, tuple):
            raise ProviderInvalidQueryError(user_msg="population-grid takes an instant datetime")
        level = self.collection.spec.extra.get("level", "grid")
        fn = "population_by_grid" if level == "grid" else "population_by_area"
        geom = sql.SQL("null") if skip_geometry else sql.SQL("st_asgeojson({}, 9, 0)::jsonb").format(
            self._geometry_sql(crs_transform_spec, "a.geom"))
        # cells in view only: the function filters them before joining residents
        env = envelope(bbox) if bbox else sql.SQL("null")
        with connection() as conn:
            rows = conn.execute(sql.SQL(
                "select jsonb_build_object('type', 'Feature', 'id', a.code, 'geometry', {geom},"
                " 'properties', jsonb_build_object('code', a.code, 'name', a.name, 'total', a.total,"
                " 'registered', a.registered, 'floating', a.floating)), count(*) over ()"
                " from city.{fn}(coalesce({at}::timestamptz, now()), {env}::geometry) a"
                " order by a.code limit {limit} offset {offset}").format(
                geom=geom, fn=sql.Identifier(fn), at=sql.Literal(when), env=env,
                limit=sql.Literal(limit), offset=sql.Literal(offset))).fetchall()
        feats = [r[0] for r in rows] if resulttype != "hits" else []
        matched = rows[0][1] if rows else 0
        return {"type": "FeatureCollection", "features": feats, "numberMatched": matched,
                "numberReturned": len(feats)}

    # ------------------------------------------------------- transactions

    def authorize_write(self):
        """401/403 unless the caller may write here (asked before a body is read)."""
        return self._writer()

    def _writer(self):
        if self.collection.prepare is None:
            raise Forbidden(user_msg=f"{self.collection.id} is read-only")
        return self._require(WRITE)[0]

    def _feature_in(self, data):
        """A GeoJSON Feature body -> (fid, Feature). `valid_from` in the properties says
        when the change happened in the city (default: now)."""
        import shapely.errors
        import shapely.geometry

        from gisplatform.temporal import Feature

        try:
            doc = json.loads(data)
            if doc.get("type") != "Feature":
                raise ValueError("the body must be a GeoJSON Feature")
            props = dict(doc.get("properties") or {})
            valid_from = props.pop("valid_from", None)
            for k in ("vid", "valid_to"):
                props.pop(k, None)
            geom = shapely.geometry.shape(doc["geometry"]) if doc.get("geometry") else None
            if geom is None:
                raise ValueError("the feature has no geometry")
            # writes stay strict: a zone is required
            vf = parse_instant(valid_from) if valid_from else None
            fid, props, geom = self.collection.prepare(props, geom)
        except (ValueError, TypeError, KeyError, AttributeError, TemporalError,
                shapely.errors.ShapelyError) as e:  # e.g. an unknown geometry type (a 500 before)
            raise ProviderInvalidQueryError(user_msg=f"{self.collection.id}: {e}") from None
        return fid, Feature(fid, geom, props, valid_from=vf)

    def _write(self, action: str, fid: str, op):
        principal = self._writer()
        from gisplatform.security import WRITE_ACTION
        from gisplatform.temporal import (
            OverlapError,
            RetiredFeatureError,
            UnknownFeatureError,
        )

        store = TemporalStore(self.spec)
        try:
            with connection() as conn:
                with conn.transaction():
                    op(store, conn)
                    audit(conn, principal, self.collection.layer, WRITE_ACTION,
                          {"collection": self.collection.id, "action": action, "fid": fid})
        except (UnknownFeatureError, RetiredFeatureError) as e:
            raise ProviderItemNotFoundError(user_msg=str(e)) from None
        except OverlapError as e:
            raise Conflict(user_msg=f"{fid} already exists at that time ({e})") from None
        except TemporalError as e:
            raise ProviderInvalidQueryError(user_msg=str(e)) from None

    def _workflow_owned(self, what: str):
        """409 for a create or retire on a layer whose lifecycle its workflow writes."""
        wf = self.collection.workflow
        if wf is not None:
            self._writer()  # 401/403 first, as for every write
            raise Conflict(user_msg=f"{self.collection.id}: {what} through {wf.path}, "
                                    "not OGC transactions")

    def _check_workflow_fields(self, feature, conn, store):
        """409 when an update changes a field the layer's workflow owns (its status,
        deadline …): the workflow alone writes those, so the evaluation can trust them."""
        wf = self.collection.workflow
        if wf is None:
            return
        cur = store.current(conn, feature.fid)
        if cur is None:
            return  # the store's own error (404) follows
        changed = sorted(f for f in wf.fields if feature.properties.get(f) != cur.get(f))
        if changed:
            raise Conflict(user_msg=f"{self.collection.id}: {', '.join(changed)} "
                                    f"change only through {wf.path}")

    def create(self, data):
        self._workflow_owned("new items are made")
        fid, feature = self._feature_in(data)
        self._write("create", fid, lambda store, conn: store.insert(conn, [feature]))
        return fid

    def update(self, identifier, data):
        fid, feature = self._feature_in(data)
        if fid != str(identifier):
            raise ProviderInvalidQueryError(
                user_msg=f"the body describes {fid}, not {identifier}: ids are not changed by update")

        def replace(store, conn):
            self._check_workflow_fields(feature, conn, store)
            store.update(conn, [feature])
        self._write("replace", fid, replace)
        return True

    def patch(self, identifier, data):
        """Part 4 update (PATCH): the given properties (and geometry) over the current
        version, checked whole, as a new version from `valid_from` (default now)."""
        self._writer()
        try:
            doc = json.loads(data)
        except ValueError:
            raise ProviderInvalidQueryError(user_msg="the body must be JSON") from None
        if not isinstance(doc, dict):
            raise ProviderInvalidQueryError(user_msg="the body must be a (partial) GeoJSON Feature")
        with connection() as conn:
            cur = TemporalStore(self.spec).current(conn, str(identifier))
        if cur is None or cur["valid_to"] is not None:
            raise ProviderItemNotFoundError(user_msg=f"no current {self.collection.id} item {identifier}")
        props = {a: cur[a] for a in self.spec.attribute_names}
        props = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in props.items()}
        props.update((doc.get("properties") or {}))
        merged = {"type": "Feature", "geometry": doc.get("geometry") or cur["geometry"],
                  "properties": props}
        return self.update(identifier, json.dumps(merged, default=str))

    def delete(self, identifier):
        self._workflow_owned("items end")
        # delete = retire: the object ends now, its history stays
        self._write("retire", str(identifier),
                    lambda store, conn: store.retire(conn, [str(identifier)]))
        return True

    def __repr__(self):
        return f"<TemporalProvider {self.collection.id}>"
