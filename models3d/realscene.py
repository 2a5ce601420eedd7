"""Real-scene (oblique photography) tilesets: import an existing OGC 3D Tiles tileset.

`import_realscene` takes a folder or a .zip holding a tileset (tileset.json at the top or
in its one top folder), copies or extracts it into a fresh folder of the 3D registry
(`models3d.registry.new_directory`), checks the copy and registers it as kind `realscene`.
Nothing is registered and no folder is left behind when anything is refused.

What is checked (each refusal is a `TilesetError` whose message names the file and tile):

- archive: no entry may leave the target folder (absolute names, `..`, drive letters:
  zip-slip), no symlink entries; a folder's symlinks must point inside it;
- every tileset JSON (the root one and each external tileset a content uri ending in
  `.json` leads to, cycles refused): valid JSON, `asset.version` "1.0" or "1.1", a numeric
  top-level `geometricError`, a `root` tile;
- every tile: a `boundingVolume` with a well-formed `box` (12 numbers), `region` (6) or
  `sphere` (4, radius ≥ 0), `geometricError` ≥ 0, `refine` ADD/REPLACE when given, a
  16-number `transform` when given; implicit tiling is refused (not supported here);
- every content `uri` (and the 1.0-era `url`; 1.1 `contents` too): relative (no scheme,
  no host, not absolute), staying inside the tileset after normalisation, naming a file
  that exists;
- every content file by its header: b3dm (magic, version 1, byteLength = file size, the
  four table lengths inside it, a binary glTF 2 after them), glb (magic `glTF`, version 2,
  length = file size, a JSON chunk declaring glTF 2.x, its buffer/image uris relative and
  present), i3dm/pnts/cmpt (magic, version 1, byteLength), .gltf (JSON, glTF 2.x);
- a child whose geometricError is larger than its parent's is a WARNING, not a refusal
  (the spec says "should"; Cesium renders such tilesets, only less efficiently).

The registered bounds are an approximate lon/lat envelope of the root bounding volume:
a region is exact (radians → degrees); a box's 8 corners / a sphere's centre ± radius,
through the root `transform`, are converted ECEF → geodetic (pyproj EPSG:4978 → 4979) and
enveloped, which is a little larger than the content. A tileset in local coordinates
(no transform, box near the origin) is registered without bounds, with a warning.

ContextCapture / Smart3D OSGB exports (`Data/Tile_*/*.osgb` + `metadata.xml`) are
recognised and refused with an explanation (`OsgbRefused`): OSGB is OpenSceneGraph's
binary format, there is no maintained Python reader on PyPI, and it must be converted to
3D Tiles first; the message echoes metadata.xml's SRS and SRSOrigin for the converter.
"""

from __future__ import annotations

import json
import math
import os
import posixpath
import shutil
import stat
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg

from .registry import (
    Tileset,
    TilesetError,
    check_name,
    get_tileset,
    new_directory,
    register,
)

VERSIONS = ("1.0", "1.1")
CONTENT_MAGIC = {b"b3dm": "b3dm", b"glTF": "glb", b"i3dm": "i3dm", b"pnts": "pnts",
                 b"cmpt": "cmpt"}
CHUNK = 1 << 20
MAX_JSON = 256 << 20  # a tileset.json larger than this is not read

Progress = Callable[[str, int, int], None]  # (phase, done, total)


class OsgbRefused(TilesetError):
    """The source is a ContextCapture OSGB tree, which cannot be converted here."""

    def __init__(self, message: str, srs: str | None, origin: str | None):
        super().__init__(message)
        self.srs, self.origin = srs, origin


@dataclass
class Report:
    """What the check found in a tileset folder."""
    tiles: int = 0             # tile objects, over all tileset JSONs
    contents: int = 0          # content files referenced (b3dm, glb, …)
    tilesets: int = 0          # tileset JSON files (1 + external ones)
    bytes: int = 0             # every file in the folder
    files: int = 0
    versions: set[str] = field(default_factory=set)
    bounds: tuple[float, float, float, float] | None = None
    warnings: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- sources

def _safe_relative(name: str) -> str | None:
    """`name` as a clean relative posix path, or None when it is absolute or leaves."""
    if not name or "\x00" in name:
        return None
    n = name.replace("\\", "/")
    if n.startswith("/") or (len(n) > 1 and n[1] == ":"):
        return None
    parts = [p for p in n.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        return None
    return "/".join(parts)


def _list_folder(src: Path) -> dict[str, int]:
    """relative path → size of every regular file under SRC (symlinks must stay inside)."""
    base = src.resolve()
    files: dict[str, int] = {}
    for dirpath, dirnames, filenames in os.walk(base):
        d = Path(dirpath)
        for name in dirnames + filenames:
            p = d / name
            if p.is_symlink():
                target = p.resolve()
                if target != base and base not in target.parents:
                    raise TilesetError(f"{p.relative_to(base)} is a symlink pointing outside "
                                       f"the tileset ({target})")
        for name in filenames:
            p = d / name
            st = p.stat()
            if stat.S_ISREG(st.st_mode):
                files[p.relative_to(base).as_posix()] = st.st_size
    return files


def _list_zip(zf: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    entries: dict[str, zipfile.ZipInfo] = {}
    for info in zf.infolist():
        rel = _safe_relative(info.filename)
        if rel is None:
            raise TilesetError(f"zip entry {info.filename!r} would leave the target folder "
                               "(absolute name or '..'): refused (zip-slip)")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise TilesetError(f"zip entry {info.filename!r} is a symlink: refused")
        if info.is_dir() or not rel:
            continue
        if info.flag_bits & 0x1:
            raise TilesetError(f"zip entry {info.filename!r} is encrypted")
        entries[rel] = info
    return entries


def _ignored(rel: str) -> bool:
    return rel.startswith("__MACOSX/") or rel.split("/")[0].startswith(".")


def _find_root(names: list[str]) -> str | None:
    """The folder prefix ('' or 'top/') holding tileset.json: the top, or one top folder."""
    names = [n for n in names if not _ignored(n)]
    if "tileset.json" in names:
        return ""
    tops = sorted({n.split("/", 1)[0] + "/" for n in names if "/" in n})
    found = [t for t in tops if f"{t}tileset.json" in names]
    return found[0] if len(found) == 1 else None


OSGB_HELP = (
    "OSGB (OpenSceneGraph's binary format) cannot be converted here: no maintained Python "
    "reader exists on PyPI. Convert it to 3D Tiles first with a converter such as the "
    "open-source `3dtiles` (fanvanzh, `3dtiles -f osgb -i <folder> -o <out>`) or "
    "osgb2tiles, Cesium ion, or ContextCapture's own 3D Tiles (Cesium) export, then "
    "`gisplatform 3d import` the result")


def _osgb(names: list[str], read: Callable[[str], bytes]) -> OsgbRefused | None:
    """An OsgbRefused when NAMES look like a ContextCapture OSGB export, else None."""
    osgb = [n for n in names if n.lower().endswith(".osgb")]
    if not osgb:
        return None
    metas = sorted((n for n in names if posixpath.basename(n).lower() == "metadata.xml"),
                   key=lambda n: n.count("/"))
    srs = origin = None
    where = "no metadata.xml found, so the georeference (SRS, SRSOrigin) is unknown"
    if metas:
        import xml.etree.ElementTree as ET

        try:
            doc = ET.fromstring(read(metas[0])[: 1 << 20])
            srs = (doc.findtext(".//SRS") or "").strip() or None
            origin = (doc.findtext(".//SRSOrigin") or "").strip() or None
            where = (f"{metas[0]} gives SRS {srs or '(none)'} and SRSOrigin "
                     f"{origin or '(none)'}: give the converter this georeference")
        except ET.ParseError as e:
            where = f"{metas[0]} is not readable XML ({e})"
    tiles = {n.split("/")[-2] for n in osgb if "/" in n}
    return OsgbRefused(
        f"this is a ContextCapture OSGB export ({len(osgb)} .osgb files in {len(tiles)} tile "
        f"folders), not 3D Tiles; {where}. {OSGB_HELP}.", srs, origin)


# ----------------------------------------------------------------------------- checks

def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _numbers(v, n: int) -> bool:
    return isinstance(v, list) and len(v) == n and all(_finite(x) for x in v)


def _check_volume(bv, where: str) -> None:
    if not isinstance(bv, dict):
        raise TilesetError(f"{where}: no boundingVolume")
    if "box" in bv:
        if not _numbers(bv["box"], 12):
            raise TilesetError(f"{where}: boundingVolume.box is not 12 numbers")
    elif "region" in bv:
        r = bv["region"]
        if not _numbers(r, 6):
            raise TilesetError(f"{where}: boundingVolume.region is not 6 numbers")
        if not (-math.pi <= r[0] <= math.pi and -math.pi <= r[2] <= math.pi
                and -math.pi / 2 <= r[1] <= r[3] <= math.pi / 2):
            raise TilesetError(f"{where}: boundingVolume.region {r[:4]} is not "
                               "[west, south, east, north] in radians")
    elif "sphere" in bv:
        if not _numbers(bv["sphere"], 4) or bv["sphere"][3] < 0:
            raise TilesetError(f"{where}: boundingVolume.sphere is not 4 numbers with radius ≥ 0")
    else:
        raise TilesetError(f"{where}: boundingVolume has no box, region or sphere")


def _resolve_uri(base: str, uri, where: str) -> str:
    """The file a content/buffer uri names, relative to the tileset folder (posix)."""
    if not isinstance(uri, str) or not uri.strip():
        raise TilesetError(f"{where}: content uri is missing or not a string")
    parts = urlsplit(uri)
    if parts.scheme or parts.netloc or uri.startswith("//"):
        raise TilesetError(f"{where}: uri {uri!r} is not relative (a scheme or host): "
                           "the tileset must be self-contained")
    path = unquote(parts.path)
    if path.startswith(("/", "\\")):
        raise TilesetError(f"{where}: uri {uri!r} is an absolute path: refused")
    joined = posixpath.normpath(posixpath.join(base, path.replace("\\", "/")))
    if joined == ".." or joined.startswith(("../", "/")) or "\x00" in joined:
        raise TilesetError(f"{where}: uri {uri!r} leaves the tileset folder: refused")
    return joined


def _read_header(path: Path, n: int) -> bytes:
    with path.open("rb") as f:
        return f.read(n)


def _check_glb_bytes(head: bytes, size: int, rel: str, where: str, read_json) -> dict:
    """Header of a binary glTF at the start of HEAD (size = its declared room)."""
    if len(head) < 20 or head[:4] != b"glTF":
        raise TilesetError(f"{where}: {rel} is not binary glTF (magic {head[:4]!r})")
    version, length = struct.unpack_from("<II", head, 4)
    if version != 2:
        raise TilesetError(f"{where}: {rel} is glTF version {version}; 3D Tiles needs glTF 2")
    if length != size:
        raise TilesetError(f"{where}: {rel} declares {length} bytes but has {size}")
    clen, ctype = struct.unpack_from("<II", head, 12)
    if ctype != 0x4E4F534A or 20 + clen > length:
        raise TilesetError(f"{where}: {rel} has no JSON chunk first")
    try:
        doc = json.loads(read_json(20, clen))
    except (ValueError, UnicodeDecodeError) as e:
        raise TilesetError(f"{where}: {rel}: glTF JSON chunk is not JSON ({e})") from None
    if not str((doc.get("asset") or {}).get("version", "")).startswith("2."):
        raise TilesetError(f"{where}: {rel}: glTF asset.version is not 2.x")
    return doc


def _check_gltf_uris(root: Path, rel: str, doc: dict, where: str) -> None:
    """External buffers/images of a glTF must be relative and present."""
    base = posixpath.dirname(rel)
    for kind in ("buffers", "images"):
        for item in doc.get(kind) or []:
            uri = item.get("uri") if isinstance(item, dict) else None
            if uri is None or uri.startswith("data:"):
                continue
            target = _resolve_uri(base, uri, f"{where}: {rel} {kind}")
            if not (root / target).is_file():
                raise TilesetError(f"{where}: {rel} refers to {uri!r}, which is missing")


def _check_content(root: Path, rel: str, where: str) -> str:
    """Check one content file's header; returns its format."""
    path = root / rel
    size = path.stat().st_size
    head = _read_header(path, 64)
    magic = head[:4]
    fmt = CONTENT_MAGIC.get(magic)
    if fmt is None and rel.lower().endswith(".gltf"):
        try:
            doc = json.loads(path.read_bytes())
        except (ValueError, UnicodeDecodeError) as e:
            raise TilesetError(f"{where}: {rel} is not glTF JSON ({e})") from None
        if not isinstance(doc, dict) or not str((doc.get("asset") or {}).get("version", "")
                                                ).startswith("2."):
            raise TilesetError(f"{where}: {rel}: glTF asset.version is not 2.x")
        _check_gltf_uris(root, rel, doc, where)
        return "gltf"
    if fmt is None:
        raise TilesetError(f"{where}: {rel} is not b3dm, glb, i3dm, pnts or cmpt "
                           f"(starts with {magic!r})")

    def read_at(offset: int, n: int) -> bytes:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read(n)

    if fmt == "glb":
        doc = _check_glb_bytes(head, size, rel, where, read_at)
        _check_gltf_uris(root, rel, doc, where)
        return fmt
    if len(head) < 12:
        raise TilesetError(f"{where}: {rel} is truncated")
    version, length = struct.unpack_from("<II", head, 4)
    if version != 1:
        raise TilesetError(f"{where}: {rel} is {fmt} version {version}; 1 expected")
    if length != size:
        raise TilesetError(f"{where}: {rel} declares {length} bytes but has {size}")
    if fmt == "b3dm":
        if len(head) < 28:
            raise TilesetError(f"{where}: {rel} is truncated")
        ftj, ftb, btj, btb = struct.unpack_from("<4I", head, 12)
        if btj >= 570425344 or ftj >= 570425344:  # the pre-1.0 header layouts
            raise TilesetError(f"{where}: {rel} has a legacy (pre-1.0) b3dm header: re-export it")
        start = 28 + ftj + ftb + btj + btb
        if start + 20 > length:
            raise TilesetError(f"{where}: {rel}: table lengths exceed the file")
        inner = read_at(start, 20)
        _check_glb_bytes(inner, length - start, rel, where,
                         lambda off, n: read_at(start + off, n))
        # a b3dm may be padded after its glb: the glb's length must fit, not equal
    elif fmt == "cmpt":
        count = struct.unpack_from("<I", head, 12)[0] if len(head) >= 16 else 0
        offset = 16
        for i in range(count):
            inner = read_at(offset, 12)
            if len(inner) < 12 or inner[:4] not in CONTENT_MAGIC:
                raise TilesetError(f"{where}: {rel}: inner tile {i} has no known magic")
            n = struct.unpack_from("<I", inner, 8)[0]
            offset += n
            if n < 12 or offset > length:
                raise TilesetError(f"{where}: {rel}: inner tile {i} exceeds the file")
    return fmt


# bounds ----------------------------------------------------------------------------

def _bounds(bv: dict, transform: list | None, warn: Callable[[str], None]
            ) -> tuple[float, float, float, float] | None:
    import numpy as np

    if "region" in bv:
        w, s, e, n = (math.degrees(v) for v in bv["region"][:4])
        if w > e:
            warn("the root region crosses the antimeridian: registered without bounds")
            return None
        return (w, s, e, n)
    m = np.array(transform, float).reshape(4, 4).T if transform else np.eye(4)
    if "box" in bv:
        b = np.array(bv["box"], float)
        c, axes = b[:3], b[3:].reshape(3, 3)
        signs = np.array([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)], float)
        local = c + signs @ axes
        pad = 0.0
    else:
        sph = bv["sphere"]
        local = np.array([sph[:3]], float)
        pad = sph[3] * float(np.max(np.linalg.norm(m[:3, :3], axis=0)))
    pts = (np.c_[local, np.ones(len(local))] @ m.T)[:, :3]
    centre = pts.mean(axis=0)
    if np.linalg.norm(centre) < 6.3e6:
        warn("the root bounding volume is in local coordinates (no georeferencing root "
             "transform): registered without bounds")
        return None
    from pyproj import Transformer

    geo = Transformer.from_crs("EPSG:4978", "EPSG:4979", always_xy=True)
    lon, lat, h = geo.transform(pts[:, 0], pts[:, 1], pts[:, 2])
    lon, lat, h = np.atleast_1d(lon), np.atleast_1d(lat), np.atleast_1d(h)
    if not (np.all(np.isfinite(lon)) and np.all(np.isfinite(lat))) \
            or float(np.min(h)) < -20000 - pad or float(np.max(h)) > 100000 + pad:
        warn("the root bounding volume does not lie near the Earth's surface: "
             "registered without bounds")
        return None
    dlat = math.degrees(pad / 6371000.0)
    mid = math.radians(float(np.mean(lat)))
    dlon = dlat / max(math.cos(mid), 1e-6)
    return (float(lon.min()) - dlon, max(-90.0, float(lat.min()) - dlat),
            float(lon.max()) + dlon, min(90.0, float(lat.max()) + dlat))


def check_tileset(root: Path, on_progress: Progress | None = None,
                  on_warning: Callable[[str], None] | None = None) -> Report:
    """Check the tileset in folder ROOT (tileset.json at its top); raise TilesetError."""
    root = Path(root)
    rep = Report()
    all_files = [p for p in root.rglob("*") if p.is_file()]
    rep.files = len(all_files)
    rep.bytes = sum(p.stat().st_size for p in all_files)
    total = max(1, rep.files)
    done = 0
    referenced: set[str] = set()

    def warn(msg: str) -> None:
        rep.warnings.append(msg)
        if on_warning:
            on_warning(msg)

    def tick() -> None:
        nonlocal done
        done += 1
        if on_progress:
            on_progress("checking", min(done, total), total)

    increases: list[str] = []
    seen_json: set[str] = set()
    # (tileset json rel path, parent geometricError or None, where it was referenced)
    queue: list[tuple[str, float | None, str]] = [("tileset.json", None, "")]
    first = True
    while queue:
        rel, parent_ge, via = queue.pop()
        if rel in seen_json:
            raise TilesetError(f"{via}: external tileset {rel} is referenced twice "
                               "(a cycle or a shared subtree): refused")
        seen_json.add(rel)
        referenced.add(rel)
        path = root / rel
        if path.stat().st_size > MAX_JSON:
            raise TilesetError(f"{rel} is larger than {MAX_JSON >> 20} MB")
        try:
            doc = json.loads(path.read_bytes())
        except UnicodeDecodeError:
            raise TilesetError(f"{rel} is not JSON (not UTF-8 text)") from None
        except json.JSONDecodeError as e:
            raise TilesetError(f"{rel} is not JSON: {e.msg} at line {e.lineno} "
                               f"column {e.colno}") from None
        tick()
        rep.tilesets += 1
        if not isinstance(doc, dict):
            raise TilesetError(f"{rel} is JSON but not a tileset (not an object)")
        version = (doc.get("asset") or {}).get("version") if isinstance(doc.get("asset"), dict) \
            else None
        if version not in VERSIONS:
            raise TilesetError(f"{rel}: asset.version is {version!r}; 3D Tiles "
                               f"{' or '.join(VERSIONS)} expected")
        rep.versions.add(version)
        if not _finite(doc.get("geometricError")) or doc["geometricError"] < 0:
            raise TilesetError(f"{rel}: geometricError is missing or negative")
        tile0 = doc.get("root")
        if not isinstance(tile0, dict):
            raise TilesetError(f"{rel}: no root tile")
        base = posixpath.dirname(rel)
        stack = [(tile0, "root", parent_ge)]
        while stack:
            tile, where_in, pge = stack.pop()
            where = f"{rel} {where_in}"
            if not isinstance(tile, dict):
                raise TilesetError(f"{where}: tile is not an object")
            rep.tiles += 1
            _check_volume(tile.get("boundingVolume"), where)
            ge = tile.get("geometricError")
            if not _finite(ge) or ge < 0:
                raise TilesetError(f"{where}: geometricError is missing or negative")
            if pge is not None and ge > pge:
                increases.append(f"{where} ({ge} > parent {pge})")
            if "refine" in tile and tile["refine"] not in ("ADD", "REPLACE"):
                raise TilesetError(f"{where}: refine is {tile['refine']!r}, not ADD or REPLACE")
            if "transform" in tile and not _numbers(tile["transform"], 16):
                raise TilesetError(f"{where}: transform is not 16 numbers")
            if "implicitTiling" in tile:
                raise TilesetError(f"{where}: implicit tiling is not supported by the "
                                   "importer; export explicit tiles")
            if "content" in tile and "contents" in tile:
                raise TilesetError(f"{where}: both content and contents")
            contents = tile.get("contents") if "contents" in tile else (
                [tile["content"]] if "content" in tile else [])
            if not isinstance(contents, list):
                raise TilesetError(f"{where}: contents is not a list")
            for i, content in enumerate(contents):
                cw = where if len(contents) == 1 and "content" in tile else f"{where} contents[{i}]"
                if not isinstance(content, dict):
                    raise TilesetError(f"{cw}: content is not an object")
                if "boundingVolume" in content:
                    _check_volume(content["boundingVolume"], f"{cw} content")
                uri = content.get("uri", content.get("url"))
                target = _resolve_uri(base, uri, cw)
                if not (root / target).is_file():
                    raise TilesetError(f"{cw}: content {uri!r} is missing")
                if target.lower().endswith(".json"):
                    queue.append((target, ge, cw))
                else:
                    if target not in referenced:
                        _check_content(root, target, cw)
                        referenced.add(target)
                        rep.contents += 1
                        tick()
            children = tile.get("children", [])
            if not isinstance(children, list):
                raise TilesetError(f"{where}: children is not a list")
            for i, child in enumerate(reversed(children)):
                stack.append((child, f"{where_in}.children[{len(children) - 1 - i}]", ge))
        if first:
            first = False
            rep.bounds = _bounds(tile0["boundingVolume"], tile0.get("transform"), warn)
    if increases:
        warn(f"geometricError grows from parent to child in {len(increases)} tile(s), e.g. "
             f"{increases[0]}: kept (a warning, not a refusal), but clients refine such "
             "tiles less efficiently")
    unused = rep.files - len(referenced)
    if unused > 0:
        warn(f"{unused} file(s) not referenced by any tile (textures or buffers of glTF "
             "content, or leftovers): kept")
    if on_progress:
        on_progress("checking", total, total)
    return rep


# ----------------------------------------------------------------------------- import

def _copy_stream(src, dst: Path, limit: int, advance: Callable[[int], None], what: str) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with dst.open("wb") as out:
        while chunk := src.read(CHUNK):
            n += len(chunk)
            if n > limit:
                raise TilesetError(f"{what} is larger than it declares: refused")
            out.write(chunk)
            advance(len(chunk))


def import_realscene(conn: psycopg.Connection, data_dir: Path, source: Path, *, name: str,
                     at: datetime, replace: bool = False,
                     on_progress: Progress | None = None,
                     on_warning: Callable[[str], None] | None = None,
                     ) -> tuple[Tileset, Report]:
    """Check, copy (or extract) and register the tileset at SOURCE as real-scene NAME."""
    check_name(name)
    source = Path(source)
    old = get_tileset(conn, name)
    if old is not None and not replace:
        raise TilesetError(f"tileset {name!r} exists ({old.kind}, {old.tiles} tiles): "
                           "give --replace to replace it")
    if old is not None and old.kind != "realscene":
        raise TilesetError(f"{name!r} is a {old.kind} tileset, not a real-scene one: "
                           "choose another name")
    if at is None or at.tzinfo is None:
        raise TilesetError("the capture time needs a time zone")
    if source.is_file() and source.name == "tileset.json":
        source = source.parent
    if not source.exists():
        raise TilesetError(f"{source}: no such file or folder")

    zf = None
    try:
        if source.is_dir():
            files = _list_folder(source)
            sizes = files

            def read(rel: str) -> bytes:
                with (source / rel).open("rb") as f:
                    return f.read(1 << 20)
        elif zipfile.is_zipfile(source):
            zf = zipfile.ZipFile(source)
            entries = _list_zip(zf)
            sizes = {k: v.file_size for k, v in entries.items()}

            def read(rel: str) -> bytes:
                with zf.open(entries[rel]) as f:
                    return f.read(1 << 20)
        else:
            raise TilesetError(f"{source} is neither a folder nor a .zip: give the folder or "
                               "zip holding tileset.json")
        names = sorted(sizes)
        prefix = _find_root(names)
        if prefix is None:
            osgb = _osgb(names, read)
            if osgb is not None:
                raise osgb
            deeper = sorted((n for n in names if posixpath.basename(n) == "tileset.json"),
                            key=lambda n: (n.count("/"), n))
            hint = f" (there is {deeper[0]}: import that folder)" if deeper else ""
            raise TilesetError(f"{source} is not a 3D Tiles tileset: no tileset.json at its "
                               f"top or in its one top folder{hint}")
        wanted = [n for n in names if n.startswith(prefix) and not _ignored(n[len(prefix):])]
        total = sum(sizes[n] for n in wanted)
        free = shutil.disk_usage(Path(data_dir) if Path(data_dir).exists() else Path("/")).free
        if total > free:
            raise TilesetError(f"{source} holds {total / 1e9:.1f} GB; the data dir has "
                               f"{free / 1e9:.1f} GB free")
        target = new_directory(data_dir, name)
        try:
            done = 0

            def advance(n: int) -> None:
                nonlocal done
                done += n
                if on_progress:
                    on_progress("copying", done, total)

            for n in wanted:
                rel = n[len(prefix):]
                if zf is not None:
                    with zf.open(entries[n]) as f:
                        _copy_stream(f, target / rel, entries[n].file_size, advance,
                                     f"zip entry {n!r}")
                else:
                    with (source / n).open("rb") as f:
                        _copy_stream(f, target / rel, sizes[n], advance, str(source / n))
            if on_progress:
                on_progress("copying", total, total)
            report = check_tileset(target, on_progress, on_warning)
            tileset = register(conn, data_dir, name=name, kind="realscene", directory=target,
                               at=at, bounds=report.bounds, tiles=report.tiles,
                               size=report.bytes, source=str(source.resolve()))
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
    except zipfile.BadZipFile as e:
        raise TilesetError(f"{source}: broken zip ({e})") from None
    finally:
        if zf is not None:
            zf.close()
    return tileset, report
