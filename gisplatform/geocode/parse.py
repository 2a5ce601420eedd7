"""Chinese addresses: normalisation and structure (省 市 区/县 街道/乡镇 社区 路/街/巷 号 栋 单元 室).

`normalize(text)` makes the forms people type comparable with the standard form:
- full-width characters to half-width (NFKC), spaces and punctuation dropped;
- trailing noise dropped (楼下, 附近, 对面, 旁边, 门口 …): where a complaint was made, not
  which address it is;
- Chinese numerals before an address unit to Arabic ones (三十九号 = 39号, 一路 = 1路, by
  cn2an), only there: a numeral inside a name (五龙, 三家子) stays a name;
- variants to one form: 号楼 / 幢 / 座 / #楼 = 栋, 39# = 39号, 3门 = 3单元, 3-2-501 after a
  number = 3栋2单元501室.

`parse(text, districts, towns)` splits a normalised address into its parts. Districts and
towns (街道/乡镇) are recognised by name from the city's admin areas (`Gazetteer`: full and
short names, so 新抚 is 新抚区) or by their suffix; a road is the text up to a road suffix
followed by a number or the end; the rest by the unit markers. Whatever is left over is
`extra` (a compound or building name). The same function parses the query and the standard
addresses it is ranked against (rank.py), so both sides meet in one form.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

import cn2an

MAX_LENGTH = 200  # characters of a query: an address is far shorter

_DROP = re.compile(r"[\s,，。、;；:：\"'“”‘’()（）【】\[\]{}<>《》·.?？!！~～*_|/\\]+")
_NOISE = re.compile(
    r"(?:楼下|附近|对面|旁边|门口|门前|东侧|西侧|南侧|北侧|东边|西边|南边|北边|一带|周边|周围|"
    r"前面|后面|里面|院内|院里|这里|那里|处|旁)+$")
_CROSSING = re.compile(r"(路|街|道|巷)(?:交叉口|交口|路口|口)$")
_NUMERAL = re.compile(r"[零〇一二两三四五六七八九十百千]+(?=号楼|号院|号|路|街|巷|条|栋|幢|座|单元|门|室|层|楼)")
_VARIANTS = (
    (re.compile(r"(\d+)#楼"), r"\1栋"),
    (re.compile(r"(\d+)#"), r"\1号"),
    (re.compile(r"(\d+)(?:号楼|幢|座)"), r"\1栋"),
    (re.compile(r"(\d+)门(?=\d|$)"), r"\1单元"),
    (re.compile(r"(\d+号)(\d+)-(\d+)-(\d+)$"), r"\1\2栋\3单元\4室"),
    (re.compile(r"(\d+)楼(\d+)单元"), r"\1栋\2单元"),
)
ROAD_SUFFIXES = ("大街", "大道", "大路", "胡同", "路", "街", "巷", "道")
_ROAD = re.compile(r"^(.{1,14}?(?:大街|大道|大路|胡同|路|街|巷|道))(?=\d|$)")
_PROVINCE = re.compile(r"^(.{2,8}?(?:省|自治区))")
_CITY = re.compile(r"^(.{2,6}?市)(?!场)")
_DISTRICT = re.compile(r"^(.{1,8}?(?:区|县|旗))")
_NOT_A_DISTRICT = ("小区", "园区", "社区", "校区", "厂区", "矿区", "景区", "新区")
_TOWN = re.compile(r"^(.{1,8}?(?:街道|镇|乡))")
_COMMUNITY = re.compile(r"^(.{1,10}?(?:社区|村))")
_NUMBER = re.compile(r"^(\d+)号院?")
_BUILDING = re.compile(r"^(\d+)栋")
_UNIT = re.compile(r"^(\d+)单元")
_ROOM = re.compile(r"^(\d+)室?$")


class AddressError(ValueError):
    """Input that is not an address query (empty, too long, control characters)."""


def check_query(text: object) -> str:
    """The query as text, or AddressError saying what is wrong with it."""
    if not isinstance(text, str) or not text.strip():
        raise AddressError("q: an address is required")
    if len(text) > MAX_LENGTH:
        raise AddressError(f"q: at most {MAX_LENGTH} characters (got {len(text)})")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co") for c in text):
        raise AddressError("q: control or invisible characters are not allowed")
    return text


def _arabic(m: re.Match) -> str:
    try:
        return str(cn2an.cn2an(m.group(0), "smart"))
    except ValueError:  # not a well-formed numeral (十十): left as written
        return m.group(0)


def normalize(text: str) -> str:
    """The comparable form of an address (module doc)."""
    s = unicodedata.normalize("NFKC", text)
    s = _DROP.sub("", s).replace("－", "-").replace("—", "-")
    s = _CROSSING.sub(r"\1", s)
    s = _NOISE.sub("", s)
    s = _NUMERAL.sub(_arabic, s)
    for pattern, repl in _VARIANTS:
        s = pattern.sub(repl, s)
    return s


@dataclass(frozen=True)
class Gazetteer:
    """The city's name and its district and town names (admin areas), each → its code.
    Equal (and hashed) by `key`, a digest of the names: parsed addresses are cached by it."""
    districts: dict[str, str] = field(default_factory=dict, compare=False)
    towns: dict[str, str] = field(default_factory=dict, compare=False)
    city: str | None = field(default=None, compare=False)  # 抚顺市: 抚顺 is dropped before a district
    key: str = ""

    @classmethod
    def of(cls, districts: dict[str, str], towns: dict[str, str], city: str | None) -> Gazetteer:
        import hashlib

        digest = hashlib.sha1(repr((sorted(districts.items()), sorted(towns.items()), city))
                              .encode()).hexdigest()
        return cls(districts, towns, city, digest)

    @staticmethod
    def short(name: str) -> str:
        """新抚区 → 新抚, 新宾满族自治县 → 新宾, 榆林街道 → 榆林."""
        for suffix in ("满族自治县", "自治县", "街道", "区", "县", "镇", "乡", "市"):
            if name.endswith(suffix) and len(name) > len(suffix) + 1:
                return name[: -len(suffix)]
        return name


@dataclass(frozen=True)
class Parsed:
    province: str | None = None
    city: str | None = None
    district: str | None = None  # as written (full or short name)
    district_code: str | None = None  # when the gazetteer knows it
    town: str | None = None
    town_code: str | None = None
    community: str | None = None
    road: str | None = None
    number: int | None = None
    building: int | None = None
    unit: int | None = None
    room: str | None = None
    extra: str = ""

    @property
    def level(self) -> str | None:
        """The finest part present: unit, building, number, road, street (town), district."""
        for level, value in (("unit", self.unit), ("building", self.building),
                             ("number", self.number), ("road", self.road),
                             ("street", self.town), ("district", self.district)):
            if value is not None:
                return level
        return None


def road_key(road: str) -> tuple[str, str]:
    """(name, suffix): 新华大街 → (新华, 大街); aliases differ in the suffix only."""
    for suffix in ROAD_SUFFIXES:
        if road.endswith(suffix) and len(road) > len(suffix):
            return road[: -len(suffix)], suffix
    return road, ""


_NAME_GOES_ON = re.compile(r"^(?:大街|大道|大路|胡同|路|街|巷|道|\d)")


def _known(s: str, names: dict[str, str], short: bool) -> tuple[str, str] | None:
    """The longest gazetteer name (full, or with `short` its short form) that `s` starts
    with: (name, code). A short form followed by a road suffix or a number is the start of
    a road's name (新抚路5号), not the area."""
    best = None
    for name, code in names.items():
        for form in (name, Gazetteer.short(name)) if short else (name,):
            if (s.startswith(form) and (best is None or len(form) > len(best[0]))
                    and (form == name or not _NAME_GOES_ON.match(s[len(form):]))):
                # a short name with another generic suffix: 新宾县 for 新宾满族自治县
                extra = s[len(form)] if form != name and s[len(form):len(form) + 1] in (
                    "区", "县", "市", "旗") else ""
                best = (form + extra, code)
    return best


def parse(text: str, gazetteer: Gazetteer = Gazetteer(), normalized: bool = False) -> Parsed:
    """The parts of an address (module doc)."""
    s = text if normalized else normalize(text)
    parts: dict = {}

    def take(key: str, pattern: re.Pattern) -> None:
        nonlocal s
        m = pattern.match(s)
        if m:
            parts[key] = m.group(1)
            s = s[m.end():]

    take("province", _PROVINCE)
    take("city", _CITY)
    if "city" not in parts and gazetteer.city:
        short = Gazetteer.short(gazetteer.city)
        if s.startswith(short) and _known(s[len(short):], gazetteer.districts, short=True):
            parts["city"], s = short, s[len(short):]  # 抚顺新抚区…, not 抚顺县
    known = _known(s, gazetteer.districts, short=True)
    if known:
        parts["district"], parts["district_code"] = known
        s = s[len(known[0]):]
    else:
        m = _DISTRICT.match(s)
        if m and not m.group(1).endswith(_NOT_A_DISTRICT):
            parts["district"] = m.group(1)
            s = s[m.end():]
    known = _known(s, gazetteer.towns, short=False)  # 榆林街道, not 榆林 (榆林1路)
    if known:
        parts["town"], parts["town_code"] = known
        s = s[len(known[0]):]
    else:
        take("town", _TOWN)
    take("community", _COMMUNITY)
    take("road", _ROAD)
    m = _NUMBER.match(s)
    if m:
        parts["number"] = int(m.group(1))
        s = s[m.end():]
    for key, pattern in (("building", _BUILDING), ("unit", _UNIT)):
        m = pattern.match(s)
        if m:
            parts[key] = int(m.group(1))
            s = s[m.end():]
    m = _ROOM.match(s)
    if m and (parts.get("unit") is not None or parts.get("building") is not None):
        parts["room"] = m.group(1)
        s = ""
    return Parsed(**parts, extra=s)
