"""Facts about Fushun the layers and the demo rely on (see DOMAIN.md)."""

from __future__ import annotations

from dataclasses import dataclass

CITY_CODE = "210400"
CITY_NAME = "抚顺市"
# The action plan's start: the default first month of statistics (and where the layers'
# history starts).
PLAN_START_MONTH = "2018-01"
# The municipality: 123°39′–125°29′E, 41°14′–42°28′N. Imports outside it are rejected.
CITY_BBOX = (123.65, 41.233, 125.484, 42.467)
# The urban core on the Hun River plain.
URBAN_BBOX = (123.65, 41.78, 124.30, 41.98)


@dataclass(frozen=True)
class Division:
    code: str
    name: str
    name_en: str
    kind: str  # district | county
    seat: tuple[float, float]  # approximate lon, lat


DIVISIONS = (
    Division("210404", "望花区", "Wanghua District", "district", (123.78, 41.85)),
    Division("210402", "新抚区", "Xinfu District", "district", (123.89, 41.86)),
    Division("210411", "顺城区", "Shuncheng District", "district", (123.93, 41.89)),
    Division("210403", "东洲区", "Dongzhou District", "district", (124.04, 41.85)),
    Division("210421", "抚顺县", "Fushun County", "county", (124.20, 41.70)),
    Division("210422", "新宾满族自治县", "Xinbin Manchu Autonomous County", "county", (125.04, 41.73)),
    Division("210423", "清原满族自治县", "Qingyuan Manchu Autonomous County", "county", (124.92, 42.10)),
)
DIVISION_BY_CODE = {d.code: d for d in DIVISIONS}


def in_city(minx: float, miny: float, maxx: float, maxy: float) -> bool:
    x0, y0, x1, y1 = CITY_BBOX
    return x0 <= minx and maxx <= x1 and y0 <= miny and maxy <= y1
