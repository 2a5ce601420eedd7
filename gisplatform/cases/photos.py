"""Photos of a case: checked, re-encoded as JPEG with only their time and position kept,
stored by SHA-256 under the data dir.

A photo from a phone carries its maker, model, serial numbers, software and sometimes the
owner's name in its EXIF; a file may also be two things at once (a JPEG that is also a ZIP
or an HTML page: a polyglot). So an upload is refused unless its bytes are the declared
type from the first byte to the last (the JPEG's end marker, the PNG's IEND chunk, the HEIF
box structure, nothing after them and no markup or archive inside), is decoded by Pillow
(pillow-heif for HEIC) within a pixel limit, and is re-encoded from its pixels: what is
stored is a new JPEG whose EXIF holds only when it was taken and where (DateTimeOriginal,
GPS). Files are named by the SHA-256 of what is stored; the database row
(`city.case_photos`, migration 0024) ties a photo to the case and the step it came with.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .workflow import WorkflowError

MAX_BYTES = 10 << 20
MAX_PIXELS = 50_000_000
TYPES = ("image/jpeg", "image/png", "image/heic", "image/heif")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
_FOREIGN = (b"<script", b"<html", b"<?php", b"<svg", b"<!doctype", b"pk\x03\x04")
_EXIF_DATETIME_ORIGINAL, _EXIF_IFD, _GPS_IFD = 0x9003, 0x8769, 0x8825


class PhotoError(WorkflowError):
    """A photo refused (a 400, or 415 for a type not accepted: `status`)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Photo:
    jpeg: bytes
    sha256: str
    taken_at: datetime | None
    lon: float | None
    lat: float | None



def root(data_dir: Path) -> Path:
    """Where the photos are stored, by SHA-256."""
    return Path(data_dir) / "case-photos"

def _whole(data: bytes, kind: str) -> None:
    """The bytes are one file of `kind`, with nothing before or after it."""
    if kind == "image/jpeg":
        if not data.startswith(b"\xff\xd8\xff") or not data.rstrip(b"\0\r\n").endswith(b"\xff\xd9"):
            raise PhotoError("not a whole JPEG (it must start with FFD8 and end with FFD9)")
    elif kind == "image/png":
        if not data.startswith(b"\x89PNG\r\n\x1a\n") or not data.endswith(
                b"IEND\xaeB`\x82"):
            raise PhotoError("not a whole PNG (it must start with its signature and end "
                             "with IEND)")
    else:
        if data[4:8] != b"ftyp" or data[8:12] not in (b"heic", b"heix", b"mif1", b"msf1",
                                                      b"heim", b"heis", b"hevc"):
            raise PhotoError("not a HEIF image (no ftyp heic/mif1 box)")
    lowered = data.lower()
    if any(marker in lowered for marker in _FOREIGN):
        raise PhotoError("the image carries markup or an archive inside: refused")


def _degrees(value, ref) -> float | None:
    try:
        d, m, s = (float(x) for x in value)
    except (TypeError, ValueError):
        return None
    out = d + m / 60 + s / 3600
    return -out if ref in ("S", "W") else out


def clean(data: bytes, declared: str) -> Photo:
    """The stored form of an uploaded photo (module doc); PhotoError says why not."""
    from PIL import Image, UnidentifiedImageError

    kind = (declared or "").split(";")[0].strip().lower()
    if kind not in TYPES:
        raise PhotoError(f"Content-Type: one of {', '.join(TYPES)}; got {kind or 'none'}", 415)
    if not data:
        raise PhotoError("the photo is empty")
    if len(data) > MAX_BYTES:
        raise PhotoError(f"the photo is over {MAX_BYTES >> 20} MB", 413)
    _whole(data, kind)
    if kind in ("image/heic", "image/heif"):
        import pillow_heif
        pillow_heif.register_heif_opener()
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # Pillow's own bomb check, past twice this
    try:
        with Image.open(io.BytesIO(data)) as probe:
            if probe.width * probe.height > MAX_PIXELS:  # read from the header, not decoded
                raise PhotoError(f"the image has more than {MAX_PIXELS} pixels")
            probe.verify()
        with Image.open(io.BytesIO(data)) as img:
            fmt = {"JPEG": "image/jpeg", "PNG": "image/png", "HEIF": "image/heic"}.get(
                img.format or "")
            if fmt is None or (fmt != kind and not (fmt == "image/heic" and "hei" in kind)):
                raise PhotoError(f"the file is {img.format}, not {kind}")
            exif = img.getexif()
            taken = exif.get_ifd(_EXIF_IFD).get(_EXIF_DATETIME_ORIGINAL) or exif.get(0x0132)
            gps = exif.get_ifd(_GPS_IFD)
            pixels = img.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        if isinstance(e, PhotoError):
            raise
        raise PhotoError(f"the image cannot be read ({type(e).__name__})") from None
    except Image.DecompressionBombError:
        raise PhotoError(f"the image has more than {MAX_PIXELS} pixels") from None
    taken_at = None
    if isinstance(taken, str):
        try:  # EXIF time has no zone: the camera's clock, taken as the city's (UTC+8)
            from gisplatform.temporal import BEIJING_TIME
            taken_at = datetime.strptime(taken.strip(), "%Y:%m:%d %H:%M:%S").replace(
                tzinfo=BEIJING_TIME)
        except ValueError:
            taken_at = None
    lat = _degrees(gps.get(2), gps.get(1)) if gps else None
    lon = _degrees(gps.get(4), gps.get(3)) if gps else None
    if lat is None or lon is None or not (math.isfinite(lat) and math.isfinite(lon)):
        lat = lon = None
    kept = Image.Exif()
    if taken_at is not None:
        kept[0x0132] = taken.strip()
    if gps:
        kept[_GPS_IFD] = {k: v for k, v in gps.items() if k in (0, 1, 2, 3, 4, 5, 6)}
    out = io.BytesIO()
    pixels.save(out, "JPEG", quality=85, exif=kept.tobytes())
    jpeg = out.getvalue()
    return Photo(jpeg, hashlib.sha256(jpeg).hexdigest(), taken_at, lon, lat)


def path(root: Path, sha: str) -> Path:
    if not SHA256.match(sha):
        raise PhotoError("not a photo name")
    return Path(root) / sha[:2] / f"{sha}.jpg"


def store(root: Path, photo: Photo) -> Path:
    """Write the photo (once: a name is its content), atomically."""
    target = path(root, photo.sha256)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
    with os.fdopen(fd, "wb") as f:
        f.write(photo.jpeg)
    os.replace(tmp, target)
    return target


def record(conn, number: str, photo: Photo, actor: str | None, max_distance_m: float) -> dict:
    """Tie the photo to the case and its latest step; the answer, with a warning when the
    photo's position is further than `max_distance_m` from the case."""
    row = conn.execute("""
        select (select id from city.case_steps where case_number = %(n)s
                order by at desc, id desc limit 1),
               case when %(x)s::float8 is null then null else st_distance(
                 (select geom from city.cases_version where fid = %(n)s
                  and upper_inf(recorded) order by lower(valid) desc limit 1)::geography,
                 st_setsrid(st_point(%(x)s, %(y)s), 4490)::geography) end""",
                       {"n": number, "x": photo.lon, "y": photo.lat}).fetchone()
    step_id, distance = row
    conn.execute("""
        insert into city.case_photos (case_number, sha256, step_id, actor, taken_at, lon, lat,
                                      distance_m, bytes)
        values (%s, %s, %s, %s, %s, %s, %s, %s, %s)
        on conflict (case_number, sha256) do nothing""",
                 (number, photo.sha256, step_id, actor, photo.taken_at, photo.lon, photo.lat,
                  distance, len(photo.jpeg)))
    out = {"sha256": photo.sha256, "bytes": len(photo.jpeg),
           "taken_at": photo.taken_at.isoformat() if photo.taken_at else None,
           "position": [photo.lon, photo.lat] if photo.lon is not None else None,
           "distance_m": round(distance, 1) if distance is not None else None,
           "uploaded_at": datetime.now(UTC).isoformat()}
    if distance is not None and distance > max_distance_m:
        out["warning"] = (f"the photo was taken {distance:.0f} m from the case "
                          f"(more than {max_distance_m:.0f} m): accepted, check it")
    return out
