"""Housing: buildings (footprints with height, for 2D and 3D) and the housing units in them."""

from gisplatform.temporal import Attribute as A
from gisplatform.temporal import LayerSpec

from ..registry import CONDITIONAL, UNCONDITIONAL, Layer, TileSettings, check_choice, check_range

DEPARTMENT = "抚顺市住房和城乡建设局 Housing and Urban-Rural Development Bureau"
STRUCTURES = {"steel", "reinforced_concrete", "brick_concrete", "brick_wood", "other"}
USES = {"residential", "commercial", "office", "industrial", "public", "mixed"}
UNIT_USES = {"residential", "commercial", "office", "storage", "other"}
OWNERSHIP = {"private", "public_rental", "commercial_rental", "collective", "state", "other"}


def _check_building(p: dict) -> list[str]:
    code = str(p.get("building_code") or "")
    # JGJ/T 496 coding is not pinned down here (see DOMAIN.md): a division prefix
    # and digits is what is checked.
    if not (code[:6].isdigit() and code[:2] == "21" and 10 <= len(code) <= 30):
        raise ValueError(f"building_code {code!r} must start with a Liaoning (21xxxx) division code")
    check_range(p, "floors", 1, 120)
    check_range(p, "height", 2, 500)
    check_range(p, "year_built", 1900, 2100)
    if p.get("floors") and p.get("height") and p["height"] < p["floors"] * 2:
        raise ValueError(f"height {p['height']} m is too low for {p['floors']} floors")
    check_choice(p, "structure", STRUCTURES)
    check_choice(p, "use", USES, required=True)
    return []


def _check_unit(p: dict) -> list[str]:
    check_range(p, "floor", -5, 120)
    check_range(p, "area_m2", 1, 100000)
    check_choice(p, "use", UNIT_USES, required=True)
    check_choice(p, "ownership", OWNERSHIP)
    return []


BUILDINGS = Layer(
    LayerSpec("buildings", "MultiPolygon", (
        A("building_code", "text", True, description="building code (房屋编码)"),
        A("name", "text"),
        A("floors", "integer", True, description="floors above ground"),
        A("height", "double precision", True, description="height in metres"),
        A("structure", "text", description=", ".join(sorted(STRUCTURES))),
        A("use", "text", True, description=", ".join(sorted(USES))),
        A("year_built", "integer"),
        A("address", "text"),
        A("division_code", "text"),
    ), title="房屋建筑 Buildings",
        description="Building footprints with floors and height; the source of the 3D city."),
    theme="housing", department=DEPARTMENT, sharing=UNCONDITIONAL, fid="building_code",
    validate=_check_building, keywords=("房屋", "建筑", "buildings", "JGJ/T 496"),
    tiles=TileSettings(detail_zoom=13, color="#a6cee3"))

HOUSING_UNITS = Layer(
    LayerSpec("housing-units", "Point", (
        A("unit_code", "text", True, description="building code + unit number"),
        A("building_code", "text", True),
        A("floor", "integer", True),
        A("room", "text"),
        A("area_m2", "double precision", True),
        A("use", "text", True, description=", ".join(sorted(UNIT_USES))),
        A("ownership", "text", description=", ".join(sorted(OWNERSHIP))),
    ), title="房屋单元 Housing units",
        description="Units (flats, shops) in buildings; the point is the building's."),
    theme="housing", department=DEPARTMENT, sharing=CONDITIONAL, fid="unit_code",
    validate=_check_unit, keywords=("房屋", "单元", "housing"),
    tiles=TileSettings(detail_zoom=16, color="#1f78b4"))

LAYERS = (BUILDINGS, HOUSING_UNITS)
