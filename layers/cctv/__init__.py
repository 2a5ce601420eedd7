"""CCTV: cameras of the city-wide video sharing platform (GB/T 28181 ids)."""

from gisplatform.temporal import Attribute as A
from gisplatform.temporal import LayerSpec

from ..codes import gb28181_sector, is_camera_type, validate_gb28181
from ..registry import CONDITIONAL, Layer, TileSettings, check_choice, check_range

DEPARTMENT = "抚顺市公安局 Public Security Bureau"
SECTORS = {"public_security", "city_management", "traffic", "education", "society"}
PTZ_TYPES = {1: "dome", 2: "half-dome", 3: "fixed bullet", 4: "remote-control bullet"}


def _check_camera(p: dict) -> list[str]:
    parts = validate_gb28181(str(p.get("device_id") or ""))
    if not is_camera_type(parts["type"]):
        raise ValueError(f"device_id type {parts['type']} is not a camera (131/132)")
    sector = gb28181_sector(parts["industry"])
    if p.get("sector") is None:
        p["sector"] = sector
    check_choice(p, "sector", SECTORS, required=True)
    check_choice(p, "ptz_type", PTZ_TYPES)
    check_choice(p, "status", {"ON", "OFF"}, required=True)
    check_range(p, "azimuth", 0, 360)
    check_range(p, "fov", 1, 360)
    check_range(p, "range_m", 1, 5000)
    url = p.get("stream_url")
    if url is not None and not str(url).startswith(("rtsp://", "rtmp://", "http://", "https://")):
        raise ValueError("stream_url must be an rtsp/rtmp/http(s) address")
    return []


CAMERAS = Layer(
    LayerSpec("cameras", "Point", (
        A("device_id", "text", True, description="GB/T 28181 20-digit device id"),
        A("name", "text", True),
        A("owner_department", "text"),
        A("sector", "text", True, description=", ".join(sorted(SECTORS))),
        A("ptz_type", "integer", description="1 dome, 2 half-dome, 3 fixed bullet, 4 remote-control bullet"),
        A("azimuth", "double precision", description="view direction, degrees clockwise from north"),
        A("fov", "double precision", description="horizontal field of view, degrees"),
        A("range_m", "double precision", description="useful viewing distance, metres"),
        A("status", "text", True, description="ON | OFF"),
        A("manufacturer", "text"),
        A("model", "text"),
        A("civil_code", "text"),
        A("address", "text"),
        A("stream_url", "text", personal=True, description="secret: never served unmasked without a grant"),
    ), title="视频监控 Cameras",
        description="Cameras of the video sharing platform; view cones derivable (city.camera_cones)."),
    theme="cctv", department=DEPARTMENT, sharing=CONDITIONAL, fid="device_id",
    validate=_check_camera, keywords=("视频监控", "GB/T 28181", "cameras"),
    tiles=TileSettings(detail_zoom=13, color="#e31a1c"))

LAYERS = (CAMERAS,)
