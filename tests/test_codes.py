"""Tests for layers.codes: published examples, error paths, and generate->validate properties.

No database fixtures: the module is pure Python.
"""

from __future__ import annotations

import datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layers import codes
from layers.codes import (
    COMPONENT_CLASSES,
    COMPONENT_SMALL_CLASSES,
    EVENT_CLASSES,
    FUSHUN_DIVISIONS,
    GB28181_TYPES,
    USCC_ALPHABET,
    USCC_AUTHORITIES,
    CodeError,
    gb28181_sector,
    is_camera_type,
    make_component_code,
    make_gb28181,
    make_grid_code,
    make_resident_id,
    make_uscc,
    mask_name,
    mask_resident_id,
    org_code_check_char,
    resident_id_birth,
    resident_id_check_char,
    resident_id_sex,
    uscc_check_char,
    validate_component_code,
    validate_division_code,
    validate_gb28181,
    validate_grid_code,
    validate_resident_id,
    validate_uscc,
)

TODAY = datetime.date(2026, 5, 9)


# =========================================================================== GB 11643

def test_gb11643_standard_example():
    # 11010519491231002X, weights 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2 on the first 17 digits:
    #   1·7 + 1·9 + 0·10 + 1·5 + 0·8 + 5·4 + 1·2 + 9·1 + 4·6 + 9·3 + 1·7 + 2·9 + 3·10
    #   + 1·5 + 0·8 + 0·4 + 2·2 = 167;  167 mod 11 = 2;  "10X98765432"[2] = 'X'.
    assert resident_id_check_char("11010519491231002") == "X"
    assert validate_resident_id("11010519491231002X") == "11010519491231002X"
    assert resident_id_sex("11010519491231002X") == "F"          # sequence 002 is even
    assert resident_id_birth("11010519491231002X") == datetime.date(1949, 12, 31)


def test_resident_id_normalizes_lower_case_x_and_whitespace():
    assert validate_resident_id(" 11010519491231002x ") == "11010519491231002X"


def test_resident_id_wrong_check_message_is_precise_and_redacted():
    with pytest.raises(CodeError) as ei:
        validate_resident_id("110105194912310023")
    msg = str(ei.value)
    assert msg == "resident id 1101051949...: check character is 3, expected X"
    assert "110105194912310023" not in msg   # personal data stays out of logs


@pytest.mark.parametrize(
    "value, fragment",
    [
        ("11010519491231002", "length 17, expected 18"),
        ("11010519491231002X1", "length 19, expected 18"),
        ("1101051949123100XX", "character 17 'X' is not a digit"),
        ("11010A19491231002X", "character 6 'A' is not a digit"),
        ("11010519491231002Y", "check character 'Y' is not a digit or X"),
        ("001234194912310029", "province part 00"),
        ("101234194912310029", "province part 10"),
        ("110105194913310020", "birth date (characters 7-14) is not a calendar date"),
        ("110105190002290020", "not a calendar date"),       # 1900 is not a leap year
        ("110105189912310020", "birth year 1899 is before 1900"),
        ("110105203001010020", "birth date is in the future (after 2026-05-09)"),
    ],
)
def test_resident_id_rejections(value, fragment):
    with pytest.raises(CodeError) as ei:
        validate_resident_id(value, today=TODAY)
    assert fragment in str(ei.value)


def test_resident_id_non_string_is_code_error():
    with pytest.raises(CodeError, match="expected a string"):
        validate_resident_id(11010519491231002)   # type: ignore[arg-type]


def test_resident_id_today_boundary():
    rid = make_resident_id("210402", TODAY, 1)
    assert validate_resident_id(rid, today=TODAY) == rid
    with pytest.raises(CodeError, match="future"):
        validate_resident_id(rid, today=TODAY - datetime.timedelta(days=1))


def test_resident_id_leap_day_and_1900():
    assert validate_resident_id(make_resident_id("210411", datetime.date(2000, 2, 29), 17))
    assert validate_resident_id(make_resident_id("210411", datetime.date(1900, 1, 1), 0))


def test_make_resident_id_sex_and_layout():
    male = make_resident_id("210402", datetime.date(1990, 5, 17), 123)
    female = make_resident_id("210402", datetime.date(1990, 5, 17), 124)
    assert male[:17] == "21040219900517123" and resident_id_sex(male) == "M"
    assert female[:17] == "21040219900517124" and resident_id_sex(female) == "F"
    assert make_resident_id("210402", datetime.date(1990, 5, 17), 0)[14:17] == "000"


@pytest.mark.parametrize(
    "area, birth, seq, fragment",
    [
        ("21040", datetime.date(1990, 1, 1), 1, "length 5, expected 6"),
        ("050402", datetime.date(1990, 1, 1), 1, "province part 05"),
        ("210402", datetime.date(1899, 12, 31), 1, "before 1900"),
        ("210402", datetime.date(1990, 1, 1), 1000, "out of range 0..999"),
        ("210402", datetime.date(1990, 1, 1), -1, "out of range 0..999"),
        ("210402", datetime.date(1990, 1, 1), True, "must be an int"),
        ("210402", "1990-01-01", 1, "must be a datetime.date"),
    ],
)
def test_make_resident_id_rejects(area, birth, seq, fragment):
    with pytest.raises(CodeError) as ei:
        make_resident_id(area, birth, seq)
    assert fragment in str(ei.value)


def test_mask_resident_id():
    assert mask_resident_id("210402199005171234") == "210402********1234"
    assert mask_resident_id("21040219900517123x") == "210402********123X"
    # first-generation 15-digit number: same rule, shorter middle
    assert mask_resident_id("210402900517123") == "210402*****7123"
    # anything else is hidden whole rather than partially leaked
    assert mask_resident_id("2104021990") == "**********"
    # masking does not validate: a record flagged for a bad check character is still displayable
    assert mask_resident_id("110105194912310023") == "110105********0023"


@pytest.mark.parametrize(
    "name, masked",
    [
        ("张三丰", "张**"),
        ("张三", "张*"),
        ("欧阳修", "欧**"),
        ("阿依古丽·买买提", "阿*******"),
        ("王", "*"),
        ("John Smith", "J***"),
        ("Li", "L***"),
        ("  李四 ", "李*"),
        ("", ""),
    ],
)
def test_mask_name(name, masked):
    assert mask_name(name) == masked


@given(
    area=st.sampled_from(sorted(FUSHUN_DIVISIONS) + ["110105", "650102", "820000"]),
    birth=st.dates(min_value=datetime.date(1900, 1, 1), max_value=TODAY),
    seq=st.integers(0, 999),
)
def test_property_resident_id_round_trip(area, birth, seq):
    rid = make_resident_id(area, birth, seq)
    assert len(rid) == 18
    assert validate_resident_id(rid, today=TODAY) == rid
    assert resident_id_birth(rid) == birth
    assert resident_id_sex(rid) == ("M" if seq % 2 else "F")
    assert mask_resident_id(rid) == area + "*" * 8 + rid[-4:]


@given(
    birth=st.dates(min_value=datetime.date(1900, 1, 1), max_value=TODAY),
    seq=st.integers(0, 999),
    pos=st.integers(0, 17),
    data=st.data(),
)
def test_property_resident_id_single_change_fails(birth, seq, pos, data):
    # 11 is prime and no weight is 0 mod 11, so any one-digit change alters S mod 11.
    rid = make_resident_id("210404", birth, seq)
    new = data.draw(st.sampled_from([c for c in "0123456789X" if c != rid[pos]]))
    mutated = rid[:pos] + new + rid[pos + 1:]
    with pytest.raises(CodeError):
        validate_resident_id(mutated, today=TODAY)


# =========================================================================== GB 32100 / GB 11714

def test_uscc_published_example_passes():
    # 91350100M000100Y43, values in the 31-character alphabet (M=21, Y=30), weights
    # 1 3 9 27 19 26 16 17 20 29 25 13 8 24 10 30 28:
    #   9·1 + 1·3 + 3·9 + 5·27 + 0·19 + 1·26 + 0 + 0 + 21·20 + 0 + 0 + 0 + 1·8 + 0 + 0
    #   + 30·30 + 4·28 = 9+3+27+135+26+420+8+900+112 = 1640;  1640 mod 31 = 28;
    #   K = 31 − 28 = 3 -> '3' = the 18th character. Passes.
    assert uscc_check_char("91350100M000100Y4") == "3"
    assert validate_uscc("91350100M000100Y43") is True


def test_uscc_embedded_org_code_of_published_example():
    # Embedded organization code M000100Y-4; GB 11714 values letters over full A-Z (M=22,
    # Y=34), weights 3 7 9 10 5 8 4 2: 22·3 + 1·5 + 34·2 = 139; 139 mod 11 = 7; 11 − 7 = 4.
    assert org_code_check_char("M000100Y") == "4"
    # so building the code from its parts reproduces it exactly
    assert make_uscc("9", "1", "350100", "M000100Y") == "91350100M000100Y43"


def test_uscc_pilot_code_is_well_formed_but_fails_check():
    # 91350100M0001TGQXM: 9·1 + 1·3 + 3·9 + 5·27 + 1·26 + 21·20 + 1·8 + T(26)·24 + G(16)·10
    #   + Q(24)·30 + X(29)·28 = 9+3+27+135+26+420+8+624+160+720+812 = 2944;
    #   2944 mod 31 = 30; K = 1 -> '1', but the code ends in 'M': fails, as DOMAIN.md says
    #   early pilot codes do. Well formed, so False rather than an exception.
    assert uscc_check_char("91350100M0001TGQX") == "1"
    assert validate_uscc("91350100M0001TGQXM") is False
    # its embedded org code M0001TGQ-X does satisfy GB 11714: 22·3 + 1·5 + 29·8 + 16·4 + 26·2
    # = 419; 419 mod 11 = 1; 11 − 1 = 10 -> 'X'.
    assert org_code_check_char("M0001TGQ") == "X"


def test_uscc_case_and_whitespace_insensitive():
    assert validate_uscc(" 91350100m000100y43 ") is True


@pytest.mark.parametrize(
    "value, fragment",
    [
        ("91350100M000100Y4", "length 17, expected 18"),
        ("91350100M000100Y431", "length 19, expected 18"),
        ("91350100M0001I0Y43", "character 14 'I' is not in the GB 32100 alphabet"),
        ("91350100O000100Y43", "character 9 'O' is not in the GB 32100 alphabet"),
        ("91350100M000100Y4Z", "character 18 'Z'"),
        ("94350100M000100Y43", "category '4' is not defined for registration authority 9"),
        ("99350100M000100Y43", "category '9' is not defined for registration authority 9"),
        ("Y2350100M000100Y43", "category '2' is not defined for registration authority Y"),
        ("B1350100M000100Y43", "registration authority 'B' is not known"),
        ("0135010M0000100Y43", "registration authority '0' is not known"),
        ("913501A0M000100Y43", "division code '3501A0' is not 6 digits (character 7 is 'A')"),
    ],
)
def test_uscc_malformed_raises(value, fragment):
    with pytest.raises(CodeError) as ei:
        validate_uscc(value)
    assert fragment in str(ei.value)


def test_uscc_known_pairs_accepted():
    # spot checks across the table, including authorities added after GB 32100-2015
    for authority, category in [("1", "1"), ("1", "9"), ("3", "1"), ("5", "3"), ("7", "1"),
                                ("8", "1"), ("9", "2"), ("9", "3"), ("A", "1"), ("N", "2"),
                                ("Y", "1")]:
        code = make_uscc(authority, category, "210402", "MA0X1234")
        assert code[:2] == authority + category
        assert validate_uscc(code) is True


def test_uscc_central_division_100000_is_well_formed():
    code = make_uscc("1", "1", "100000", "00001312")
    assert validate_uscc(code) is True


def test_make_uscc_rejects_body_outside_alphabet():
    # 'I' is a legal GB 11714 character but would make the USCC malformed
    assert org_code_check_char("MAI01234") in "0123456789X"
    with pytest.raises(CodeError, match="character 3 'I'"):
        make_uscc("9", "1", "210402", "MAI01234")
    with pytest.raises(CodeError, match="length 7, expected 8"):
        make_uscc("9", "1", "210402", "MA01234")
    with pytest.raises(CodeError, match="category '5'"):
        make_uscc("9", "5", "210402", "MA012345")
    with pytest.raises(CodeError, match="length 5, expected 6"):
        make_uscc("9", "1", "21040", "MA012345")


def test_org_code_check_char_x_and_0_cases():
    # 10 -> 'X' and 11 -> '0' are the two special cases of C = 11 − (Σ mod 11)
    assert org_code_check_char("M0001TGQ") == "X"
    assert org_code_check_char("00000000") == "0"          # Σ = 0 -> 11 -> '0'
    with pytest.raises(CodeError, match="not a digit or A-Z"):
        org_code_check_char("M000-100")


_PAIRS = [(a, c) for a, (_, cats) in USCC_AUTHORITIES.items() for c in cats]


@st.composite
def usccs(draw):
    authority, category = draw(st.sampled_from(_PAIRS))
    area = draw(st.text("0123456789", min_size=6, max_size=6))
    body = draw(st.text(USCC_ALPHABET, min_size=8, max_size=8))
    return make_uscc(authority, category, area, body), body


@given(usccs())
def test_property_uscc_round_trip(generated):
    code, body = generated
    assert len(code) == 18
    assert set(code) <= set(USCC_ALPHABET)
    assert validate_uscc(code) is True
    assert code[8:16] == body
    assert code[16] == org_code_check_char(body)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(usccs(), st.integers(0, 17), st.data())
def test_property_uscc_single_change_fails(generated, pos, data):
    # 31 is prime and every weight is nonzero mod 31, so a one-character change always moves
    # the sum; the mutant is either malformed (CodeError) or fails the check (False).
    code, _ = generated
    new = data.draw(st.sampled_from([c for c in USCC_ALPHABET if c != code[pos]]))
    mutated = code[:pos] + new + code[pos + 1:]
    try:
        result = validate_uscc(mutated)
    except CodeError:
        return
    assert result is False


@given(usccs(), st.integers(0, 17), st.sampled_from("IOSVZ-*#"))
def test_property_uscc_foreign_character_is_malformed(generated, pos, bad):
    code, _ = generated
    mutated = code[:pos] + bad + code[pos + 1:]
    with pytest.raises(CodeError, match=f"character {pos + 1} "):
        validate_uscc(mutated)


# =========================================================================== GB/T 28181

def test_gb28181_common_example_parses():
    assert validate_gb28181("34020000001320000001") == {
        "centre": "34020000", "division": "340200", "industry": "00", "type": "132",
        "network": "0", "serial": "000001",
    }


def test_make_gb28181_layout():
    did = make_gb28181("210402", "01", "08", "131", "6", 42)
    assert did == "21040201081316000042"
    parsed = validate_gb28181(did)
    assert parsed["division"] == "210402" and parsed["centre"] == "21040201"
    assert gb28181_sector(parsed["industry"]) == "city_management"
    assert is_camera_type(parsed["type"])


@pytest.mark.parametrize(
    "value, fragment",
    [
        ("3402000000132000000", "length 19, expected 20 digits"),
        ("340200000013200000011", "length 21, expected 20 digits"),
        ("3402000000132000000A", "character 20 'A' is not a digit"),
        ("34020000009990000001", "type code 999 (characters 11-13) is not a known"),
        ("34020000001000000001", "type code 100"),
        ("00020000001320000001", "province part 00"),
        ("99020000001320000001", "province part 99"),
    ],
)
def test_gb28181_rejections(value, fragment):
    with pytest.raises(CodeError) as ei:
        validate_gb28181(value)
    assert fragment in str(ei.value)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (("210402", "1", "08", "131", "6", 1), "grass-roots unit '1'"),
        (("210402", "01", "8", "131", "6", 1), "industry code '8'"),
        (("210402", "01", "08", "999", "6", 1), "type code 999"),
        (("210402", "01", "08", "131", "66", 1), "network digit '66'"),
        (("210402", "01", "08", "131", "6", 1_000_000), "out of range 0..999999"),
        (("000402", "01", "08", "131", "6", 1), "province part 00"),
    ],
)
def test_make_gb28181_rejects(args, fragment):
    with pytest.raises(CodeError) as ei:
        make_gb28181(*args)
    assert fragment in str(ei.value)


@pytest.mark.parametrize(
    "industry, sector",
    [
        ("00", "public_security"), ("03", "public_security"),
        ("04", "traffic"), ("07", "traffic"),
        ("08", "city_management"),
        ("09", "society"), ("10", "society"),
        ("11", "education"),
        ("12", "society"), ("40", "society"), ("79", "society"), ("99", "society"),
    ],
)
def test_gb28181_sector(industry, sector):
    assert gb28181_sector(industry) == sector


def test_gb28181_sector_rejects_malformed():
    with pytest.raises(CodeError, match="length 1"):
        gb28181_sector("8")


def test_is_camera_type():
    assert is_camera_type("131") and is_camera_type("132")
    assert not any(is_camera_type(t) for t in ("111", "118", "134", "200", "215", "13"))


@given(
    area=st.sampled_from(sorted(FUSHUN_DIVISIONS)),
    unit=st.integers(0, 99),
    industry=st.integers(0, 99),
    type3=st.sampled_from(sorted(GB28181_TYPES)),
    network=st.integers(0, 9),
    serial=st.integers(0, 999_999),
)
def test_property_gb28181_round_trip(area, unit, industry, type3, network, serial):
    did = make_gb28181(area, f"{unit:02d}", f"{industry:02d}", type3, str(network), serial)
    parsed = validate_gb28181(did)
    assert did == "".join(parsed[k] for k in ("centre", "industry", "type", "network", "serial"))
    assert parsed["division"] == area
    assert int(parsed["serial"]) == serial
    assert parsed["type"] == type3


# =========================================================================== grids, components

def test_grid_code_real_example_and_14_digit_form():
    # 320582110152102 is a real 15-digit record: 320582 / 110 / 152 / 102
    assert validate_grid_code("320582110152102") == "320582110152102"
    # the 14-digit form is accepted on import and returned unchanged (BGID joins rely on it)
    assert validate_grid_code("21040200100101") == "21040200100101"


@pytest.mark.parametrize(
    "value, fragment",
    [
        ("2104020010010", "length 13"),
        ("2104020010010011", "length 16"),
        ("21040200100100A", "character 15 'A' is not a digit"),
        ("001402001001001", "province part 00"),
    ],
)
def test_grid_code_rejections(value, fragment):
    with pytest.raises(CodeError) as ei:
        validate_grid_code(value)
    assert fragment in str(ei.value)


def test_make_grid_code():
    assert make_grid_code("210411", 1, 2, 3) == "210411001002003"
    for bad in ((0, 1, 1), (1, 1000, 1), (1, 1, 0)):
        with pytest.raises(CodeError, match="out of range"):
            make_grid_code("210411", *bad)


@given(
    area=st.sampled_from(sorted(FUSHUN_DIVISIONS)),
    street=st.integers(1, 999), community=st.integers(1, 999), serial=st.integers(1, 999),
)
def test_property_grid_round_trip(area, street, community, serial):
    code = make_grid_code(area, street, community, serial)
    assert len(code) == 15
    assert validate_grid_code(code) == code
    assert (int(code[6:9]), int(code[9:12]), int(code[12:])) == (street, community, serial)


def test_component_tables():
    assert COMPONENT_CLASSES == {"01": "公用设施", "02": "道路交通", "03": "市容环境",
                                 "04": "园林绿化", "05": "房屋土地", "06": "其他设施"}
    assert COMPONENT_SMALL_CLASSES["0101"] == "上水井盖"
    assert COMPONENT_SMALL_CLASSES["0102"] == "污水井盖"
    for code in COMPONENT_SMALL_CLASSES:
        assert len(code) == 4 and code.isdigit() and code[:2] in COMPONENT_CLASSES
    per_class = {big: sum(k[:2] == big for k in COMPONENT_SMALL_CLASSES)
                 for big in COMPONENT_CLASSES}
    assert all(n >= 3 for n in per_class.values()), per_class
    assert EVENT_CLASSES["01"] == "市容环境" and EVENT_CLASSES["05"] == "街面秩序"
    assert sorted(EVENT_CLASSES) == ["01", "02", "03", "04", "05", "06"]


def test_component_code_real_example():
    assert validate_component_code("3205080101000001") == "3205080101000001"
    assert make_component_code("320508", "0101", 1) == "3205080101000001"


@pytest.mark.parametrize(
    "value, fragment",
    [
        ("320508010100001", "length 15, expected 16 digits"),
        ("32050801010000A1", "character 15 'A'"),
        ("3205080701000001", "big class 07 is not one of 01, 02, 03, 04, 05, 06"),
        ("3205080001000001", "big class 00"),
        ("3205080100000001", "small class 00 is not a class"),
        ("0005080101000001", "province part 00"),
    ],
)
def test_component_code_rejections(value, fragment):
    with pytest.raises(CodeError) as ei:
        validate_component_code(value)
    assert fragment in str(ei.value)


def test_make_component_code_rejects():
    with pytest.raises(CodeError, match="big class 09"):
        make_component_code("210402", "0901", 1)
    with pytest.raises(CodeError, match="length 3"):
        make_component_code("210402", "101", 1)
    with pytest.raises(CodeError, match="out of range 1..999999"):
        make_component_code("210402", "0101", 0)


@given(
    area=st.sampled_from(sorted(FUSHUN_DIVISIONS)),
    small=st.sampled_from(sorted(COMPONENT_SMALL_CLASSES)),
    serial=st.integers(1, 999_999),
)
def test_property_component_round_trip(area, small, serial):
    code = make_component_code(area, small, serial)
    assert validate_component_code(code) == code
    assert code[:6] == area and code[6:10] == small and int(code[10:]) == serial


# =========================================================================== GB/T 2260

def test_division_codes():
    for code in FUSHUN_DIVISIONS:
        assert validate_division_code(code) == code
    assert validate_division_code(" 210000 ") == "210000"
    assert validate_division_code("820000") == "820000"
    for bad, fragment in [("21040", "length 5"), ("21040a", "character 6 'a'"),
                          ("100000", "province part 10"), ("830000", "province part 83")]:
        with pytest.raises(CodeError) as ei:
            validate_division_code(bad)
        assert fragment in str(ei.value)


def test_code_error_is_value_error():
    assert issubclass(CodeError, ValueError)
    assert set(codes.__all__) <= set(dir(codes))
