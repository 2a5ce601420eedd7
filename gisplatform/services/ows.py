"""The front door of /wms and /wfs: a stranger's KVP request checked and rewritten before
MapServer sees it.

Only the parameters listed here reach MapServer, with values this module checked (or
rebuilt): layer names the caller may read, CRSs of the list, a finite, positive BBOX,
sizes up to MAX_SIZE, known formats, no SLD / SLD_BODY (MapServer would fetch a URL), no
`map=`; TIME / datetime / known_at become the normalised `datetime` and `known_at` the
mapfile substitutes (mapfile.py). Every refusal is an OGC exception report, never a 500.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from xml.sax.saxutils import escape

from gisplatform.temporal import TemporalError
from gisplatform.temporal.instants import parse_interval, parse_request_instant

from .mapfile import MAX_SIZE, SRS

__all__ = ["OwsError", "OwsRequest", "parse", "exception_report", "iso"]

IMAGE_FORMATS = ("image/png", "image/jpeg")
INFO_FORMATS = ("text/plain", "application/vnd.ogc.gml", "application/json")
WFS_FORMATS = {  # what a client names → MapServer's name
    "application/gml+xml; version=3.2": "application/gml+xml; version=3.2",
    "text/xml; subtype=gml/3.2.1": "text/xml; subtype=gml/3.2.1",
    "text/xml; subtype=gml/3.2": "text/xml; subtype=gml/3.2.1",
    "gml32": "application/gml+xml; version=3.2",
    "application/json": "geojson", "geojson": "geojson",
    "application/json; subtype=geojson": "geojson",
}
MAX_COUNT = 10000
MAX_FILTER = 64 << 10
_EPSG_URN = re.compile(r"^(?:urn:ogc:def:crs:EPSG:[0-9.]*:|http://www\.opengis\.net/def/crs/"
                       r"EPSG/0/|EPSG:)([0-9]{4,6})$", re.IGNORECASE)
_CRS84 = ("CRS:84", "urn:ogc:def:crs:OGC:1.3:CRS84", "http://www.opengis.net/def/crs/OGC/1.3/CRS84")


class OwsError(Exception):
    """An OGC exception: `code` (the standard's), `locator` (the parameter), HTTP status."""

    def __init__(self, code: str, text: str, locator: str | None = None, status: int = 400):
        super().__init__(text)
        self.code, self.text, self.locator, self.status = code, text, locator, status


def iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class OwsRequest:
    service: str  # WMS | WFS
    request: str
    forward: dict[str, str] = field(default_factory=dict)  # what MapServer gets
    layers: tuple[str, ...] = ()  # every layer the request reads
    returns_attributes: bool = False  # GetFeatureInfo, GetFeature: personal values may leave
    at: datetime | None = None  # the snapshot instant (None = now)
    width: int = 0
    height: int = 0
    format: str = ""


def exception_report(service: str, err: OwsError) -> tuple[str, str]:
    """(body, media type): WMS 1.3.0's ServiceExceptionReport, or OWS 1.1's ExceptionReport
    (WFS 2.0, WMTS 1.0)."""
    text = escape(err.text)
    locator = f' locator="{escape(err.locator, {chr(34): "&quot;"})}"' if err.locator else ""
    if service == "WMS":
        return ('<?xml version="1.0" encoding="UTF-8"?>\n'
                '<ServiceExceptionReport version="1.3.0" xmlns="http://www.opengis.net/ogc" '
                'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation='
                '"http://www.opengis.net/ogc http://schemas.opengis.net/wms/1.3.0/'
                'exceptions_1_3_0.xsd">\n'
                f'  <ServiceException code="{err.code}"{locator}>{text}</ServiceException>\n'
                '</ServiceExceptionReport>\n', "text/xml; charset=UTF-8")
    version = "1.0.0" if service == "WMTS" else "2.0.0"
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<ows:ExceptionReport xmlns:ows="http://www.opengis.net/ows/1.1" version="{version}" '
            'xml:lang="en">\n'
            f'  <ows:Exception exceptionCode="{err.code}"{locator}>\n'
            f'    <ows:ExceptionText>{text}</ows:ExceptionText>\n'
            '  </ows:Exception>\n</ows:ExceptionReport>\n', "application/xml; charset=UTF-8")


def _kvp(query: Mapping[str, str] | list[tuple[str, str]]) -> dict[str, str]:
    """Parameter names are case-insensitive (OGC KVP); the first of a repeated one counts."""
    items = query.items() if isinstance(query, Mapping) else query
    out: dict[str, str] = {}
    for k, v in items:
        out.setdefault(k.upper(), v)
    return out


def _need(p: dict, name: str) -> str:
    v = p.get(name, "").strip()
    if not v:
        raise OwsError("MissingParameterValue", f"{name} is required", name)
    return v


def _int(p: dict, name: str, lo: int, hi: int, default: int | None = None) -> int:
    raw = p.get(name, "").strip()
    if not raw and default is not None:
        return default
    if not re.fullmatch(r"[0-9]{1,9}", raw):
        raise OwsError("InvalidParameterValue" if raw else "MissingParameterValue",
                       f"{name} must be a whole number from {lo} to {hi}", name)
    v = int(raw)
    if not lo <= v <= hi:
        raise OwsError("InvalidParameterValue", f"{name} must be from {lo} to {hi}, not {v}",
                       name)
    return v


def crs_code(value: str) -> str | None:
    """'EPSG:4490', its URN / URL spellings, or CRS:84 → the list's spelling, else None."""
    v = value.strip()
    if v in _CRS84 or v.upper() == "CRS:84":
        return "CRS:84"
    m = _EPSG_URN.match(v)
    code = f"EPSG:{m.group(1)}" if m else None
    return code if code in SRS else None


def _bbox(raw: str, name: str = "BBOX", with_crs: bool = False) -> tuple[list[float], str | None]:
    parts = [s.strip() for s in raw.split(",")]
    crs = None
    if with_crs and len(parts) == 5:
        crs = crs_code(parts.pop())
        if crs is None:
            raise OwsError("InvalidParameterValue", f"{name}'s CRS is not one of {', '.join(SRS)}",
                           name)
    try:
        v = [float(s) for s in parts]
    except ValueError:
        v = []
    if len(v) != 4 or not all(math.isfinite(x) and abs(x) < 1e9 for x in v):
        raise OwsError("InvalidParameterValue", f"{name} must be four finite numbers "
                       "minx,miny,maxx,maxy", name)
    if not (v[0] < v[2] and v[1] < v[3]):
        raise OwsError("InvalidParameterValue", f"{name} must have min < max on both axes", name)
    return v, crs


def _time(p: dict, service: str, interval_ok: bool) -> tuple[str, datetime | None, str]:
    """TIME (or datetime) → the `datetime` MapServer substitutes; known_at → `known_at`."""
    code = "InvalidDimensionValue" if service == "WMS" else "InvalidParameterValue"
    raw = (p.get("TIME") or p.get("DATETIME") or "").strip()
    # the open ends as MapServer's `next` links echo them back
    raw = "/".join(".." if part in ("-infinity", "infinity") else part
                   for part in raw.split("/"))
    at = None
    if not raw or raw.lower() in ("current", "now"):
        when = "now"
    elif "/" in raw:
        if not interval_ok:
            raise OwsError(code, "TIME is one instant here (a map is a snapshot)", "TIME")
        try:
            lo, hi = parse_interval(raw)
        except TemporalError as e:
            raise OwsError(code, f"TIME: {e}", "TIME") from None
        when = f"{iso(lo) if lo else '-infinity'}/{iso(hi) if hi else 'infinity'}"
    else:
        try:
            at = parse_request_instant(raw)
        except TemporalError as e:
            raise OwsError(code, f"TIME: {e}", "TIME") from None
        when = iso(at)
    known_raw = (p.get("KNOWN_AT") or "").strip()
    known = "infinity"
    if known_raw and known_raw != "infinity":
        try:
            known = iso(parse_request_instant(known_raw))
        except TemporalError as e:
            raise OwsError(code, f"known_at: {e}", "known_at") from None
    return when, at, known


def _when(when: str, known: str) -> dict[str, str]:
    """The time parameters MapServer gets, left out at their defaults (the mapfile's
    VALIDATION defaults: now, current knowledge), so WFS `next` links stay short."""
    out = {}
    if when != "now":
        out["datetime"] = when
    if known != "infinity":
        out["known_at"] = known
    return out


def _names(raw: str, name: str, readable) -> tuple[str, ...]:
    out = tuple(s.strip() for s in raw.split(",") if s.strip())
    if not out or len(out) > 50:
        raise OwsError("MissingParameterValue" if not out else "InvalidParameterValue",
                       f"{name} must name 1 to 50 layers", name)
    for n in out:
        readable(n)  # raises for an unknown or unreadable layer
    return out


def _no_sld(p: dict) -> None:
    for k in ("SLD", "SLD_BODY", "MAP", "STYLES_URL"):
        if p.get(k):
            raise OwsError("OperationNotSupported" if k != "MAP" else "InvalidParameterValue",
                           f"{k} is not accepted: styles come from the layer definitions", k)


def _wms(p: dict, req: str, readable) -> OwsRequest:
    version = p.get("VERSION", "1.3.0").strip() or "1.3.0"
    if req == "GETCAPABILITIES":
        return OwsRequest("WMS", "GetCapabilities", {"SERVICE": "WMS", "REQUEST": "GetCapabilities",
                                                     "VERSION": "1.3.0"})
    if version not in ("1.3.0", "1.1.1"):
        raise OwsError("InvalidParameterValue", "VERSION must be 1.3.0 (or 1.1.1)", "VERSION")
    if req == "GETLEGENDGRAPHIC":
        layer = _names(_need(p, "LAYER"), "LAYER", readable)
        fmt = p.get("FORMAT", "image/png").strip()
        if fmt not in IMAGE_FORMATS:
            raise OwsError("InvalidFormat", f"FORMAT must be one of {', '.join(IMAGE_FORMATS)}",
                           "FORMAT")
        return OwsRequest("WMS", "GetLegendGraphic", {
            "SERVICE": "WMS", "VERSION": version, "REQUEST": "GetLegendGraphic",
            "LAYER": layer[0], "FORMAT": fmt, "SLD_VERSION": "1.1.0"}, layer)
    if req not in ("GETMAP", "GETFEATUREINFO"):
        raise OwsError("OperationNotSupported", f"REQUEST={p.get('REQUEST')} is not offered: "
                       "GetCapabilities, GetMap, GetFeatureInfo, GetLegendGraphic", "REQUEST")
    crs_key = "CRS" if version == "1.3.0" else "SRS"
    crs = crs_code(_need(p, crs_key))
    if crs is None:
        raise OwsError("InvalidCRS" if version == "1.3.0" else "InvalidSRS",
                       f"{crs_key} must be one of {', '.join(SRS)}", crs_key)
    bbox, _ = _bbox(_need(p, "BBOX"))
    width = _int(p, "WIDTH", 1, MAX_SIZE)
    height = _int(p, "HEIGHT", 1, MAX_SIZE)
    fmt = _need(p, "FORMAT") if req == "GETMAP" else p.get("FORMAT", "image/png").strip()
    if fmt not in IMAGE_FORMATS:
        raise OwsError("InvalidFormat", f"FORMAT must be one of {', '.join(IMAGE_FORMATS)}",
                       "FORMAT")
    layers = _names(_need(p, "LAYERS"), "LAYERS", readable)
    styles = [s.strip() for s in p.get("STYLES", "").split(",")]
    if any(s not in ("", "default") for s in styles):
        raise OwsError("StyleNotDefined", "each layer has one style, 'default' (or empty)",
                       "STYLES")
    when, at, known = _time(p, "WMS", interval_ok=False)
    fwd = {"SERVICE": "WMS", "VERSION": version, "REQUEST": "GetMap" if req == "GETMAP"
           else "GetFeatureInfo", "LAYERS": ",".join(layers), "STYLES": "",
           crs_key: crs, "BBOX": ",".join(repr(x) for x in bbox), "WIDTH": str(width),
           "HEIGHT": str(height), "FORMAT": fmt, **_when(when, known)}
    transparent = p.get("TRANSPARENT", "FALSE").strip().upper()
    if transparent not in ("TRUE", "FALSE"):
        raise OwsError("InvalidParameterValue", "TRANSPARENT is TRUE or FALSE", "TRANSPARENT")
    fwd["TRANSPARENT"] = transparent
    bg = p.get("BGCOLOR", "").strip()
    if bg:
        if not re.fullmatch(r"0x[0-9A-Fa-f]{6}", bg):
            raise OwsError("InvalidParameterValue", "BGCOLOR is 0xRRGGBB", "BGCOLOR")
        fwd["BGCOLOR"] = bg
    out = OwsRequest("WMS", fwd["REQUEST"], fwd, layers, at=at, width=width, height=height,
                     format=fmt)
    if req == "GETFEATUREINFO":
        query = _names(_need(p, "QUERY_LAYERS"), "QUERY_LAYERS", readable)
        if not set(query) <= set(layers):
            raise OwsError("LayerNotQueryable", "QUERY_LAYERS must be among LAYERS",
                           "QUERY_LAYERS")
        info = p.get("INFO_FORMAT", "text/plain").strip()
        if info not in INFO_FORMATS:
            raise OwsError("InvalidFormat", f"INFO_FORMAT must be one of {', '.join(INFO_FORMATS)}",
                           "INFO_FORMAT")
        i_key, j_key = ("I", "J") if version == "1.3.0" else ("X", "Y")
        fwd.update({"QUERY_LAYERS": ",".join(query),
                    "INFO_FORMAT": "geojson" if info == "application/json" else info,
                    i_key: str(_int(p, i_key, 0, width - 1)),
                    j_key: str(_int(p, j_key, 0, height - 1)),
                    "FEATURE_COUNT": str(_int(p, "FEATURE_COUNT", 1, 50, default=1))})
        out.layers, out.returns_attributes = query, True
    return out


def _wfs(p: dict, req: str, readable, masked) -> OwsRequest:
    base = {"SERVICE": "WFS", "VERSION": "2.0.0"}
    version = p.get("VERSION", "2.0.0").strip() or "2.0.0"
    if req == "GETCAPABILITIES":
        return OwsRequest("WFS", "GetCapabilities", {**base, "REQUEST": "GetCapabilities"})
    if version != "2.0.0":
        raise OwsError("InvalidParameterValue", "VERSION must be 2.0.0", "VERSION")
    if req in ("LISTSTOREDQUERIES", "DESCRIBESTOREDQUERIES"):
        return OwsRequest("WFS", p["REQUEST"], {**base, "REQUEST": "ListStoredQueries"
                                                if req == "LISTSTOREDQUERIES"
                                                else "DescribeStoredQueries"})
    names_raw = p.get("TYPENAMES") or p.get("TYPENAME") or ""
    if req == "DESCRIBEFEATURETYPE":
        fwd = {**base, "REQUEST": "DescribeFeatureType"}
        layers: tuple[str, ...] = ()
        if names_raw.strip():
            layers = _names(_strip_prefix(names_raw), "TYPENAMES", readable)
            fwd["TYPENAMES"] = ",".join(layers)
        return OwsRequest("WFS", "DescribeFeatureType", fwd, layers)
    if req != "GETFEATURE":
        raise OwsError("OperationNotSupported", f"REQUEST={p.get('REQUEST')} is not offered: "
                       "GetCapabilities, DescribeFeatureType, GetFeature, ListStoredQueries",
                       "REQUEST")
    fwd = {**base, "REQUEST": "GetFeature"}
    stored = p.get("STOREDQUERY_ID", "").strip()
    if stored:
        if stored != "urn:ogc:def:query:OGC-WFS::GetFeatureById":
            raise OwsError("InvalidParameterValue", "the one stored query is GetFeatureById",
                           "STOREDQUERY_ID")
        fid = _need(p, "ID")
        layer = fid.split(".", 1)[0]
        layers = _names(layer, "ID", readable)
        fwd.update({"STOREDQUERY_ID": stored, "ID": fid})
    else:
        layers = _names(_strip_prefix(_need(p, "TYPENAMES" if "TYPENAMES" in p else "TYPENAME")),
                        "TYPENAMES", readable)
        fwd["TYPENAMES"] = ",".join(layers)
    result = p.get("RESULTTYPE", "results").strip().lower()
    if result not in ("results", "hits"):
        raise OwsError("InvalidParameterValue", "RESULTTYPE is results or hits", "RESULTTYPE")
    fwd["RESULTTYPE"] = result
    count = p.get("COUNT") or p.get("MAXFEATURES")
    if count:
        fwd["COUNT"] = str(_int({"COUNT": count}, "COUNT", 1, MAX_COUNT))
    if p.get("STARTINDEX"):
        fwd["STARTINDEX"] = str(_int(p, "STARTINDEX", 0, 10**9))
    if p.get("BBOX"):
        box, crs = _bbox(p["BBOX"], with_crs=True)
        fwd["BBOX"] = ",".join(repr(x) for x in box) + (f",{_urn(crs)}" if crs else "")
    if p.get("SRSNAME"):
        crs = crs_code(p["SRSNAME"])
        if crs is None:
            raise OwsError("InvalidParameterValue", f"SRSNAME must be one of {', '.join(SRS)}",
                           "SRSNAME")
        fwd["SRSNAME"] = _urn(crs)
    fmt = p.get("OUTPUTFORMAT", "").strip()
    if fmt:
        if fmt.lower() not in WFS_FORMATS:
            raise OwsError("InvalidParameterValue", "OUTPUTFORMAT must be one of "
                           f"{', '.join(WFS_FORMATS)}", "OUTPUTFORMAT")
        fwd["OUTPUTFORMAT"] = WFS_FORMATS[fmt.lower()]
    for key in ("PROPERTYNAME", "SORTBY", "RESOURCEID", "FILTER"):
        v = p.get(key, "")
        if not v:
            continue
        if len(v) > MAX_FILTER:
            raise OwsError("InvalidParameterValue", f"{key} is longer than 64 KB", key)
        if key == "FILTER" and re.search(r"<!(DOCTYPE|ENTITY)", v, re.IGNORECASE):
            raise OwsError("InvalidParameterValue", "FILTER may not declare a DTD or entities",
                           key)
        for layer in layers:
            for f in masked(layer):
                if re.search(rf"(?<![\w]){re.escape(f)}(?![\w])", v):
                    raise OwsError("InvalidParameterValue", f"{f!r} is a personal field you "
                                   "receive masked: it cannot be filtered, sorted or selected "
                                   f"by without a read_personal grant on {layer}", key)
        fwd[key] = v
    when, at, known = _time(p, "WFS", interval_ok=True)
    fwd.update(_when(when, known))
    return OwsRequest("WFS", "GetFeature", fwd, layers, returns_attributes=True, at=at)


def _strip_prefix(raw: str) -> str:
    """`gisplatform:buildings` → `buildings` (the namespace prefix clients add)."""
    return ",".join(n.split(":", 1)[1] if ":" in n else n for n in raw.split(","))


def _urn(crs: str) -> str:
    return ("urn:ogc:def:crs:OGC:1.3:CRS84" if crs == "CRS:84"
            else f"urn:ogc:def:crs:EPSG::{crs.split(':')[1]}")


def parse(service: str, query, readable, masked=lambda layer: ()) -> OwsRequest:
    """The checked request. `readable(name)` raises OwsError for a layer the caller may not
    read (or that is not there); `masked(name)` lists the fields it receives masked."""
    p = _kvp(query)
    asked = p.get("SERVICE", "").strip().upper()
    if asked and asked != service:
        raise OwsError("InvalidParameterValue", f"SERVICE must be {service} at /{service.lower()}",
                       "SERVICE")
    _no_sld(p)
    req = _need(p, "REQUEST").upper()
    return _wms(p, req, readable) if service == "WMS" else _wfs(p, req, readable, masked)
