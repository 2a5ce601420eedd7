"""Base layers: administrative areas, the city-management unit grid, standard addresses."""

from gisplatform.temporal import Attribute as A
from gisplatform.temporal import LayerSpec

from ..codes import validate_division_code, validate_grid_code
from ..registry import UNCONDITIONAL, Layer, TileSettings, check_choice

DEPARTMENT = "抚顺市自然资源局 Natural Resources Bureau"
LEVELS = {"city", "district", "county", "street"}


def _check_admin(p: dict) -> list[str]:
    code = str(p.get("code") or "")
    # districts/counties: GB/T 2260 (6 digits); streets/towns: 6 + 3 digits
    if len(code) == 9 and code.isdigit():
        validate_division_code(code[:6])
    else:
        p["code"] = validate_division_code(code)
    check_choice(p, "level", LEVELS, required=True)
    return []


def _check_grid(p: dict) -> list[str]:
    p["grid_code"] = validate_grid_code(str(p.get("grid_code") or ""))
    return []


def _check_address(p: dict) -> list[str]:
    if p.get("division_code") is not None:
        p["division_code"] = validate_division_code(str(p["division_code"]))
    return []


ADMIN_AREAS = Layer(
    LayerSpec("admin-areas", "MultiPolygon", (
        A("code", "text", True, description="GB/T 2260 code (streets: + 3 digits)"),
        A("name", "text", True, description="名称"),
        A("name_en", "text"),
        A("level", "text", True, description="city | district | county | street"),
        A("parent_code", "text"),
    ), title="行政区划 Administrative areas",
        description="Districts, counties and streets/towns of Fushun with their GB/T 2260 codes."),
    theme="base", department=DEPARTMENT, sharing=UNCONDITIONAL, fid="code",
    validate=_check_admin, keywords=("行政区划", "GB/T 2260", "admin"),
    tiles=TileSettings(detail_zoom=0, color="#6a3d9a"))

GRID_CELLS = Layer(
    LayerSpec("grid-cells", "MultiPolygon", (
        A("grid_code", "text", True, description="unit grid code: division 6 + street 3 + community 3 + serial 3"),
        A("name", "text"),
        A("street_code", "text"),
        A("community_code", "text"),
    ), title="单元网格 City-management unit grid",
        description="Unit grid cells of digital city management (数字化城管)."),
    theme="base", department="抚顺市城市管理综合行政执法局 City Management Bureau",
    sharing=UNCONDITIONAL, fid="grid_code", validate=_check_grid,
    keywords=("单元网格", "数字化城管", "grid"),
    tiles=TileSettings(detail_zoom=11, color="#b15928"))

ADDRESSES = Layer(
    LayerSpec("addresses", "Point", (
        A("address", "text", True, description="standard full address (标准地址)"),
        A("division_code", "text"),
        A("street_name", "text"),
        A("house_number", "text"),
        A("building_code", "text"),
    ), title="标准地址 Standard addresses",
        description="The geocoding reference: one point per standard address."),
    theme="base", department=DEPARTMENT, sharing=UNCONDITIONAL, fid="address",
    validate=_check_address, keywords=("标准地址", "geocoding", "address"),
    tiles=TileSettings(detail_zoom=15, color="#7f7f7f"))

LAYERS = (ADMIN_AREAS, GRID_CELLS, ADDRESSES)
