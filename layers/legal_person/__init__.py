"""Legal persons: companies and organisations by unified social credit code."""

from gisplatform.temporal import Attribute as A
from gisplatform.temporal import LayerSpec

from ..codes import validate_uscc
from ..registry import UNCONDITIONAL, Layer, TileSettings, check_choice

DEPARTMENT = "抚顺市市场监督管理局 Market Regulation Bureau"
ENTITY_TYPES = {"enterprise", "individual_business", "cooperative", "institution",
                "social_organization", "other"}
STATUSES = {"active", "revoked", "cancelled"}  # 存续 / 吊销 / 注销


def _check_legal_person(p: dict) -> list[str]:
    code = str(p.get("credit_code") or "").strip().upper()
    p["credit_code"] = code
    ok = validate_uscc(code)  # raises on malformed codes
    p["check_ok"] = ok
    warnings = [] if ok else [f"credit_code {code} fails its check character "
                              "(early pilot codes do); kept and flagged check_ok=false"]
    check_choice(p, "entity_type", ENTITY_TYPES)
    check_choice(p, "status", STATUSES, required=True)
    if p.get("cancelled_date") and p.get("established") and p["cancelled_date"] < p["established"]:
        raise ValueError("cancelled_date is before established")
    if p.get("registered_capital") is not None and p["registered_capital"] < 0:
        raise ValueError("registered_capital is negative")
    return warnings


LEGAL_PERSONS = Layer(
    LayerSpec("legal-persons", "Point", (
        A("credit_code", "text", True, description="unified social credit code (GB 32100)"),
        A("check_ok", "boolean", True, description="false: well-formed code failing its check (pilot-era)"),
        A("name", "text", True),
        A("entity_type", "text", description=", ".join(sorted(ENTITY_TYPES))),
        A("legal_representative", "text", personal=True, mask="name"),
        A("industry_code", "text", description="GB/T 4754 class"),
        A("registered_capital", "numeric(16,2)", description="10 000 CNY"),
        A("status", "text", True, description="active | revoked | cancelled"),
        A("established", "date"),
        A("cancelled_date", "date"),
        A("address", "text"),
        A("division_code", "text"),
    ), title="法人 Legal persons",
        description="Enterprises, individual businesses and organisations registered in Fushun."),
    theme="legal_person", department=DEPARTMENT, sharing=UNCONDITIONAL, fid="credit_code",
    validate=_check_legal_person, keywords=("法人", "统一社会信用代码", "legal persons"),
    tiles=TileSettings(detail_zoom=14, color="#cab2d6"))

LAYERS = (LEGAL_PERSONS,)
