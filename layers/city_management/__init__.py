"""Digital city management (数字化城管): components, cases with their lifecycle, 门前三包 zones."""

from datetime import timedelta

from gisplatform.cases.workflow import STATUSES
from gisplatform.temporal import Attribute as A
from gisplatform.temporal import LayerSpec

from ..codes import (
    COMPONENT_CLASSES,
    COMPONENT_SMALL_CLASSES,
    EVENT_CLASSES,
    validate_component_code,
    validate_grid_code,
    validate_uscc,
)
from ..registry import UNCONDITIONAL, Layer, TileSettings, Workflow, check_choice

DEPARTMENT = "抚顺市城市管理综合行政执法局 City Management Bureau"
COMPONENT_STATES = {"normal", "damaged", "lost", "removed"}
SOURCES = {"patrol", "hotline_12345", "citizen_app", "video"}
# The standard lifecycle, in order (CJ/T 315 / DOMAIN.md). Evaluation is computed, not a step.
STEPS = ("reported", "registered", "dispatched", "handled", "verified", "closed")
CASE_KINDS = {"event", "component"}

# Handling time limits by big class, counted from dispatch (CJ/T 315 gives per-class
# limits; its tables are not at hand, so these are the local working figures used
# by the demo and the overdue rule, kept in one place).
TIME_LIMITS = {
    ("component", "01"): timedelta(hours=24), ("component", "02"): timedelta(hours=48),
    ("component", "03"): timedelta(hours=24), ("component", "04"): timedelta(hours=72),
    ("component", "05"): timedelta(hours=72), ("component", "06"): timedelta(hours=72),
    ("event", "01"): timedelta(hours=4), ("event", "02"): timedelta(hours=24),
    ("event", "03"): timedelta(hours=24), ("event", "04"): timedelta(hours=2),
    ("event", "05"): timedelta(hours=4), ("event", "06"): timedelta(hours=48),
}


def _check_component(p: dict) -> list[str]:
    p["code"] = validate_component_code(str(p.get("code") or ""))
    p["big_class"], p["small_class"] = p["code"][6:8], p["code"][6:10]
    check_choice(p, "state", COMPONENT_STATES, required=True)
    if p.get("grid_code") is not None:
        p["grid_code"] = validate_grid_code(str(p["grid_code"]))
    return []


def _check_case(p: dict) -> list[str]:
    check_choice(p, "kind", CASE_KINDS, required=True)
    classes = COMPONENT_CLASSES if p["kind"] == "component" else EVENT_CLASSES
    check_choice(p, "big_class", set(classes), required=True)
    check_choice(p, "source", SOURCES, required=True)
    check_choice(p, "status", set(STATUSES), required=True)  # the workflow's (gisplatform/cases)
    if p.get("grid_code") is not None:
        p["grid_code"] = validate_grid_code(str(p["grid_code"]))
    for a, b in (("reported_at", "dispatched_at"), ("dispatched_at", "handled_at"),
                 ("dispatched_at", "closed_at")):
        if p.get(a) and p.get(b) and p[b] < p[a]:
            raise ValueError(f"{b} is before {a}")
    return []


def _check_zone(p: dict) -> list[str]:
    ok = validate_uscc(str(p.get("credit_code") or "").upper())
    p["credit_code"] = str(p["credit_code"]).upper()
    return [] if ok else [f"credit_code {p['credit_code']} fails its check character"]


COMPONENTS = Layer(
    LayerSpec("components", "Point", (
        A("code", "text", True, description="component code: division 6 + big 2 + small 2 + serial 6"),
        A("name", "text", True),
        A("big_class", "text", True),
        A("small_class", "text", True),
        A("dept_supervising", "text"),
        A("dept_owner", "text"),
        A("dept_maintaining", "text"),
        A("grid_code", "text"),
        A("state", "text", True, description=", ".join(sorted(COMPONENT_STATES))),
    ), title="城市部件 City-management components",
        description="Managed street objects (部件): well covers, lamps, signs, bins, trees ..."),
    theme="city_management", department=DEPARTMENT, sharing=UNCONDITIONAL, fid="code",
    validate=_check_component, keywords=("部件", "数字化城管", "components"),
    tiles=TileSettings(detail_zoom=15, color="#33a02c"))

CASES = Layer(
    LayerSpec("cases", "Point", (
        A("case_number", "text", True),
        A("kind", "text", True, description="event (事件) | component (部件)"),
        A("big_class", "text", True),
        A("small_class", "text"),
        A("description", "text"),
        A("source", "text", True, description=", ".join(sorted(SOURCES))),
        A("status", "text", True, description=" → ".join(STEPS) + "; rejected, suspended"),
        A("grid_code", "text"),
        A("division_code", "text"),
        A("department", "text", description="handling department"),
        A("reported_at", "timestamptz", True),
        A("dispatched_at", "timestamptz"),
        A("deadline", "timestamptz", description="dispatched_at + the class's time limit"),
        A("handled_at", "timestamptz", description="when the handling unit reported it done"),
        A("closed_at", "timestamptz"),
        A("rework_count", "integer", description="times sent back at verification"),
        # hotline and citizen reports: who to call back (migration 0023)
        A("reporter_name", "text", personal=True, mask="name", description="报告人"),
        A("reporter_phone", "text", personal=True, mask="phone", description="报告人电话"),
    ), title="城管案件 City-management cases",
        description="Problems reported and handled through the standard lifecycle; steps in "
                    "city.case_steps, overdue status in city.case_status."),
    theme="city_management", department=DEPARTMENT, sharing=UNCONDITIONAL, fid="case_number",
    validate=_check_case, keywords=("案件", "12345", "数字化城管", "cases"),
    tiles=TileSettings(detail_zoom=14, color="#ff7f00"),
    # the lifecycle is the workflow's (gisplatform/cases): a plain writer cannot forge it
    workflow=Workflow("POST /api/cases and POST /api/cases/{case_number}/steps", (
        "case_number", "status", "grid_code", "division_code", "department", "reported_at",
        "dispatched_at", "deadline", "handled_at", "closed_at", "rework_count")))

RESPONSIBILITY_ZONES = Layer(
    LayerSpec("responsibility-zones", "MultiPolygon", (
        A("zone_code", "text", True),
        A("credit_code", "text", True, description="the responsible legal person"),
        A("name", "text"),
        A("duties", "text", description="sanitation, order, greenery (门前三包)"),
        A("grid_code", "text"),
    ), title="门前三包责任区 Storefront responsibility zones",
        description="Sanitation, order and greenery zones in front of shops and units."),
    theme="city_management", department=DEPARTMENT, sharing=UNCONDITIONAL, fid="zone_code",
    validate=_check_zone, keywords=("门前三包", "responsibility zones"),
    tiles=TileSettings(detail_zoom=13, color="#fdbf6f"))

LAYERS = (COMPONENTS, CASES, RESPONSIBILITY_ZONES)


def case_classes() -> dict:
    """The classes a case is reported under, as a reporting client picks them (GET
    /api/cases/classes): per kind its big classes and, where the code tables have them,
    their small classes, each with its Chinese name. Events have no small-class table here
    (layers/codes.py), so their `small_classes` are empty."""
    def big(classes: dict, small: dict) -> list[dict]:
        return [{"code": c, "name": name,
                 "small_classes": [{"code": s, "name": n} for s, n in small.items() if s[:2] == c]}
                for c, name in classes.items()]
    return {"kinds": [{"code": "event", "name": "事件", "name_en": "Event",
                       "big_classes": big(EVENT_CLASSES, {})},
                      {"code": "component", "name": "部件", "name_en": "Component",
                       "big_classes": big(COMPONENT_CLASSES, COMPONENT_SMALL_CLASSES)}],
            "sources": sorted(SOURCES)}
