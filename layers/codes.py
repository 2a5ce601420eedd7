"""Validators and generators for the Chinese identifier codes the platform imports and generates.

Stdlib only, so importers and the deterministic demo-data generator can use it without the
database. The rules follow /work/shared/DOMAIN.md; where that text is partial or ambiguous the
choice made here is written next to the code.

Validators raise CodeError (a ValueError) with a message naming the code and what exactly is
wrong. Resident identity numbers are personal data: their error messages never echo the full
number, only its first 10 characters (area code and birth year).
"""

from __future__ import annotations

import datetime

from gisplatform.security.masking import mask_name, mask_resident_id

from .fushun import DIVISIONS

__all__ = [
    "CodeError",
    "FUSHUN_DIVISIONS",
    "validate_division_code",
    # GB 11643
    "resident_id_check_char", "validate_resident_id", "make_resident_id", "resident_id_sex",
    "resident_id_birth", "mask_resident_id", "mask_name",
    # GB 32100 / GB 11714
    "USCC_ALPHABET", "USCC_AUTHORITIES", "org_code_check_char", "uscc_check_char",
    "validate_uscc", "make_uscc",
    # GB/T 28181
    "GB28181_TYPES", "validate_gb28181", "make_gb28181", "gb28181_sector", "is_camera_type",
    # digital city management
    "validate_grid_code", "make_grid_code", "COMPONENT_CLASSES", "COMPONENT_SMALL_CLASSES",
    "validate_component_code", "make_component_code", "EVENT_CLASSES",
]


class CodeError(ValueError):
    """A code is malformed or fails its check; the message says precisely what is wrong."""


# --------------------------------------------------------------------------- helpers

def _text(s: object, what: str) -> str:
    if not isinstance(s, str):
        raise CodeError(f"{what}: expected a string, got {type(s).__name__}")
    return s.strip()


def _require_digits(s: str, n: int, label: str) -> None:
    """Length first, then the first offending character (1-based), so messages are exact."""
    if len(s) != n:
        raise CodeError(f"{label}: length {len(s)}, expected {n} digits")
    for i, ch in enumerate(s, 1):
        if ch not in "0123456789":
            raise CodeError(f"{label}: character {i} {ch!r} is not a digit")


def _int_in(value: object, lo: int, hi: int, what: str) -> int:
    # bool is an int subclass; True as a serial is always a caller bug.
    if not isinstance(value, int) or isinstance(value, bool):
        raise CodeError(f"{what} must be an int, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise CodeError(f"{what} {value} out of range {lo}..{hi}")
    return value


# --------------------------------------------------------------------------- GB/T 2260

# The city's own codes, for tests and generators (names live in layers/fushun.py).
FUSHUN_DIVISIONS: dict[str, str] = {"210400": "抚顺市", **{d.code: d.name for d in DIVISIONS}}


def validate_division_code(s: str) -> str:
    """GB/T 2260 division code: 6 digits whose province part is 11..82.

    Plausibility only: the full national table changes every year and is not shipped here.
    """
    s = _text(s, "division code")
    label = f"division code {s!r}"
    _require_digits(s, 6, label)
    if not 11 <= int(s[:2]) <= 82:
        raise CodeError(f"{label}: province part {s[:2]} is not a GB/T 2260 province (11..82)")
    return s


# --------------------------------------------------------------------------- GB 11643

_RID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_RID_CHECK = "10X98765432"


def _rid_label(s: str) -> str:
    return f"resident id {s[:10]}..." if len(s) > 10 else f"resident id {s!r}"


def resident_id_check_char(first17: str) -> str:
    first17 = _text(first17, "resident id body")
    _require_digits(first17, 17, _rid_label(first17))
    return _RID_CHECK[sum(int(d) * w for d, w in zip(first17, _RID_WEIGHTS)) % 11]


def _rid_area_ok(area6: str) -> bool:
    # "Nonzero province": every GB/T 2260 province code is >= 11. The upper end is left open
    # because residence permits (81-83) and the foreigners' permanent residence card (9x) share
    # the 18-character scheme and check.
    return int(area6[:2]) >= 11


def validate_resident_id(s: str, today: datetime.date | None = None) -> str:
    """Return the normalized id (upper-case X); raise CodeError on any defect."""
    s = _text(s, "resident id").upper()
    label = _rid_label(s)
    if len(s) != 18:
        raise CodeError(f"{label}: length {len(s)}, expected 18")
    for i, ch in enumerate(s[:17], 1):
        if ch not in "0123456789":
            raise CodeError(f"{label}: character {i} {ch!r} is not a digit")
    if s[17] not in "0123456789X":
        raise CodeError(f"{label}: check character {s[17]!r} is not a digit or X")
    if not _rid_area_ok(s[:6]):
        raise CodeError(f"{label}: area code province part {s[:2]} is not a province (>= 11)")
    try:
        birth = datetime.date(int(s[6:10]), int(s[10:12]), int(s[12:14]))
    except ValueError:
        # Deliberately not echoing month/day: the number is personal data.
        raise CodeError(f"{label}: birth date (characters 7-14) is not a calendar date") from None
    if birth.year < 1900:
        raise CodeError(f"{label}: birth year {birth.year} is before 1900")
    today = today or datetime.date.today()
    if birth > today:
        raise CodeError(f"{label}: birth date is in the future (after {today.isoformat()})")
    expected = resident_id_check_char(s[:17])
    if s[17] != expected:
        raise CodeError(f"{label}: check character is {s[17]}, expected {expected}")
    return s


def make_resident_id(area6: str, birth: datetime.date, seq: int) -> str:
    """Build a valid id; seq 0..999, odd = male. No future-date check: the demo generator must
    not depend on the wall clock (validate_resident_id does that check)."""
    area6 = _text(area6, "area code")
    _require_digits(area6, 6, f"area code {area6!r}")
    if not _rid_area_ok(area6):
        raise CodeError(f"area code {area6!r}: province part {area6[:2]} is not a province (>= 11)")
    if not isinstance(birth, datetime.date):
        raise CodeError(f"birth must be a datetime.date, got {type(birth).__name__}")
    if birth.year < 1900:
        raise CodeError(f"birth year {birth.year} is before 1900")
    _int_in(seq, 0, 999, "sequence")
    body = f"{area6}{birth.year:04d}{birth.month:02d}{birth.day:02d}{seq:03d}"
    return body + resident_id_check_char(body)


def resident_id_sex(s: str) -> str:
    return "M" if int(validate_resident_id(s)[16]) % 2 else "F"


def resident_id_birth(s: str) -> datetime.date:
    s = validate_resident_id(s)
    return datetime.date(int(s[6:10]), int(s[10:12]), int(s[12:14]))


# mask_resident_id and mask_name live in the security kernel (gisplatform.security.masking)
# and are re-exported here so existing imports keep working.


# --------------------------------------------------------------------------- GB 32100 / GB 11714

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_VALUE = {ch: i for i, ch in enumerate(USCC_ALPHABET)}
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)

# Registration authority -> {category: name}. DOMAIN.md lists only 1, 5, 9 and Y (categories
# only for 9); this is the GB 32100-2015 table (1, 5, 9, Y) plus the authorities assigned after
# publication (2, 3, 4, 6, 7, 8, A, N) that appear on issued codes. (check) against the current
# national list before rejecting real-world data on this basis.
USCC_AUTHORITIES: dict[str, tuple[str, dict[str, str]]] = {
    "1": ("机构编制", {"1": "机关", "2": "事业单位", "3": "中央编办直接管理机构编制的群众团体", "9": "其他"}),
    "2": ("外交", {"1": "外国常驻新闻机构", "9": "其他"}),
    "3": ("司法行政", {"1": "律师执业机构", "2": "公证处", "3": "基层法律服务所",
                      "4": "司法鉴定机构", "5": "仲裁委员会", "9": "其他"}),
    "4": ("文化", {"1": "外国在华文化中心", "9": "其他"}),
    "5": ("民政", {"1": "社会团体", "2": "民办非企业单位", "3": "基金会", "9": "其他"}),
    "6": ("旅游", {"1": "外国旅游部门常驻代表机构",
                  "2": "港澳台地区旅游部门常驻内地（大陆）代表机构", "9": "其他"}),
    "7": ("宗教", {"1": "宗教活动场所", "2": "宗教院校", "9": "其他"}),
    "8": ("工会", {"1": "基层工会", "9": "其他"}),
    "9": ("市场监管（工商）", {"1": "企业", "2": "个体工商户", "3": "农民专业合作社"}),
    "A": ("中央军委改革和编制办公室", {"1": "军队事业单位", "9": "其他"}),
    "N": ("农业", {"1": "组级集体经济组织", "2": "村级集体经济组织", "3": "乡镇级集体经济组织", "9": "其他"}),
    "Y": ("其他", {"1": "其他"}),
}


def _org_value(ch: str) -> int:
    # GB 11714 values letters as 10 + alphabet index over the full A-Z, unlike the USCC
    # alphabet which skips I O S V Z (so e.g. 'M' is 22 here but 21 in the USCC check).
    if "0" <= ch <= "9":
        return ord(ch) - 48
    if "A" <= ch <= "Z":
        return ord(ch) - 55
    raise CodeError(f"organization code: character {ch!r} is not a digit or A-Z")


def org_code_check_char(body8: str) -> str:
    body8 = _text(body8, "organization code body")
    if len(body8) != 8:
        raise CodeError(f"organization code body {body8!r}: length {len(body8)}, expected 8")
    c = 11 - sum(_org_value(ch) * w for ch, w in zip(body8, _ORG_WEIGHTS)) % 11
    return "X" if c == 10 else "0" if c == 11 else str(c)


def _uscc_chars_ok(s: str, label: str) -> None:
    for i, ch in enumerate(s, 1):
        if ch not in _USCC_VALUE:
            raise CodeError(f"{label}: character {i} {ch!r} is not in the GB 32100 alphabet "
                            "(digits and A-Z without I, O, S, V, Z)")


def uscc_check_char(first17: str) -> str:
    first17 = _text(first17, "unified social credit code body")
    label = f"unified social credit code body {first17!r}"
    if len(first17) != 17:
        raise CodeError(f"{label}: length {len(first17)}, expected 17")
    _uscc_chars_ok(first17, label)
    k = 31 - sum(_USCC_VALUE[ch] * w for ch, w in zip(first17, _USCC_WEIGHTS)) % 31
    return USCC_ALPHABET[0 if k == 31 else k]


def _uscc_pair_ok(authority: str, category: str, label: str) -> None:
    if authority not in USCC_AUTHORITIES:
        raise CodeError(f"{label}: registration authority {authority!r} is not known "
                        f"(known: {''.join(USCC_AUTHORITIES)})")
    name, categories = USCC_AUTHORITIES[authority]
    if category not in categories:
        raise CodeError(f"{label}: category {category!r} is not defined for registration authority "
                        f"{authority} ({name}; known: {''.join(categories)})")


def validate_uscc(s: str) -> bool:
    """True if the check character is right, False if the code is well formed but fails the
    check (early pilot codes, legal: the caller flags them). Raises CodeError if malformed.

    Case-insensitive (stores should keep s.strip().upper()). The embedded GB 11714 check
    character is not enforced: GB 32100 validity rests on the final character only, and
    pilot-era bodies need not follow GB 11714. The division part must be 6 digits but is not
    held to 11..82, because central-level registrations use 100000.
    """
    s = _text(s, "unified social credit code").upper()
    label = f"unified social credit code {s!r}"
    if len(s) != 18:
        raise CodeError(f"{label}: length {len(s)}, expected 18")
    _uscc_chars_ok(s, label)
    _uscc_pair_ok(s[0], s[1], label)
    for i, ch in enumerate(s[2:8], 3):
        if ch not in "0123456789":
            raise CodeError(f"{label}: division code {s[2:8]!r} is not 6 digits "
                            f"(character {i} is {ch!r})")
    return uscc_check_char(s[:17]) == s[17]


def make_uscc(authority: str, category: str, area6: str, org_body8: str) -> str:
    """Embed a GB 11714 organization code (body + its check) and append the USCC check."""
    label = "unified social credit code"
    _uscc_pair_ok(authority, category, label)
    area6 = _text(area6, "division code")
    _require_digits(area6, 6, f"{label}: division code {area6!r}")
    org_body8 = _text(org_body8, "organization code body").upper()
    if len(org_body8) != 8:
        raise CodeError(
            f"organization code body {org_body8!r}: length {len(org_body8)}, expected 8")
    # Letters outside the USCC alphabet are legal in GB 11714 but would make the USCC malformed.
    _uscc_chars_ok(org_body8, f"organization code body {org_body8!r}")
    first17 = authority + category + area6 + org_body8 + org_code_check_char(org_body8)
    return first17 + uscc_check_char(first17)


# --------------------------------------------------------------------------- GB/T 28181

# Named type codes of GB/T 28181-2016 (DOMAIN.md lists 111-113, 118, 131, 132, 134, 200, 215,
# 216; the rest are from the standard's table, (check) against the edition in use). Codes in
# the standard's "extension" ranges are rejected as unknown: add them here when a real
# catalogue needs them.
GB28181_TYPES: dict[str, str] = {
    "111": "DVR", "112": "视频服务器", "113": "编码器", "114": "解码器", "115": "视频切换矩阵",
    "116": "音频切换矩阵", "117": "报警控制器", "118": "NVR",
    "131": "摄像机", "132": "网络摄像机(IPC)", "133": "显示器", "134": "报警输入设备",
    "135": "报警输出设备", "136": "语音输入设备", "137": "语音输出设备", "138": "移动传输设备",
    "139": "其他外围设备",
    "200": "中心信令控制服务器", "201": "Web应用服务器", "202": "媒体分发服务器", "203": "代理服务器",
    "204": "安全服务器", "205": "报警服务器", "206": "数据库服务器", "207": "GIS服务器",
    "208": "管理服务器", "209": "接入网关", "210": "媒体存储服务器", "211": "信令安全路由网关",
    "215": "业务分组", "216": "虚拟组织",
    "300": "中心用户", "400": "终端用户",
}

# Sources disagree on 131 vs 132 for some devices, so both count as cameras.
_CAMERA_TYPES = frozenset({"131", "132"})


def validate_gb28181(s: str) -> dict:
    """Parse a 20-digit device id as CCCCCCCC II TTT N SSSSSS (2016 form).

    The older form (no network digit, 7-digit serial) has the same length and cannot be told
    apart; such ids parse with their first serial digit reported as "network".
    Every network digit 0-9 is accepted (9 is "reserved", not invalid).
    """
    s = _text(s, "device id")
    label = f"device id {s!r}"
    _require_digits(s, 20, label)
    try:
        validate_division_code(s[:6])
    except CodeError as e:
        raise CodeError(f"{label}: centre code {s[:8]}: {e}") from None
    if s[10:13] not in GB28181_TYPES:
        raise CodeError(f"{label}: type code {s[10:13]} (characters 11-13) is not a known "
                        "GB/T 28181 device type")
    return {"centre": s[:8], "division": s[:6], "industry": s[8:10], "type": s[10:13],
            "network": s[13], "serial": s[14:]}


def make_gb28181(area6: str, unit2: str, industry2: str, type3: str, network1: str,
                 serial: int) -> str:
    area6 = validate_division_code(area6)
    parts = []
    for value, n, what in ((unit2, 2, "grass-roots unit"), (industry2, 2, "industry code"),
                           (type3, 3, "type code"), (network1, 1, "network digit")):
        value = _text(value, what)
        _require_digits(value, n, f"{what} {value!r}")
        parts.append(value)
    if parts[2] not in GB28181_TYPES:
        raise CodeError(f"type code {parts[2]} is not a known GB/T 28181 device type")
    _int_in(serial, 0, 999_999, "device serial")
    return area6 + "".join(parts) + f"{serial:06d}"


def gb28181_sector(industry2: str) -> str:
    """Map the industry code to a platform sector.

    00-03 public security -> "public_security"; 04-07 traffic -> "traffic";
    08 city management -> "city_management"; 11 education -> "education";
    everything else (09 health/environment, 10 customs, 40-79 enterprises and institutions,
    unassigned codes) -> "society".
    """
    industry2 = _text(industry2, "industry code")
    _require_digits(industry2, 2, f"industry code {industry2!r}")
    n = int(industry2)
    if n <= 3:
        return "public_security"
    if n <= 7:
        return "traffic"
    if n == 8:
        return "city_management"
    if n == 11:
        return "education"
    return "society"


def is_camera_type(type3: str) -> bool:
    return type3 in _CAMERA_TYPES


# ------------------------------------------------------------------- digital city management

def validate_grid_code(s: str) -> str:
    """Unit grid code: 6 division + 3 street + 3 community + 3 serial (15 digits), or the
    14-digit form with a 2-digit serial (CJ/T 213-2005 as recalled) on import.

    Returned unchanged (not padded to 15): component records reference grids by this exact
    string (BGID), so rewriting it would break the join. Zero parts are tolerated on import.
    """
    s = _text(s, "grid code")
    label = f"grid code {s!r}"
    if len(s) not in (14, 15):
        raise CodeError(f"{label}: length {len(s)}, expected 15 digits (or 14 on import)")
    _require_digits(s, len(s), label)
    try:
        validate_division_code(s[:6])
    except CodeError as e:
        raise CodeError(f"{label}: {e}") from None
    return s


def make_grid_code(area6: str, street: int, community: int, serial: int) -> str:
    """Always the 15-digit form; parts start at 1 (grids are numbered from 001)."""
    area6 = validate_division_code(area6)
    _int_in(street, 1, 999, "street number")
    _int_in(community, 1, 999, "community number")
    _int_in(serial, 1, 999, "grid serial")
    return f"{area6}{street:03d}{community:03d}{serial:03d}"


COMPONENT_CLASSES: dict[str, str] = {
    "01": "公用设施",
    "02": "道路交通",
    "03": "市容环境",
    "04": "园林绿化",
    "05": "房屋土地",
    "06": "其他设施",
}

# Only 0101 and 0102 are confirmed from real records; the other numbers are a plausible layout
# of CJ/T 214 small classes for demo data, (check) before matching them against real imports.
COMPONENT_SMALL_CLASSES: dict[str, str] = {
    "0101": "上水井盖",
    "0102": "污水井盖",
    "0103": "雨水井盖",
    "0104": "雨水箅子",
    "0105": "电力井盖",
    "0106": "路灯井盖",
    "0107": "通讯井盖",
    "0108": "消防栓",
    "0109": "路灯",
    "0201": "公交站亭",
    "0202": "停车场",
    "0203": "交通标志牌",
    "0204": "护栏",
    "0205": "交通信号灯",
    "0301": "公共厕所",
    "0302": "垃圾箱",
    "0303": "垃圾间（楼）",
    "0304": "广告牌匾",
    "0401": "行道树",
    "0402": "绿地",
    "0403": "花坛",
    "0404": "雕塑",
    "0501": "危旧房屋",
    "0502": "待建地",
    "0503": "工地",
    "0601": "重大危险源",
    "0602": "工业污染源",
    "0603": "其他部件",
}


def _component_small_ok(small_class4: str, label: str) -> None:
    if small_class4[:2] not in COMPONENT_CLASSES:
        raise CodeError(f"{label}: big class {small_class4[:2]} is not one of "
                        f"{', '.join(COMPONENT_CLASSES)}")
    # Small classes beyond the table are accepted: the table is incomplete by design.
    if small_class4[2:] == "00":
        raise CodeError(f"{label}: small class 00 is not a class")


def validate_component_code(s: str) -> str:
    """16 digits: 6 division + 2 big class (01-06) + 2 small class + 6 serial."""
    s = _text(s, "component code")
    label = f"component code {s!r}"
    _require_digits(s, 16, label)
    try:
        validate_division_code(s[:6])
    except CodeError as e:
        raise CodeError(f"{label}: {e}") from None
    _component_small_ok(s[6:10], label)
    return s


def make_component_code(area6: str, small_class4: str, serial: int) -> str:
    area6 = validate_division_code(area6)
    small_class4 = _text(small_class4, "small class")
    label = f"small class {small_class4!r}"
    _require_digits(small_class4, 4, label)
    _component_small_ok(small_class4, label)
    _int_in(serial, 1, 999_999, "component serial")
    return f"{area6}{small_class4}{serial:06d}"


# 06 is "extension" in DOMAIN.md; the Chinese label is this project's wording.
EVENT_CLASSES: dict[str, str] = {
    "01": "市容环境",
    "02": "宣传广告",
    "03": "施工管理",
    "04": "突发事件",
    "05": "街面秩序",
    "06": "扩展事件",
}
