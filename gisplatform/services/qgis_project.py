"""A QGIS project of every layer a caller may read: `GET /qgis/project.qgz` and
`gisplatform qgis-project OUT.qgz`.

One group per theme. Each readable layer comes as vector tiles (fast at any scale; those
the web viewer starts with are shown), as its OGC API Features collection and as its
`-history` collection with the temporal controller set on valid_from/valid_to (both
hidden until wanted: they download features); the population aggregates as features (the
grid as tiles too); the orthophoto series as an XYZ basemap at the bottom. Colours and
label fields are the tile sources', which tiles/routes.py draws for MapLibre too. Which
layers: the one access decision (`gisplatform.security.access`), as the tile listing asks.

The XML is written here, in the form QGIS 3.22 writes itself (the platform's Python
cannot import qgis); tests/test_qgis_project.py opens it with Debian's python3-qgis.

Project CRS EPSG:3857: the vector tiles and the orthophoto tiles are WebMercatorQuad
(QGIS 3.22 takes an XYZ vector tile source as that grid), so they draw unwarped; the
features arrive in CRS84 either way and are reprojected on the fly. Distances and areas
are measured on the CGCS2000 ellipsoid.

A token holder's project carries the token as `token=` in every URL: QGIS 3.22 sends it
on every request its OAPIF, vector tile and XYZ providers make (the tests read the
server's request log). Such a file holds a secret: its metadata says so, and it is served
with `Cache-Control: private, no-store`.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gisplatform.api.responses import errors
from gisplatform.ogc import catalog
from gisplatform.security import Principal, access, current_principal, presented_secret

MEDIA_TYPE = "application/zip"  # a .qgz is a zip; no media type is registered for it
FILENAME = "gisplatform.qgz"
QGIS_VERSION = "3.22.0-Białowieża"  # the oldest QGIS this form was checked with
# the viewer's layer tree order and theme names (viewer/src/map2d.js, i18n.js)
THEME_ORDER = ("basemap", "base", "housing", "population", "legal_person", "cctv",
               "city_management", "published")
THEME_TITLES = {"basemap": "底图 Basemap", "base": "基础地理 Base geography",
                "housing": "房屋 Housing", "population": "人口 Population",
                "legal_person": "法人 Legal persons", "cctv": "视频监控 CCTV",
                "city_management": "数字城管 City management",
                "published": "部门发布 Published by departments"}
# the tiles shown on opening, as the viewer starts (viewer/src/map2d.js DEFAULT_ON); and
# every layer of the basemap theme
SHOWN = ("buildings", "legal-persons", "cameras")
# Chinese label fonts an analyst's machine may have (Windows, macOS, Linux), in order
FONTS = ("Microsoft YaHei", "PingFang SC", "Noto Sans CJK SC", "WenQuanYi Micro Hei",
         "Droid Sans Fallback", "Sans Serif")
Z0_SCALE = 559082264.0287178  # scale denominator of WebMercatorQuad zoom 0 (QGIS's)
ORTHO_ID = "orthophoto_basemap"  # QGIS 3.22 replaces layer ids of 10 characters or fewer
ORTHO_ZOOMS = (0, 19)  # coarser than a photo's overviews the server answers empty tiles
# the population choropleth of tiles/routes.py (0 → 2 000 → 20 000 residents)
POPULATION_COLOR = ("ramp_color(create_ramp(map(0, '#fff5f0', 0.1, '#fc9272', 1, '#a50f15')),"
                    " scale_linear(\"total\", 0, 20000, 0, 1))")
CLUSTER = '"count" IS NOT NULL'  # below its detail zoom a tile holds cluster points


@dataclass(frozen=True)
class Sources:
    """What a project is made of (wiring.qgis_sources): the OGC collections, the tile
    sources by name, each collection's theme, the city's bbox (EPSG:4490) and where the
    temporal controller's range starts."""

    collections: Sequence[catalog.Collection]
    tiles: Mapping[str, object]  # name → tiles.sources.TileSource
    themes: Mapping[str, str]  # collection id → theme
    bbox: tuple[float, float, float, float]
    since: datetime


@dataclass(frozen=True)
class _Entry:
    id: str
    name: str
    visible: bool
    element: ET.Element
    order: tuple = ()  # its place in its theme's group


@dataclass(frozen=True)
class Project:
    qgz: bytes  # a zip holding gisplatform.qgs, as QGIS saves a .qgz
    layers: tuple[str, ...]  # the layer ids, top to bottom


def project(sources: Sources, principal: Principal, base_url: str, token: str | None = None,
            now: datetime | None = None) -> Project:
    """Every layer `principal` may read, at `base_url` (the platform's public URL), each
    URL carrying `token` when given."""
    base = base_url.rstrip("/")
    groups: dict[str, list[_Entry]] = {}
    first: dict[str, int] = {}  # a layer's snapshot, history and tiles stay together
    for i, c in enumerate(sources.collections):
        if not access(principal, c.layer, c.sharing).read:
            continue
        look = sources.tiles.get(c.tiles or c.layer)  # colour, label, zooms
        out = groups.setdefault(sources.themes.get(c.id, "published"), [])
        at = (_rank(_geometry(c.spec.geometry_type)), first.setdefault(c.layer, i))
        tile = sources.tiles.get(c.tiles) if c.tiles else None
        if tile is not None and access(principal, tile.name, tile.sharing).read:
            shown = tile.name in SHOWN or tile.theme == "basemap"
            out.append(_placed(_tiles_layer(tile, base, token, shown), (*at, 0)))
        out.append(_placed(_features_layer(c, look, base, token),
                           (*at, 2 if c.kind == catalog.HISTORY else 1)))
    for entries in groups.values():  # points over lines over areas, as drawn
        entries.sort(key=lambda e: e.order)
    ordered = sorted(groups, key=lambda t: (THEME_ORDER.index(t) if t in THEME_ORDER
                                            else len(THEME_ORDER), t))
    ortho = _ortho_layer(base, token)
    xml = _document(sources, [(t, groups[t]) for t in ordered], ortho, token,
                    now or datetime.now(UTC))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("gisplatform.qgs", xml)
    return Project(buf.getvalue(), tuple(e.id for t in ordered for e in groups[t])
                   + (ortho.id,))


# ------------------------------------------------------------------------ the document

def _document(sources: Sources, groups: list[tuple[str, list[_Entry]]], ortho: _Entry,
              token: str | None, now: datetime) -> bytes:
    root = ET.Element("qgis", version=QGIS_VERSION, projectname="gisplatform")
    ET.SubElement(root, "homePath", path="")
    ET.SubElement(root, "title").text = "抚顺市全时空平台 gisplatform"
    ET.SubElement(root, "projectCrs").append(_spatialrefsys("EPSG:3857"))
    tree = ET.SubElement(root, "layer-tree-group")
    for theme, entries in groups:
        g = ET.SubElement(tree, "layer-tree-group", name=THEME_TITLES.get(theme, theme),
                          expanded="1", checked="Qt::Checked")
        for e in entries:
            _tree_layer(g, e)
    _tree_layer(tree, ortho)
    everything = [e for _, entries in groups for e in entries] + [ortho]
    layers = ET.SubElement(root, "projectlayers")
    layers.extend(e.element for e in everything)
    order = ET.SubElement(root, "layerorder")
    for e in everything:
        ET.SubElement(order, "layer", id=e.id)
    props = ET.SubElement(root, "properties")
    _prop(props, "Measure", "Ellipsoid", "QString", "EPSG:1024")  # CGCS2000's
    _prop(props, "SpatialRefSys", "ProjectionsEnabled", "int", "1")
    _prop(props, "Paths", "Absolute", "bool", "false")
    view = ET.SubElement(root, "ProjectViewSettings", UseProjectScales="0", rotation="0")
    ET.SubElement(view, "Scales")
    w, s, e, n = sources.bbox
    for tag in ("DefaultViewExtent", "PresetFullExtent"):  # the city, in its own CRS
        ET.SubElement(view, tag, xmin=str(w), ymin=str(s), xmax=str(e), ymax=str(n)).append(
            _spatialrefsys("EPSG:4490"))
    time = ET.SubElement(root, "ProjectTimeSettings", timeStep="1", timeStepUnit="mon",
                         frameRate="1", cumulativeTemporalRange="0")
    span = ET.SubElement(time, "TemporalRange")
    ET.SubElement(span, "start").text = _utc(sources.since)
    ET.SubElement(span, "end").text = _utc(now)
    meta = ET.SubElement(root, "projectMetadata")
    ET.SubElement(meta, "title").text = "抚顺市全时空平台 gisplatform"
    ET.SubElement(meta, "abstract").text = (
        "Every layer the token may read. Every URL in this file carries that token, a "
        "secret: share the file as you would the token." if token else
        "The platform's public layers (made without a token).")
    ET.SubElement(meta, "creation").text = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    ET.indent(root)
    return (b"<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
            + ET.tostring(root, encoding="utf-8"))


def _placed(e: _Entry, order: tuple) -> _Entry:
    return _Entry(e.id, e.name, e.visible, e.element, order)


def _tree_layer(parent: ET.Element, e: _Entry) -> None:
    ET.SubElement(parent, "layer-tree-layer", id=e.id, name=e.name,
                  source=e.element.findtext("datasource"),
                  providerKey=e.element.findtext("provider"), expanded="0",
                  checked="Qt::Checked" if e.visible else "Qt::Unchecked")


def _prop(props: ET.Element, section: str, key: str, kind: str, value: str) -> None:
    sec = props.find(section)
    if sec is None:
        sec = ET.SubElement(props, section)
    ET.SubElement(sec, key, type=kind).text = value


@cache
def _wkt(authid: str) -> str:
    import pyproj

    return pyproj.CRS(authid).to_wkt("WKT2_2019")  # the form QGIS writes (PROJ's)


def _spatialrefsys(authid: str) -> ET.Element:
    """A CRS as QGIS reads it: by its WKT (an authid alone is not enough for 3.22)."""
    el = ET.Element("spatialrefsys")
    ET.SubElement(el, "wkt").text = _wkt(authid)
    ET.SubElement(el, "authid").text = authid
    return el


def _utc(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------------- the layers

def _maplayer(kind: str, lid: str, name: str, datasource: str, provider: str, crs: str,
              **attrs: str) -> ET.Element:
    el = ET.Element("maplayer", type=kind, **attrs)
    for tag, text in (("id", lid), ("datasource", datasource), ("layername", name)):
        ET.SubElement(el, tag).text = text
    ET.SubElement(el, "srs").append(_spatialrefsys(crs))
    ET.SubElement(el, "provider", **({"encoding": "UTF-8"} if kind == "vector" else {})
                  ).text = provider
    return el


def _with_token(url: str, token: str | None) -> str:
    return f"{url}?token={quote(token, safe='')}" if token else url


def _xyz(url: str, zmin: int, zmax: int, **extra: str) -> str:
    """A QGIS XYZ data source (QgsDataSourceUri's encoded form, as QGIS writes it)."""
    return urlencode({"type": "xyz", "url": url, "zmin": zmin, "zmax": zmax, **extra},
                     safe=":/?", quote_via=quote)


def _features_layer(c: catalog.Collection, look, base: str, token: str | None) -> _Entry:
    """The collection as an OGC API Features layer (hidden: it downloads features);
    a history collection with the temporal controller on valid_from/valid_to."""
    history = c.kind == catalog.HISTORY
    url = _with_token(f"{base}/ogc", token).replace("\\", "\\\\").replace("'", "\\'")
    geometry = _geometry(c.spec.geometry_type)
    detail = getattr(look, "detail_zoom", 0) if c.kind != catalog.AGGREGATE else 0
    attrs = {"geometry": geometry, "wkbType": c.spec.geometry_type, "readOnly": "1",
             "labelsEnabled": "0", "hasScaleBasedVisibilityFlag": "0", "minScale": "0",
             "maxScale": "0"}
    if detail > 0:  # the whole city's features at once is too much: from its detail zoom
        attrs.update(hasScaleBasedVisibilityFlag="1", minScale=f"{_scale(detail - 0.5):.0f}")
    suffix = "历史 history" if history else "OGC API Features"
    lid = f"{c.id}_ogc_features"
    el = _maplayer("vector", lid, f"{c.spec.title} ({suffix})",
                   f"url='{url}' typename='{c.id}'", "OAPIF", "EPSG:4326", **attrs)
    if c.kind == catalog.AGGREGATE or getattr(look, "kind", "") == "population":
        sym = _symbol("fill", "#a50f15", 0.6, outline="#ffffff", fill_expression=POPULATION_COLOR)
    else:
        sym = _geometry_symbol(geometry, getattr(look, "color", "#3388ff"))
    renderer = ET.SubElement(el, "renderer-v2", type="singleSymbol", symbollevels="0",
                             enableorderby="0", forceraster="0", referencescale="-1")
    ET.SubElement(renderer, "symbols").append(_named(sym, "0"))
    label = getattr(look, "label", None)
    if label and c.kind != catalog.AGGREGATE:
        el.set("labelsEnabled", "1")
        ET.SubElement(el, "labeling", type="simple").append(_label_settings(label, geometry))
    ET.SubElement(el, "temporal", enabled="1" if history else "0",
                  mode="2" if history else "0",  # feature start and end from fields
                  startField="valid_from" if history else "",
                  endField="valid_to" if history else "",
                  limitMode="0",  # [start, end): the platform's ranges are half-open
                  accumulate="0", fixedDuration="0", durationField="", durationUnit="min",
                  startExpression="", endExpression="")
    return _Entry(lid, el.findtext("layername"), False, el)


def _tiles_layer(src, base: str, token: str | None, shown: bool) -> _Entry:
    """The tile source as a vector tile layer, its clusters below the detail zoom drawn
    as MapLibre draws them (a circle growing with the count)."""
    url = _with_token(f"{base}/tiles/{src.name}/{{z}}/{{x}}/{{y}}.mvt", token)
    style = _with_token(f"{base}/tiles/style.json", token)  # QGIS: Style → Default
    geometry = _geometry(src.geometry_type)
    lid = f"{src.name}_vector_tiles"
    el = _maplayer("vector-tile", lid, f"{src.title} (矢量瓦片 vector tiles)",
                   _xyz(url, src.minzoom, src.maxzoom, styleUrl=style), "vectortile",
                   "EPSG:3857", hasScaleBasedVisibilityFlag="0",
                   minScale="0", maxScale="0")
    styles = ET.SubElement(ET.SubElement(el, "renderer", type="basic"), "styles")
    if getattr(src, "kind", "layer") == "population":
        _tile_style(styles, src.name, "Polygon", "", _symbol(
            "fill", "#a50f15", 0.6, outline="#ffffff", fill_expression=POPULATION_COLOR))
    else:
        _tile_style(styles, src.name, geometry, '"count" IS NULL' if geometry == "Point" else "",
                    _geometry_symbol(geometry, src.color))
        cluster = _symbol("marker", src.color, 0.7, size_expression=(
            'scale_linear(sqrt("count"), 1, 100, 1.6, 12.7)'))  # 3..24 px radius, in mm
        _tile_style(styles, src.name, "Point", CLUSTER, cluster, name="clusters")
    if src.label:
        labels = ET.SubElement(ET.SubElement(el, "labeling", type="basic"), "styles")
        style_el = ET.SubElement(labels, "style", name="labels", layer=src.name,
                                 geometry=_GEOMETRY_CODE[geometry], enabled="1",
                                 expression='"count" IS NULL',
                                 **{"min-zoom": str(src.detail_zoom), "max-zoom": "-1"})
        style_el.append(_label_settings(src.label, geometry))
    return _Entry(lid, el.findtext("layername"), shown, el)


def _ortho_layer(base: str, token: str | None) -> _Entry:
    """The orthophoto series (the latest photo, /raster/ortho) as an XYZ basemap."""
    url = _with_token(f"{base}/raster/ortho/{{z}}/{{x}}/{{y}}.png", token)
    el = _maplayer("raster", ORTHO_ID, "正射影像 Orthophoto", _xyz(url, *ORTHO_ZOOMS), "wms",
                   "EPSG:3857", hasScaleBasedVisibilityFlag="0", minScale="0", maxScale="0")
    pipe = ET.SubElement(el, "pipe")
    ET.SubElement(pipe, "rasterrenderer", type="singlebandcolordata", band="1", opacity="1",
                  alphaBand="-1")
    ET.SubElement(pipe, "brightnesscontrast", brightness="0", contrast="0", gamma="1")
    return _Entry(ORTHO_ID, el.findtext("layername"), True, el)


def _tile_style(parent: ET.Element, layer: str, geometry: str, expression: str,
                symbol: ET.Element, name: str | None = None) -> None:
    style = ET.SubElement(parent, "style", name=name or geometry.lower(), layer=layer,
                          geometry=_GEOMETRY_CODE[geometry], enabled="1",
                          expression=expression, **{"min-zoom": "-1", "max-zoom": "-1"})
    ET.SubElement(style, "symbols").append(_named(symbol, "0"))


# ------------------------------------------------------------------ symbols and labels

_GEOMETRY_CODE = {"Point": "0", "Line": "1", "Polygon": "2"}  # QgsWkbTypes::GeometryType


def _geometry(geometry_type: str) -> str:
    if "Polygon" in geometry_type:
        return "Polygon"
    return "Line" if "LineString" in geometry_type else "Point"


def _rank(geometry: str) -> int:
    return {"Point": 0, "Line": 1, "Polygon": 2}.get(geometry, 3)


def _scale(zoom: float) -> float:
    return Z0_SCALE / 2 ** zoom


def _rgba(color: str, alpha: float = 1.0) -> str:
    c = color.lstrip("#")
    return f"{int(c[0:2], 16)},{int(c[2:4], 16)},{int(c[4:6], 16)},{round(alpha * 255)}"


def _geometry_symbol(geometry: str, color: str) -> ET.Element:
    """The platform's look (tiles/routes.py): areas filled at 35 % with a line of the
    colour, lines of the colour, points as small circles ringed white."""
    if geometry == "Polygon":
        return _symbol("fill", color, 0.35, outline=color)
    if geometry == "Line":
        return _symbol("line", color)
    return _symbol("marker", color, outline="#ffffff")


def _symbol(kind: str, color: str, alpha: float = 1.0, outline: str | None = None,
            fill_expression: str | None = None, size_expression: str | None = None
            ) -> ET.Element:
    sym = ET.Element("symbol", type=kind, alpha="1", clip_to_extent="1", force_rhr="0")
    if kind == "fill":
        cls, opts = "SimpleFill", {"color": _rgba(color, alpha), "style": "solid",
                                   "outline_color": _rgba(outline or color),
                                   "outline_style": "solid", "outline_width": "0.26",
                                   "outline_width_unit": "MM"}
    elif kind == "line":
        cls, opts = "SimpleLine", {"line_color": _rgba(color, alpha), "line_style": "solid",
                                   "line_width": "0.6", "line_width_unit": "MM",
                                   "capstyle": "round", "joinstyle": "round"}
    else:
        cls, opts = "SimpleMarker", {"name": "circle", "color": _rgba(color, alpha),
                                     "size": "1.6", "size_unit": "MM",
                                     "outline_color": _rgba(outline or color),
                                     "outline_style": "solid" if outline else "no",
                                     "outline_width": "0.15", "outline_width_unit": "MM"}
    layer = ET.SubElement(sym, "layer", {"class": cls, "enabled": "1", "locked": "0",
                                         "pass": "0"})
    layer.append(_options(opts))
    dynamic = {k: v for k, v in (("fillColor", fill_expression), ("size", size_expression))
               if v}
    if dynamic:
        layer.append(_data_defined(dynamic))
    return sym


def _named(symbol: ET.Element, name: str) -> ET.Element:
    symbol.set("name", name)
    return symbol


def _options(values: Mapping[str, str]) -> ET.Element:
    m = ET.Element("Option", type="Map")
    for k, v in values.items():
        ET.SubElement(m, "Option", name=k, type="QString", value=v)
    return m


def _data_defined(expressions: Mapping[str, str]) -> ET.Element:
    """Symbol properties computed per feature (QgsProperty, type 3: an expression)."""
    dd = ET.Element("data_defined_properties")
    m = ET.SubElement(dd, "Option", type="Map")
    ET.SubElement(m, "Option", name="name", type="QString", value="")
    props = ET.SubElement(m, "Option", name="properties", type="Map")
    for key, expr in expressions.items():
        p = ET.SubElement(props, "Option", name=key, type="Map")
        ET.SubElement(p, "Option", name="active", type="bool", value="true")
        ET.SubElement(p, "Option", name="expression", type="QString", value=expr)
        ET.SubElement(p, "Option", name="type", type="int", value="3")
    ET.SubElement(m, "Option", name="type", type="QString", value="collection")
    return dd


def _label_settings(field: str, geometry: str) -> ET.Element:
    """The style's labels (tiles/routes.py _label): dark grey, haloed white; along
    lines, below points."""
    settings = ET.Element("settings", calloutType="simple")
    text = ET.SubElement(settings, "text-style", fieldName=field, isExpression="0",
                         fontFamily=FONTS[0], fontSize="9", fontSizeUnit="Point",
                         textColor="51,51,51,255", textOpacity="1", namedStyle="Regular",
                         fontWeight="50", fontItalic="0", allowHtml="0")
    families = ET.SubElement(text, "families")
    for f in FONTS:
        ET.SubElement(families, "family", name=f)
    ET.SubElement(text, "text-buffer", bufferDraw="1", bufferSize="0.4", bufferSizeUnits="MM",
                  bufferColor="255,255,255,255", bufferOpacity="1", bufferNoFill="1",
                  bufferJoinStyle="128", bufferBlendMode="0")
    # QgsPalLayerSettings::Placement: Curved 3, OverPoint 1, OrderedPositionsAroundPoint 6
    placement = {"Line": "3", "Polygon": "1"}.get(geometry, "6")
    ET.SubElement(settings, "placement", placement=placement, placementFlags="10",
                  dist="0.5", distUnits="MM", predefinedPositionOrder="B,BR,BL,R,L,T,TR,TL",
                  layerType={"Line": "LineGeometry", "Polygon": "PolygonGeometry"}.get(
                      geometry, "PointGeometry"))
    ET.SubElement(settings, "rendering", drawLabels="1", obstacle="1", scaleVisibility="0",
                  upsidedownLabels="0", labelPerPart="0", mergeLines="0")
    return settings


# ------------------------------------------------------------------------------ HTTP

def qgis_router(sources: Callable[[], Sources], public_url: str) -> APIRouter:
    """GET /qgis/project.qgz; `sources()`: what the platform serves now
    (wiring.qgis_sources)."""
    router = APIRouter(tags=["QGIS"])

    @router.get("/qgis/project.qgz", response_class=Response, responses={
        200: {"content": {MEDIA_TYPE: {}},
              "description": "A QGIS project (.qgz) of every layer the caller may read."},
        **errors(401)})
    async def qgis_project(request: Request):
        """A QGIS project of every layer the caller may read (anonymous: the public ones):
        each as OGC API Features and as vector tiles in the platform's colours, the
        `-history` collections with the temporal controller set on valid_from/valid_to,
        the orthophoto as the basemap. With a token, every URL in it carries the token:
        keep the file as you would the token."""
        who = current_principal.get()
        token = None if who.anonymous else presented_secret(
            request.headers.get("authorization"), request.query_params.get("token"))
        made = project(sources(), who, public_url, token)
        return Response(made.qgz, media_type=MEDIA_TYPE, headers={
            "Content-Disposition": f'attachment; filename="{FILENAME}"',
            # a token's project holds the token; anyone's changes with the layers
            "Cache-Control": "private, no-store" if token else "no-cache"})
    return router
