"""The MapServer mapfile for one view of the layers: what a class of callers may read.

A view is the set of layers a caller reads and, per layer, how its personal columns come
out (`Column.sql`): absent for anonymous callers (the public view has no personal column
at all), masked by the security kernel's SQL twins (MASK_SQL) for a token that reads
without unmasking, plain for read_personal. The map server cannot read what the view does
not select: the SQL is the platform's, with the time as two runtime-substituted
parameters the front door (ows.py) normalises and MapServer validates again.

Time: each layer's DATA is the snapshot predicate of the temporal store, spelled out as
temporal.contains_sql is (the same plan), over an interval: `datetime` (an instant T is
the interval T/T, so "alive in [T, T]" is "valid @> T") and `known_at` (transaction time;
'infinity' = current knowledge, which is `upper_inf(recorded)`).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict, make_conninfo

__all__ = ["Column", "OwsLayer", "RasterLayer", "View", "write_mapfile", "write_config",
           "INSTANT_RE", "SRS", "STORAGE_SRS", "scale_at_zoom"]

STORAGE_SRS = "EPSG:4490"
# the storage CRS, WGS 84, Web Mercator, and the city's CGCS2000 Gauss-Krüger zones
# (3-degree zone 41 and central meridian 123°E, with and without the zone prefix)
SRS = ("EPSG:4490", "EPSG:4326", "EPSG:3857", "EPSG:4529", "EPSG:4550", "EPSG:4530",
       "EPSG:4551", "CRS:84")
# what the front door forwards: an ISO UTC instant, or the open ends
INSTANT_RE = (r"^(-infinity|infinity|[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
              r"(\.[0-9]{1,6})?Z)$")
MAX_SIZE = 4096
FALLBACK_FONTS = ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
                  "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


@dataclass(frozen=True)
class Column:
    name: str
    sql: str  # the expression selected under `name` (a column, or its mask)
    type: str = "text"


@dataclass(frozen=True)
class OwsLayer:
    name: str
    title: str
    geometry_type: str
    version_table: str
    columns: tuple[Column, ...]
    color: str = "#3388ff"
    label: str | None = None
    detail_zoom: int = 12
    abstract: str = ""


@dataclass(frozen=True)
class RasterLayer:
    name: str  # "ortho"
    title: str
    directory: str  # the registered COGs' directory
    file: str  # the COG shown (the one of the request's instant)
    bounds: tuple[float, float, float, float]


@dataclass(frozen=True)
class View:
    layers: tuple[OwsLayer, ...]
    rasters: tuple[RasterLayer, ...] = ()
    extent: tuple[float, float, float, float] = (-180.0, -90.0, 180.0, 90.0)
    time_extent: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)


def _s(text: object) -> str:
    """A mapfile string literal: double-quoted, with no way out of the quotes."""
    text = re.sub(r"[\x00-\x1f]", " ", str(text))
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _q(ident: str) -> str:
    return '"' + ident.replace('"', '""') + '"'


def _rgb(color: str) -> str:
    m = re.fullmatch(r"#?([0-9a-fA-F]{6})", color or "")
    h = m.group(1) if m else "3388ff"
    return " ".join(str(int(h[i:i + 2], 16)) for i in (0, 2, 4))


def _fonts() -> str:
    """The fontset names a label is written in: the label font, then the Latin fallback."""
    return "label,latin" if any(Path(f).is_file() for f in FALLBACK_FONTS) else "label"


def scale_at_zoom(z: float) -> float:
    """The scale denominator of WebMercatorQuad zoom z (OGC's 0.28 mm pixel)."""
    return 559082264.0287178 / 2 ** z


def _contains(column: str, lo: str, hi: str) -> str:
    """`column` overlaps [lo, hi] (instants as substituted text), spelled out like
    temporal.contains_sql: for lo = hi this is `column @> lo`."""
    return (f"lower({column}) <= {hi} and (upper_inf({column}) or upper({column}) > {lo})")


_AT = "'%datetime%'"
_FROM = f"(split_part({_AT}, '/', 1))::timestamptz"
_TO = f"(coalesce(nullif(split_part({_AT}, '/', 2), ''), split_part({_AT}, '/', 1)))::timestamptz"
_KNOWN = "('%known_at%')::timestamptz"


def data_sql(layer: OwsLayer) -> str:
    cols = "".join(f", {c.sql} as {_q(c.name)}" for c in layer.columns)
    return (f"geom from (select v.vid, v.fid, lower(v.valid)::text as valid_from,"
            f" upper(v.valid)::text as valid_to{cols}, v.geom"
            f" from city.{_q(layer.version_table)} v"
            f" where {_contains('v.valid', _FROM, _TO)}"
            f" and {_contains('v.recorded', _KNOWN, _KNOWN)}) as t"
            f" using unique vid using srid=4490")


_KIND = {"Point": "POINT", "LineString": "LINE", "Polygon": "POLYGON"}


def _layer(layer: OwsLayer, connection: str, time_extent: str | None) -> str:
    kind = next((v for k, v in _KIND.items() if k in layer.geometry_type), "POLYGON")
    items = ",".join(["fid", "valid_from", "valid_to"] + [c.name for c in layer.columns])
    if kind == "POLYGON":
        style = (f"STYLE COLOR {_rgb(layer.color)} OPACITY 35 END "
                 f"STYLE OUTLINECOLOR {_rgb(layer.color)} WIDTH 1 END")
    elif kind == "LINE":
        style = f"STYLE COLOR {_rgb(layer.color)} WIDTH 2 END"
    else:
        style = (f"STYLE SYMBOL \"circle\" SIZE 7 COLOR {_rgb(layer.color)}"
                 f" OUTLINECOLOR 255 255 255 WIDTH 0.5 END")
    label = ""
    if layer.label and any(c.name == layer.label for c in layer.columns):
        follow = "ANGLE FOLLOW" if kind == "LINE" else ("POSITION lc" if kind == "POINT" else "")
        label = (f"LABEL TYPE TRUETYPE FONT \"{_fonts()}\" SIZE 9 COLOR 51 51 51 "
                 f"OUTLINECOLOR 255 255 255 OUTLINEWIDTH 2 {follow} "
                 f"MAXSCALEDENOM {scale_at_zoom(layer.detail_zoom):.0f} PARTIALS FALSE END")
    time_meta = ""
    if time_extent:
        # no wms_timedefault: with one, MapServer filters on its own (the front door strips
        # TIME, so its filter would be the only one it applies); the extent advertises
        time_meta = f'"wms_timeitem" "valid_from" "wms_timeextent" {_s(time_extent)}'
    return f"""
  LAYER
    NAME {_s(layer.name)}
    TYPE {kind}
    STATUS ON
    CONNECTIONTYPE POSTGIS
    CONNECTION {_s(connection)}
    PROCESSING "CLOSE_CONNECTION=DEFER"
    DATA {_s(data_sql(layer))}
    {"LABELITEM " + _s(layer.label) if label else ""}
    TEMPLATE "query"  # MapServer answers GetFeatureInfo only for layers with a template
    TOLERANCE {5 if kind != "POLYGON" else 0}
    TOLERANCEUNITS pixels
    PROJECTION "init=epsg:4490" END
    VALIDATION
      "datetime" "^(now|-?infinity|[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}T[0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}}([.][0-9]{{1,6}})?Z)(/(now|infinity|[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}T[0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}}([.][0-9]{{1,6}})?Z))?$"
      "default_datetime" "now"
      "known_at" "^(infinity|[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}T[0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}}([.][0-9]{{1,6}})?Z)$"
      "default_known_at" "infinity"
    END
    METADATA
      "ows_title" {_s(layer.title)}
      "ows_abstract" {_s(layer.abstract)}
      "ows_srs" {_s(" ".join(SRS))}
      "gml_include_items" {_s(items)}
      "gml_featureid" "fid"
      "gml_geometries" "geom"
      "gml_geom_type" {_s(kind.lower() if kind != "POINT" else "point")}
      "gml_types" "auto"
      "wfs_getfeature_formatlist" "geojson"
      "wms_include_items" {_s(items)}
      {time_meta}
    END
    CLASS
      NAME {_s(layer.title)}
      {style}
      {label}
    END
  END"""


def _raster(r: RasterLayer) -> str:
    w, s, e, n = r.bounds
    return f"""
  LAYER
    NAME {_s(r.name)}
    TYPE RASTER
    STATUS ON
    DATA {_s(r.file)}
    PROJECTION "init=epsg:3857" END
    PROCESSING "RESAMPLE=BILINEAR"
    METADATA
      "ows_title" {_s(r.title)}
      "ows_srs" {_s(" ".join(SRS))}
      "wms_extent" "{w} {s} {e} {n}"
      "wms_srs" {_s(" ".join(SRS))}
    END
  END"""


def write_mapfile(directory: Path, view: View, database_url: str, public_url: str,
                  font: Path | None) -> Path:
    """The view's mapfile in `directory` (0600: it holds the connection), named by its
    content and written atomically, once."""
    directory.mkdir(parents=True, exist_ok=True)
    params = conninfo_to_dict(database_url)
    params.update(options="-c default_transaction_read_only=on -c statement_timeout=60000",
                  application_name="gisplatform-mapserver")
    connection = make_conninfo(**params)
    fontset = directory / "fonts.txt"
    if font is not None:
        # the label font (Chinese) first; a font with Latin digits behind it, where there is
        # one (Droid Sans Fallback has no "1": 永安1路 came out 永安□路)
        latin = next((f for f in FALLBACK_FONTS if Path(f).is_file()), None)
        lines = f"label {font}\n" + (f"latin {latin}\n" if latin else "")
        if not fontset.exists() or fontset.read_text() != lines:
            fontset.write_text(lines)
    w, s, e, n = view.extent
    rasters = "".join(_raster(r) for r in view.rasters)
    shapepath = view.rasters[0].directory if view.rasters else str(directory)
    text = f"""MAP
  NAME "gisplatform"
  EXTENT {w} {s} {e} {n}
  SIZE 512 512
  MAXSIZE {MAX_SIZE}
  UNITS DD
  IMAGECOLOR 255 255 255
  SHAPEPATH {_s(shapepath)}
  {"FONTSET " + _s(fontset) if font is not None else ""}
  PROJECTION "init=epsg:4490" END
  SYMBOL NAME "circle" TYPE ELLIPSE FILLED TRUE POINTS 1 1 END END
  OUTPUTFORMAT NAME "png" DRIVER "AGG/PNG" MIMETYPE "image/png" IMAGEMODE RGBA
    EXTENSION "png" FORMATOPTION "GAMMA=0.75" END
  OUTPUTFORMAT NAME "jpeg" DRIVER "AGG/JPEG" MIMETYPE "image/jpeg" IMAGEMODE RGB
    EXTENSION "jpg" FORMATOPTION "QUALITY=85" END
  OUTPUTFORMAT NAME "geojson" DRIVER "OGR/GEOJSON" MIMETYPE "application/json; subtype=geojson"
    FORMATOPTION "STORAGE=stream" FORMATOPTION "FORM=SIMPLE" END
  LEGEND KEYSIZE 20 12 LABEL TYPE TRUETYPE FONT "label" SIZE 9 COLOR 0 0 0 END END
  WEB
    METADATA
      "ows_title" "全时空智慧城市综合信息应用平台 Fushun city platform"
      "ows_abstract" "WMS 1.3.0 and WFS 2.0 of the platform's layers; TIME (or datetime) selects the snapshot, known_at the transaction time"
      "ows_srs" {_s(" ".join(SRS))}
      "ows_encoding" "UTF-8"
      "wms_onlineresource" {_s(public_url + "/wms?")}
      "wfs_onlineresource" {_s(public_url + "/wfs?")}
      "wms_enable_request" "GetCapabilities GetMap GetFeatureInfo GetLegendGraphic"
      "wfs_enable_request" "GetCapabilities DescribeFeatureType GetFeature ListStoredQueries DescribeStoredQueries"
      "wcs_enable_request" "!*"
      "sos_enable_request" "!*"
      "oga_enable_request" "!*"
      "wms_getfeatureinfo_formatlist" "text/plain,application/vnd.ogc.gml,geojson"
      "wms_feature_info_mime_type" "text/plain"
      "wms_allow_getmap_without_styles" "true"
      "wfs_maxfeatures" "10000"
      "wfs_namespace_prefix" "gisplatform"
      "wfs_namespace_uri" {_s(public_url + "/wfs")}
      "wms_bbox_extended" "true"
    END
  END
{"".join(_layer(lr, connection, view.time_extent.get(lr.name)) for lr in view.layers)}
{rasters}
END
"""
    path = directory / f"{hashlib.sha256(text.encode()).hexdigest()[:24]}.map"
    if path.exists():
        return path
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


def write_config(directory: Path) -> Path:
    """MapServer 8's configuration file: mapfiles only from `directory`, no proxying."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "mapserver.conf"
    text = (f"CONFIG\n  ENV\n    MS_MAP_PATTERN {_s('^' + re.escape(str(directory)) + '/[0-9a-f]+[.]map$')}\n"
            f"    MS_MAP_NO_PATH \"1\"\n  END\nEND\n")
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def view_layers(names: Iterable[str], by_name: Mapping[str, OwsLayer]) -> tuple[OwsLayer, ...]:
    return tuple(by_name[n] for n in sorted(names) if n in by_name)
