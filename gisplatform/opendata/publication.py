"""Open data: the unconditionally shared layers as static, versioned downloads.

    <data dir>/opendata/<layer>/<version>/   version = publication instant, 2026-11-29T120000Z
        <layer>.gpkg  <layer>.geojson  <layer>.csv   as an anonymous caller sees the layer
        SHA256SUMS                                   `sha256sum -c SHA256SUMS` checks them
        metadata.json                                title, licence, extents, counts, checksums

A version is one bitemporal snapshot: valid at T (default: the publication instant P) as
known at P, so its three files agree row for row even while writes go on, and can be rebuilt. A new version is written only when the
snapshot's content changed since the last one: its fingerprint is a hash of the version
ids it holds (a version's content never changes) plus the layer's schema and masks. The
version is built in a hidden directory and renamed into place; the last `keep` are kept.

Publishing is an operator's act: `gisplatform opendata publish` (opendata/cli.py), or the
app's schedule (`GISPLATFORM_OPENDATA_EVERY`, opendata/routes.py) under a PostgreSQL advisory
lock so one replica publishes. The kernel never imports `layers`: callers pass layer
objects (`.spec`, `.sharing`, `.department`, `.keywords`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from psycopg import sql

from gisplatform.db.connections import connect
from gisplatform.exports import FORMATS, MEDIA_TYPES, ExportError, ExportRequest, export
from gisplatform.exports import snapshot_sql as _snapshot_sql
from gisplatform.security import ANONYMOUS, UNCONDITIONAL, personal_masks

__all__ = [
    "ADVISORY_LOCK",
    "FILE_FORMATS",
    "Published",
    "catalogue_records",
    "latest",
    "parse_every",
    "publish",
    "versions",
]

FILE_FORMATS = ("gpkg", "geojson", "csv")
VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{6}Z$")
LAYER = re.compile(r"^[a-z][a-z0-9-]*$")
FILE = re.compile(r"^(?:[a-z][a-z0-9-]*\.(?:gpkg|geojson|csv)|SHA256SUMS|metadata\.json)$")
# bump when what a file holds changes for the same rows (columns, masks, formats)
LAYOUT = "1"
# pg_try_advisory_lock key: b"opendata" as a big-endian int64
ADVISORY_LOCK = int.from_bytes(b"opendata", "big") & 0x7FFF_FFFF_FFFF_FFFF


@dataclass
class Published:
    layer: str
    version: str | None  # None: unchanged since the last version
    directory: Path | None
    rows: int
    unchanged: bool = False


def root(data_dir: Path) -> Path:
    return Path(data_dir) / "opendata"


def versions(data_dir: Path, layer: str) -> list[str]:
    """Published versions of `layer`, oldest first (hidden build directories excluded)."""
    d = root(data_dir) / layer
    if not LAYER.match(layer) or not d.is_dir():
        return []
    return sorted(p.name for p in d.iterdir() if p.is_dir() and VERSION.match(p.name)
                  and (p / "metadata.json").is_file())


def latest(data_dir: Path, layer: str) -> dict | None:
    """The newest version's metadata, or None."""
    vs = versions(data_dir, layer)
    if not vs:
        return None
    return json.loads((root(data_dir) / layer / vs[-1] / "metadata.json").read_text())


def parse_every(text: str | None) -> float:
    """'24h', '30m', '90s', '1d' or a number of seconds -> seconds; '0' or '' = off."""
    s = (text or "0").strip().lower()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhd]?)", s)
    if not m:
        raise ValueError(f"{text!r} is not a period like 24h, 30m, 90s or 1d (0 = off)")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _fingerprint(conn, layer, at: dt.datetime, known: dt.datetime) -> tuple[str, int]:
    """(hash, rows) of the snapshot valid at `at` as known at `known`, and of the layout."""
    body = _snapshot_sql(layer, _request(layer, "gpkg", at, known), at)
    digest, rows = conn.execute(sql.SQL(
        "select md5(coalesce(string_agg(v.vid::text, ',' order by v.vid), '')), count(*) {}"
    ).format(body)).fetchone()
    schema = [(a.name, a.type, a.personal, a.mask) for a in layer.spec.attributes]
    h = hashlib.sha256(json.dumps([LAYOUT, layer.spec.geometry_type, schema, digest],
                                  default=str).encode()).hexdigest()
    return h, rows


def _request(layer, fmt: str, at: dt.datetime, known: dt.datetime) -> ExportRequest:
    crs = "OGC:CRS84" if fmt == "geojson" else "EPSG:4490"
    return ExportRequest(layer.spec.name, fmt, at=at, known_at=known, crs=crs, ordered=True)


def _extents(conn, layer, at: dt.datetime, known: dt.datetime) -> tuple[list | None, str | None]:
    """(bbox lon/lat, first valid time of the layer's current knowledge)."""
    body = _snapshot_sql(layer, _request(layer, "gpkg", at, known), at)
    box = conn.execute(sql.SQL(
        "select st_xmin(e), st_ymin(e), st_xmax(e), st_ymax(e)"
        " from (select st_extent(v.geom) e {}) x").format(body)).fetchone()
    start = conn.execute(sql.SQL("select min(lower(valid)) from {} where upper_inf(recorded)")
                         .format(sql.Identifier("city", layer.spec.version_table))).fetchone()[0]
    bbox = [round(float(v), 7) for v in box] if box and box[0] is not None else None
    return bbox, start.isoformat() if start else None


def publish(url: str, layers: Iterable, data_dir: Path, *, at: dt.datetime | None = None,
            keep: int = 5, license: str = "CC-BY-4.0", public_url: str = "",
            on_layer: Callable[[Published], None] | None = None) -> list[Published]:
    """Publish each of `layers` (all unconditional, else ExportError) whose snapshot (valid
    at `at`, default now) changed since its last version; keep the newest `keep`."""
    layers = list(layers)
    for layer in layers:
        if layer.sharing != UNCONDITIONAL:
            raise ExportError(f"{layer.spec.name} is shared {layer.sharing}: only "
                              "unconditionally shared layers are open data")
    if keep < 1:
        raise ExportError("keep at least 1 version")
    out = []
    with connect(url, "gisplatform-opendata", autocommit=True) as conn:
        now = conn.execute("select now()").fetchone()[0].astimezone(dt.UTC)
        at = (at or now).astimezone(dt.UTC)
        for layer in layers:
            fingerprint, rows = _fingerprint(conn, layer, at, now)
            last = latest(data_dir, layer.spec.name)
            if last is not None and last.get("fingerprint") == fingerprint:
                result = Published(layer.spec.name, None, None, rows, unchanged=True)
            else:
                bbox, start = _extents(conn, layer, at, now)
                result = _publish_one(url, layer, data_dir, at, now, fingerprint, bbox, start,
                                      license, public_url)
                _prune(data_dir, layer.spec.name, keep)
            out.append(result)
            if on_layer:
                on_layer(result)
    return out


def _version(data_dir: Path, layer: str, now: dt.datetime) -> str:
    """The publication instant to the second, after the last version's (names sort in
    publication order even for two publications within a second)."""
    t = now.replace(microsecond=0)
    vs = versions(data_dir, layer)
    if vs:
        last = dt.datetime.strptime(vs[-1], "%Y-%m-%dT%H%M%SZ").replace(tzinfo=dt.UTC)
        t = max(t, last + dt.timedelta(seconds=1))
    return t.strftime("%Y-%m-%dT%H%M%SZ")


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _publish_one(url, layer, data_dir, at, now, fingerprint, bbox, start, license, public_url):
    name = layer.spec.name
    version = _version(data_dir, name, now)
    parent = root(data_dir) / name
    final = parent / version
    parent.mkdir(parents=True, exist_ok=True)
    build = parent / f".build-{version}-{uuid.uuid4().hex[:8]}"
    build.mkdir()
    try:
        files, counts = [], {}
        for fmt in FILE_FORMATS:
            path = build / f"{name}{FORMATS[fmt][0]}"
            req = _request(layer, fmt, at, now)
            r = export(url, layer, req, ANONYMOUS, path)
            counts[fmt] = r.rows
            files.append({"name": path.name, "format": fmt, "type": MEDIA_TYPES[fmt],
                          "crs": req.crs, "rows": r.rows,
                          "size": path.stat().st_size, "sha256": _sha256(path)})
        (build / "SHA256SUMS").write_text("".join(f"{f['sha256']}  {f['name']}\n" for f in files))
        personal = personal_masks(layer.spec.attributes)
        meta = {
            "layer": name, "version": version, "title": layer.spec.title or name,
            "description": layer.spec.description, "license": license,
            "publisher": getattr(layer, "department", None),
            "keywords": list(getattr(layer, "keywords", ())),
            "published": _iso(now),
            "snapshot": {"datetime": _iso(at), "known_at": _iso(now)},
            "temporal_extent": [start and _iso(dt.datetime.fromisoformat(start)), _iso(at)],
            "bbox": bbox, "bbox_crs": "OGC:CRS84",
            "rows": counts[FILE_FORMATS[0]],
            "fields": [{"name": a.name, "type": a.type, "description": a.description,
                        **({"masked": personal[a.name] or "secret"} if a.name in personal else {})}
                       for a in layer.spec.attributes],
            "files": files, "fingerprint": fingerprint,
        }
        if public_url:
            meta["href"] = f"{public_url}/opendata/{name}/{version}/"
        (build / "metadata.json").write_text(json.dumps(meta, ensure_ascii=False, indent=2))
        for p in build.iterdir():
            os.chmod(p, 0o444)  # published files never change
        build.rename(final)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return Published(name, version, final, meta["rows"])


def _prune(data_dir: Path, layer: str, keep: int) -> None:
    for v in versions(data_dir, layer)[:-keep]:
        shutil.rmtree(root(data_dir) / layer / v, ignore_errors=True)


def catalogue_records(data_dir: Path, public_url: str) -> list[dict]:
    """One OGC API Records record per published layer (its newest version): download links
    with sizes and checksums. Read from the metadata files, so any replica serves them."""
    base = root(data_dir)
    if not base.is_dir():
        return []
    out = []
    for d in sorted(base.iterdir()):
        meta = latest(data_dir, d.name) if LAYER.match(d.name) else None
        if meta is None:
            continue
        href = f"{public_url}/opendata/{d.name}/{meta['version']}"
        out.append({
            "id": f"opendata-{d.name}", "type": "Feature",
            "conformsTo": ["http://www.opengis.net/spec/ogcapi-records-1/1.0/req/record-core"],
            "geometry": None if not meta.get("bbox") else {
                "type": "Polygon", "coordinates": [[
                    [meta["bbox"][0], meta["bbox"][1]], [meta["bbox"][2], meta["bbox"][1]],
                    [meta["bbox"][2], meta["bbox"][3]], [meta["bbox"][0], meta["bbox"][3]],
                    [meta["bbox"][0], meta["bbox"][1]]]]},
            "time": {"interval": meta["temporal_extent"]},
            "properties": {
                "type": "dataset", "title": f"{meta['title']} (open data {meta['version']})",
                "description": meta.get("description") or "", "keywords":
                    meta.get("keywords", []) + ["open data", "开放数据"],
                "language": "zh", "license": meta["license"],
                "contacts": [{"name": meta.get("publisher"), "roles": ["publisher"]}],
                "themes": [{"concepts": [{"id": "opendata"}],
                            "scheme": "gisplatform:collection-kind"}],
                "sharing": UNCONDITIONAL, "layer": d.name, "version": meta["version"],
                "versions": versions(data_dir, d.name), "rows": meta["rows"],
                "updated": meta["published"],
                "checksums": {f["name"]: f"sha256:{f['sha256']}" for f in meta["files"]},
                "personalFields": sorted(f["name"] for f in meta["fields"] if "masked" in f),
            },
            "links": [
                *({"rel": "enclosure", "type": f["type"], "title": f["name"],
                   "href": f"{href}/{f['name']}", "length": f["size"],
                   "file:checksum": f"sha256:{f['sha256']}"} for f in meta["files"]),
                {"rel": "describedby", "type": "application/json", "title": "metadata.json",
                 "href": f"{href}/metadata.json"},
                {"rel": "alternate", "type": "text/plain", "title": "SHA256SUMS",
                 "href": f"{href}/SHA256SUMS"},
            ],
        })
    return out
