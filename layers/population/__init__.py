"""Population: persons (personal data, conditional sharing) and the public aggregate grid."""

from gisplatform.security import pseudonym
from gisplatform.temporal import Attribute as A
from gisplatform.temporal import LayerSpec

from ..codes import resident_id_birth, resident_id_sex, validate_resident_id
from ..registry import CONDITIONAL, KeyedFid, Layer, TileSettings, check_choice

DEPARTMENT = "抚顺市公安局 Public Security Bureau"
HOUSEHOLD_TYPES = {"registered", "floating"}  # 户籍人口 / 流动人口


# A person's stable id: a keyed pseudonym of the ID number. An unkeyed hash gave the number
# back to any `read` grant: masked, it shows all but the birth date (security/pseudonyms.py).
PERSON_FID = KeyedFid("id_number", "p", validate_resident_id)


def fid_for_id_number(rid: str, key: bytes) -> str:
    """The fid of an already validated ID number under the database's pseudonym key."""
    return pseudonym(key, rid, PERSON_FID.prefix)


def _check_person(p: dict) -> list[str]:
    p["id_number"] = validate_resident_id(str(p.get("id_number") or ""))
    sex, birth = resident_id_sex(p["id_number"]), resident_id_birth(p["id_number"])
    if p.get("sex") is None:
        p["sex"] = sex
    elif p["sex"] != sex:
        raise ValueError(f"sex {p['sex']} contradicts the ID number ({sex})")
    if p.get("birth_date") is None:
        p["birth_date"] = birth
    elif p["birth_date"] != birth:
        raise ValueError(f"birth_date {p['birth_date']} contradicts the ID number ({birth})")
    check_choice(p, "household_type", HOUSEHOLD_TYPES, required=True)
    if not str(p.get("name") or "").strip():
        raise ValueError("name is required")
    return []


PERSONS = Layer(
    LayerSpec("persons", "Point", (
        A("id_number", "text", True, personal=True, mask="id_number", description="resident ID (GB 11643)"),
        A("name", "text", True, personal=True, mask="name"),
        A("sex", "text", True, description="M | F (from the ID number)"),
        A("birth_date", "date", True, personal=True, mask="date"),
        A("household_type", "text", True, description="registered (户籍) | floating (流动)"),
        A("unit_code", "text", description="the housing unit lived in"),
        A("building_code", "text"),
        A("phone", "text", personal=True, mask="phone"),
        A("division_code", "text"),
    ), title="人口 Persons",
        description="Residents with the housing unit they live in; the point is their building. "
                    "Personal data: masked unless granted, every unmasked read audited."),
    theme="population", department=DEPARTMENT, sharing=CONDITIONAL, fid=PERSON_FID,
    validate=_check_person, keywords=("人口", "户籍", "流动人口", "persons"),
    tiles=TileSettings(detail_zoom=16, color="#fb9a99"))

LAYERS = (PERSONS,)
