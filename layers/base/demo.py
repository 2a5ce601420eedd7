"""Demo: districts and counties, streets/towns, the unit grid, standard addresses."""

from __future__ import annotations

import math

import shapely
from shapely.geometry import box

from ..codes import make_grid_code
from ..demo_common import START, Ctx
from ..fushun import CITY_BBOX, DIVISION_BY_CODE, URBAN_BBOX

# District footprints: a simplification of the real map that keeps the relative
# positions (Wanghua west, Dongzhou east, Shuncheng north of the river, Xinfu south).
UX0, UY0, UX1, UY1 = URBAN_BBOX
MID_Y = 41.875
DISTRICT_BOXES = {
    "210404": box(UX0, UY0, 123.82, UY1),
    "210402": box(123.82, UY0, 123.95, MID_Y),
    "210411": box(123.82, MID_Y, 123.95, UY1),
    "210403": box(123.95, UY0, UX1, UY1),
}
CX0, CY0, CX1, CY1 = CITY_BBOX
_urban = box(*URBAN_BBOX)
COUNTY_SHAPES = {
    "210421": box(CX0, CY0, 124.60, CY1).difference(_urban),
    "210423": box(124.60, 41.95, CX1, CY1),
    "210422": box(124.60, CY0, CX1, 41.95),
}
STREET_WIDTH = 0.04  # degrees of longitude per street strip in the urban districts
GRID_DX, GRID_DY = 0.01, 0.0075  # unit grid cells, about 830 m square at 41.9°N
STREET_NAMES = ("永安", "临江", "新华", "裕民", "和平", "站前", "千金", "南阳", "葛布", "榆林",
                "塔峪", "高山", "将军", "古城子", "演武", "万新", "东公园", "南花园", "河北", "前甸")


def _multi(g):
    return shapely.MultiPolygon([g]) if g.geom_type == "Polygon" else g


def _ewkt(g) -> str:
    return "SRID=4490;" + shapely.to_wkt(_multi(g), rounding_precision=7)


def district_of(x: float, y: float) -> str | None:
    p = shapely.Point(x, y)
    for code, shape in DISTRICT_BOXES.items():
        if shape.covers(p):
            return code
    return None


def street_of(code: str, x: float) -> int:
    x0 = DISTRICT_BOXES[code].bounds[0]
    return int((x - x0) // STREET_WIDTH) + 1


def admin_areas(ctx: Ctx):
    """Rows for admin-areas: the city, 4 districts, 3 counties, their streets/towns."""
    rows = []

    def row(code, name, name_en, level, parent, geom):
        rows.append((code, START, None, _ewkt(geom),
                     {"code": code, "name": name, "name_en": name_en, "level": level,
                      "parent_code": parent}))

    row("210400", "抚顺市", "Fushun", "city", "210000", box(*CITY_BBOX))
    shapes = {**DISTRICT_BOXES, **COUNTY_SHAPES}
    for code, shape in shapes.items():
        d = DIVISION_BY_CODE[code]
        row(code, d.name, d.name_en, d.kind, "210400", shape)
        x0, _, x1, _ = shape.bounds
        width = STREET_WIDTH if d.kind == "district" else (x1 - x0) / 4
        for i in range(max(1, math.ceil((x1 - x0) / width - 1e-9))):
            part = shape.intersection(box(x0 + i * width, -90, x0 + (i + 1) * width, 90))
            if part.is_empty or part.area < 1e-9:
                continue
            suffix = "街道" if d.kind == "district" else "镇"
            row(f"{code}{i + 1:03d}", f"{STREET_NAMES[i % len(STREET_NAMES)]}{suffix}",
                None, "street", code, part)
    return rows


def grid_cells(ctx: Ctx):
    """The unit grid over the urban districts, numbered west→east, north→south."""
    rows, serials = [], {}
    ncols = math.ceil((UX1 - UX0) / GRID_DX - 1e-9)
    nrows = math.ceil((UY1 - UY0) / GRID_DY - 1e-9)
    cells = {}
    for r in range(nrows):  # north → south
        y1 = UY1 - r * GRID_DY
        y0 = max(UY0, y1 - GRID_DY)
        for c in range(ncols):  # west → east
            x0 = UX0 + c * GRID_DX
            x1 = min(UX1, x0 + GRID_DX)
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            code = district_of(cx, cy)
            street = street_of(code, cx)
            community = r // 3 + 1
            key = (code, street, community)
            serials[key] = serials.get(key, 0) + 1
            grid = make_grid_code(code, street, community, serials[key])
            cells[(r, c)] = grid
            rows.append((grid, START, None, _ewkt(box(x0, y0, x1, y1)),
                         {"grid_code": grid, "name": f"{grid[-6:]}网格",
                          "street_code": f"{code}{street:03d}",
                          "community_code": f"{code}{street:03d}{community:03d}"}))
    ctx.shared["grid_cells"] = cells
    return rows


def grid_code_at(ctx: Ctx, x: float, y: float) -> str | None:
    r = int((UY1 - y) // GRID_DY)
    c = int((x - UX0) // GRID_DX)
    return ctx.shared["grid_cells"].get((r, c))


def addresses(ctx: Ctx):
    """One standard address per building (made by the housing generator)."""
    return ctx.shared.pop("addresses")


def road_address(code: str, row: int, col: int) -> tuple[str, str, str]:
    """(full address, street name, house number) for a building slot."""
    d = DIVISION_BY_CODE[code]
    road = f"{STREET_NAMES[row % len(STREET_NAMES)]}{row // len(STREET_NAMES) + 1}路"
    number = f"{2 * col + 1}号"
    return f"抚顺市{d.name}{road}{number}", road, number
