"""`gisplatform import LAYER FILE`: files into a layer as versions, row by row checked.

Reads GeoJSON, GeoPackage, Shapefile (GDAL through pyogrio) and CSV (lon/lat columns,
a WKT column, or an address geocoded against the standard addresses: a match at house-number
level or finer, else the row is rejected with the best candidates). Every row is
converted to the layer's types, validated (codes, geometry, inside the city), then the
good rows are synced in one transaction: a re-import of the same file changes nothing,
a changed row becomes a new version. Bad rows go to a reject file with their reason.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import psycopg
import shapely
from shapely.geometry.base import BaseGeometry

from gisplatform.crs import CRSError, resolve_crs, to_storage, transform_geometry
from gisplatform.security import read_pseudonym_key
from gisplatform.temporal import (
    Feature,
    SyncResult,
    TemporalError,
    TemporalStore,
    parse_instant,
)

from .fushun import CITY_BBOX, in_city
from .registry import Layer

GDAL_SUFFIXES = {".geojson", ".json", ".gpkg", ".shp", ".zip", ".fgb"}


class ImportFailed(Exception):
    """The import cannot start (unreadable file, bad options); nothing was written."""


@dataclass
class Mapping:
    """Optional mapping file (TOML or JSON): {columns = {src = "attribute"}, defaults = {...},
    crs = "EPSG:4549", valid_from_column = "..."}."""
    columns: dict[str, str] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    crs: str | None = None
    valid_from_column: str | None = None

    @classmethod
    def load(cls, path: Path | None) -> Mapping:
        if path is None:
            return cls()
        try:
            raw = (tomllib.loads(path.read_text()) if path.suffix == ".toml"
                   else json.loads(path.read_text()))
        except (OSError, ValueError) as e:
            raise ImportFailed(f"mapping file {path}: {e}") from None
        unknown = set(raw) - {"columns", "defaults", "crs", "valid_from_column"}
        if unknown:
            raise ImportFailed(f"mapping file {path}: unknown keys {sorted(unknown)}")
        return cls(**raw)


@dataclass
class Row:
    number: int  # 1-based, as a person reading the file counts
    geometry: BaseGeometry | None
    fields: dict[str, Any]


@dataclass
class Reject:
    number: int
    fid: str
    reason: str
    fields: dict[str, Any]


@dataclass
class ImportReport:
    layer: str
    read: int = 0
    rejected: list[Reject] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    result: SyncResult | None = None
    dry_run: bool = False

    def summary(self) -> str:
        r = self.result or SyncResult()
        s = (f"{self.layer}: {self.read} rows read, {r.inserted} inserted, {r.updated} updated, "
             f"{r.unchanged} unchanged, {r.retired} retired, {len(self.rejected)} rejected")
        return s + (" (dry run: nothing written)" if self.dry_run else "")


# ----------------------------------------------------------------- reading

def read_rows(path: Path, source_layer: str | None = None) -> tuple[list[Row], str | None]:
    """All rows of the file and the CRS it declares (None if it declares none)."""
    suffix = path.suffix.lower()
    if suffix != ".csv" and suffix not in GDAL_SUFFIXES:
        raise ImportFailed(f"{path}: unsupported format {suffix!r} "
                           "(GeoJSON, GeoPackage, Shapefile, FlatGeobuf, CSV)")
    if not path.exists():
        raise ImportFailed(f"{path}: no such file")
    if suffix == ".csv":
        return _read_csv(path), None
    import pyogrio.raw
    from pyogrio.errors import DataLayerError, DataSourceError
    try:
        # datetimes as strings: GDAL would otherwise drop their UTC offsets
        meta, _, geoms, field_data = pyogrio.raw.read(str(path), layer=source_layer,
                                                      datetime_as_string=True)
    except (DataSourceError, DataLayerError, ValueError) as e:
        raise ImportFailed(f"{path}: cannot read ({str(e).splitlines()[0]})") from None
    names = list(meta["fields"])
    rows = []
    for i in range(len(geoms)):
        wkb = geoms[i]
        try:
            geom = shapely.from_wkb(wkb) if wkb is not None else None
        except shapely.errors.GEOSException:
            geom = None
        fields = {n: _plain(field_data[j][i]) for j, n in enumerate(names)}
        rows.append(Row(i + 1, geom, fields))
    return rows, meta.get("crs")


def _plain(v):
    """numpy scalars and NaN -> Python values / None."""
    if v is None:
        return None
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and v != v:
        return None
    return v


LON = ("lon", "lng", "longitude", "x", "经度")
LAT = ("lat", "latitude", "y", "纬度")
WKT = ("wkt", "geometry", "geom")


def _read_csv(path: Path) -> list[Row]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            raw = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ImportFailed(f"{path}: cannot read CSV ({e})") from None
    rows = []
    for i, rec in enumerate(raw):
        rec = {k.strip(): (v.strip() if isinstance(v, str) else v) for k, v in rec.items() if k}
        rows.append(Row(i + 1, None, rec))
    return rows


def has_coordinates(fields: dict) -> bool:
    names = {k.lower() for k in fields}
    return bool(names & set(WKT)) or bool(names & set(LON) and names & set(LAT))


def csv_geometry(fields: dict, lookup_address: Callable[[str], BaseGeometry]
                 ) -> tuple[BaseGeometry, bool]:
    """The row's geometry and whether it is already in the storage CRS (address match)."""
    lower = {k.lower(): k for k in fields}
    wkt = next((lower[k] for k in WKT if k in lower and fields[lower[k]]), None)
    if wkt:
        try:
            return shapely.from_wkt(fields[wkt]), False
        except shapely.errors.GEOSException:
            raise ValueError(f"{wkt}: not valid WKT") from None
    lon = next((lower[k] for k in LON if k in lower), None)
    lat = next((lower[k] for k in LAT if k in lower), None)
    if lon and lat and fields[lon] not in (None, "") and fields[lat] not in (None, ""):
        try:
            return shapely.Point(float(fields[lon]), float(fields[lat])), False
        except ValueError:
            raise ValueError(f"{lon}/{lat}: not numbers") from None
    addr = fields.get("address") or fields.get("地址")
    if addr:  # geocoded; ValueError (the reject's reason) with the best candidates
        return lookup_address(addr), True
    raise ValueError("no geometry: give lon/lat columns, a wkt column or a standard address")


# -------------------------------------------------------------- converting

def coerce(sql_type: str, value: Any) -> Any:
    """A file value as the attribute's Python type; ValueError says why not."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    t = sql_type.split("(")[0].strip().lower()
    if t == "text":
        return str(value).strip()
    if t in ("integer", "bigint", "smallint"):
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not an integer")
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f"{value!r} is not an integer")
            return int(value)
        try:
            return int(str(value).strip())
        except ValueError:
            raise ValueError(f"{value!r} is not an integer") from None
    if t in ("double precision", "real"):
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{value!r} is not a number") from None
        if f != f or f in (float("inf"), float("-inf")):
            raise ValueError(f"{value!r} is not a finite number")
        return f
    if t == "numeric":
        try:
            d = Decimal(str(value).strip())
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a number") from None
        if not d.is_finite():
            raise ValueError(f"{value!r} is not a finite number")
        return d
    if t == "date":
        if isinstance(value, datetime):
            return value.date()
        if isinstance(value, date):
            return value
        try:
            return date.fromisoformat(str(value).strip()[:10])
        except ValueError:
            raise ValueError(f"{value!r} is not a date (YYYY-MM-DD)") from None
    if t == "timestamptz":
        return parse_instant(value if isinstance(value, datetime) else str(value))
    if t == "boolean":
        s = str(value).strip().lower()
        if s in ("1", "true", "t", "yes", "y", "是"):
            return True
        if s in ("0", "false", "f", "no", "n", "否"):
            return False
        raise ValueError(f"{value!r} is not true/false")
    raise ValueError(f"unsupported attribute type {sql_type}")


def _swapped(geom: BaseGeometry) -> bool:
    g = shapely.transform(geom, lambda c: c[:, ::-1])
    return in_city(*g.bounds)


def prepare(layer: Layer, rows: list[Row], to_city: Callable, mapping: Mapping,
            lookup_address: Callable[[str], BaseGeometry],
            valid_from_default: datetime | None, stop_on_first: bool,
            progress: Callable[[int], None] = lambda n: None, fid_key: bytes | None = None,
            ) -> tuple[list[Feature], list[Reject], list[str], dict[str, int]]:
    """Rows -> features ready to store, the rejected rows with their reasons, warnings,
    and the row number of each accepted fid. `fid_key`: the database's pseudonym key, for
    layers whose fid is keyed (Layer.fid_needs_key)."""
    spec, store = layer.spec, TemporalStore(layer.spec)
    attrs = {a.name: a for a in spec.attributes}
    features, rejects, warnings = [], [], []
    seen: dict[str, int] = {}
    ignored = set()
    columns = dict(mapping.columns)
    for src in (rows[0].fields if rows else {}):
        # Shapefile (dBase) cuts field names to 10 characters: building_code -> building_c
        if src not in columns and src not in attrs and len(src) == 10:
            full = [a for a in attrs if a.startswith(src)]
            if len(full) == 1:
                columns[src] = full[0]
                warnings.append(f"column {src} taken as {full[0]} (Shapefile cuts names to 10 characters)")
    for row in rows:
        fid = ""
        try:
            props: dict[str, Any] = dict(mapping.defaults)
            for src, value in row.fields.items():
                dst = columns.get(src, src)
                if dst in attrs:
                    try:
                        props[dst] = coerce(attrs[dst].type, value)
                    except (ValueError, TemporalError) as e:
                        raise ValueError(f"{dst}: {e}") from None
                elif src != mapping.valid_from_column:
                    ignored.add(src)
            vf = valid_from_default
            if mapping.valid_from_column:
                raw_vf = row.fields.get(mapping.valid_from_column)
                vf = parse_instant(raw_vf) if raw_vf not in (None, "") else vf
            for w in layer.validate(props):
                warnings.append(f"row {row.number}: {w}")
            fid = layer.fid_of(props, fid_key)
            if fid in seen:
                raise ValueError(f"duplicate of row {seen[fid]} (same id {fid})")
            geom, stored_crs = row.geometry, False
            if geom is None:
                geom, stored_crs = csv_geometry(row.fields, lookup_address)
            if geom.is_empty:
                raise ValueError("geometry is empty")
            if not stored_crs:
                geom = transform_geometry(geom, to_city)
            if not in_city(*geom.bounds):
                if _swapped(geom):
                    raise ValueError("coordinates are lat,lon: swap the axes (x = longitude)")
                raise ValueError(f"geometry lies outside Fushun {CITY_BBOX} (wrong CRS?)")
            geom = store.check_geometry(fid, geom)
            features.append(Feature(fid, geom, props, valid_from=vf))
            seen[fid] = row.number
        except (ValueError, TemporalError) as e:
            rejects.append(Reject(row.number, fid, str(e), row.fields))
            if stop_on_first:
                break
        finally:
            progress(1)
    if ignored:
        warnings.append(f"columns not in {spec.name}, ignored: {', '.join(sorted(ignored))}")
    return features, rejects, warnings, seen


def address_lookup(conn: psycopg.Connection, at=None) -> Callable[[str], BaseGeometry]:
    """A row's address located by the geocoder (gisplatform/geocode) against the city at
    `at` (the rows' --valid-from; default now): the standard address's point when the best
    candidate is a match (score ≥ MATCH) at house-number level or finer. Otherwise
    ValueError with the best candidates, the reason the row is rejected."""
    from datetime import UTC, datetime

    from gisplatform.geocode import AddressError, Source, Sources, locate
    from gisplatform.security import ANONYMOUS
    from layers import LAYERS

    sources = Sources(*(Source(n, LAYERS[n].sharing) for n in (
        "addresses", "admin-areas", "grid-cells")))
    when = at or datetime.now(UTC)
    cache: dict[str, BaseGeometry | str] = {}

    def lookup(addr: str) -> BaseGeometry:
        if addr not in cache:
            try:
                best = locate(conn, sources, addr, when, ANONYMOUS)
                cache[addr] = shapely.Point(best.lon, best.lat)
            except AddressError as e:
                cache[addr] = str(e)
        got = cache[addr]
        if isinstance(got, str):
            raise ValueError(got)
        return got
    return lookup


def write_rejects(path: Path, rejects: list[Reject]) -> None:
    """The reject file, whole or not at all: written beside `path` and renamed over it,
    so a full disk or a killed import never leaves half a file (OSError says why).
    A device or pipe (/dev/stdout) is written directly."""
    direct = path.exists() and not path.is_file()
    tmp = path if direct else path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["row", "fid", "reason", "fields"])
            for r in rejects:
                w.writerow([r.number, r.fid, r.reason,
                            json.dumps(r.fields, ensure_ascii=False, default=str)])
        if not direct:
            os.replace(tmp, path)
    except OSError:
        if not direct:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
        raise


def run_import(conn: psycopg.Connection, layer: Layer, path: Path, *, crs: str | None = None,
               valid_from: str | None = None, mapping_path: Path | None = None,
               dry_run: bool = False, retire_missing: bool = False, all_or_nothing: bool = False,
               source_layer: str | None = None,
               progress_factory: Callable[[int], Callable[[int], None]] | None = None,
               mapping: Mapping | None = None, read: tuple[list[Row], str | None] | None = None,
               ) -> ImportReport:
    """The whole import. Raises ImportFailed before anything is written when it cannot start.
    `mapping` instead of `mapping_path`, `read` the file's rows and CRS already read
    (read_rows): what `gisplatform layer create` has after inferring the definition."""
    mapping = mapping or Mapping.load(mapping_path)
    try:
        vf = parse_instant(valid_from) if valid_from else None
    except TemporalError as e:
        raise ImportFailed(f"--valid-from: {e}") from None
    rows, file_crs = read or read_rows(path, source_layer)
    crs_text = crs or mapping.crs or file_crs
    if crs_text is None and path.suffix.lower() in (".geojson", ".json"):
        crs_text = "OGC:CRS84"  # RFC 7946
    if crs_text is None and rows and path.suffix.lower() == ".csv" and not has_coordinates(rows[0].fields):
        crs_text = "EPSG:4490"  # located by standard address only: already in storage CRS
    if crs_text is None:
        raise ImportFailed(f"{path}: the file declares no CRS; give --crs (e.g. EPSG:4490, "
                           "EPSG:4326, EPSG:4529, GCJ02)")
    try:
        to_city = to_storage(resolve_crs(crs_text))
    except CRSError as e:
        raise ImportFailed(str(e)) from None
    report = ImportReport(layer.name, read=len(rows), dry_run=dry_run)
    progress = progress_factory(len(rows)) if progress_factory else (lambda n: None)
    features, report.rejected, report.warnings, row_of = prepare(
        layer, rows, to_city, mapping, address_lookup(conn, vf), vf, all_or_nothing, progress,
        fid_key=read_pseudonym_key(conn) if layer.fid_needs_key else None)
    if all_or_nothing and report.rejected:
        return report  # nothing written
    store = TemporalStore(layer.spec)
    try:
        with conn.transaction():
            report.result = store.sync(conn, features, vf, retire_missing=retire_missing)
            if all_or_nothing and report.result.conflicts:
                raise psycopg.Rollback()
            if dry_run:
                raise psycopg.Rollback()
    except TemporalError as e:
        raise ImportFailed(f"{layer.name}: {e}") from None
    for fid, reason in report.result.conflicts:
        report.rejected.append(Reject(row_of[fid], fid, reason, {}))
    if all_or_nothing and report.result.conflicts:
        report.result = SyncResult()
    return report

