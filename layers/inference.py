"""A layer definition inferred from a file (GeoPackage, Shapefile, GeoJSON, FlatGeobuf, CSV):
geometry type, attribute types from the values, the id attribute, and which attributes
are personal — marked by default from their names and their values (GB 11643 ID numbers,
mobile and landline numbers, columns of people's names), so a dataset published without a
second look masks them; `public` lists the ones the caller says are not (audited by the
caller).

The rows are read once (layers/importer.py read_rows) and handed back for the import.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from gisplatform.registry.definition import (
    ATTRIBUTE_NAME,
    RESERVED_COLUMNS,
    AttributeDefinition,
    DefinitionError,
    LayerDefinition,
    TileDefinition,
    parse,
)
from gisplatform.temporal import TemporalError, parse_instant

from .codes import CodeError, validate_resident_id
from .importer import LAT, LON, WKT, ImportFailed, Row, csv_geometry, read_rows

MAX_FILE_BYTES = 500 << 20
SIDECARS = (".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx")
FAMILIES = {"Point": "Point", "MultiPoint": "Point", "LineString": "LineString",
            "MultiLineString": "LineString", "Polygon": "Polygon", "MultiPolygon": "Polygon"}

# column names that hold personal data, and how their values are masked
PERSONAL_NAMES = {
    "name": ("姓名", "联系人", "法定代表人", "法人代表", "负责人", "户主", "person_name",
             "contact", "contact_name", "legal_representative", "legal_person_name", "owner_name",
             "full_name", "surname"),
    "phone": ("电话", "手机", "联系电话", "手机号", "phone", "mobile", "tel", "telephone",
              "phone_number", "contact_phone"),
    "id_number": ("身份证", "身份证号", "身份证号码", "证件号", "证件号码", "公民身份号码",
                  "id_number", "id_card", "idcard", "id_no"),
}
# as written: a mobile number (+86 optional), a landline with its area code (024-5767…);
# a bare run of 8 digits is as likely a date or a code
MOBILE = re.compile(r"^(\+?86[- ]?)?1[3-9]\d{9}$")
LANDLINE = re.compile(r"^(\(0\d{2,3}\)|0\d{2,3})[- ]?[2-9]\d{6,7}$")
# common Chinese column names and the attribute name they become
NAMES_ZH = {"名称": "name", "地址": "address", "类型": "kind", "类别": "category",
            "编号": "code", "编码": "code", "代码": "code", "备注": "note", "面积": "area",
            "长度": "length", "高度": "height", "层数": "floors", "年份": "year",
            "日期": "date_text", "状态": "status", "单位": "unit_name", "等级": "grade",
            "所属区": "district", "区县": "district", "街道": "street", "社区": "community",
            "电话": "phone", "联系人": "contact", "姓名": "person_name", "身份证号": "id_number",
            "法定代表人": "legal_representative"}
ID_CANDIDATES = ("id", "code", "fid", "编号", "编码", "代码", "objectid", "gid", "uid")


@dataclass
class Inferred:
    definition: LayerDefinition
    rows: list[Row]
    crs: str | None
    notes: list[str] = field(default_factory=list)

    @property
    def columns(self) -> dict[str, str]:
        """Source column → attribute: the import mapping."""
        return {a.source: a.name for a in self.definition.attributes if a.source}


def file_size(path: Path) -> int:
    size = path.stat().st_size
    if path.suffix.lower() == ".shp":
        size += sum(p.stat().st_size for s in SIDECARS
                    if (p := path.with_suffix(s)).exists())
    return size


def _attribute_name(column: str, i: int, taken: set[str]) -> str:
    plain = re.sub(r"[^a-z0-9_]+", "_", column.strip().lower()).strip("_")
    name = NAMES_ZH.get(column.strip()) or (plain if plain and ATTRIBUTE_NAME.fullmatch(plain)
                                             and len(plain) <= 48 else f"field_{i}")
    if name in RESERVED_COLUMNS or not ATTRIBUTE_NAME.fullmatch(name):
        name = f"{name}_value" if ATTRIBUTE_NAME.fullmatch(f"{name}_value") else f"field_{i}"
    base, n = name, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    return name


def _is_resident_id(v: str) -> bool:
    try:
        validate_resident_id(v)
        return True
    except (CodeError, ValueError):
        return False


def _sql_type(values: list) -> str:
    """The narrowest attribute type all the non-null values fit."""
    if not values:
        return "text"
    if all(isinstance(v, bool) for v in values):
        return "boolean"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "integer" if all(-2**31 <= v < 2**31 for v in values) else "bigint"
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return "double precision"
    texts = [str(v).strip() for v in values]
    # digits with a leading zero or longer than 15 are codes, not numbers (0413…, ID numbers)
    if all(re.fullmatch(r"-?(0|[1-9]\d{0,14})", t) for t in texts):
        return "integer" if all(-2**31 <= int(t) < 2**31 for t in texts) else "bigint"
    if all(re.fullmatch(r"-?(0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?", t) for t in texts):
        return "double precision"
    if all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", t) for t in texts):
        try:
            for t in texts:
                date.fromisoformat(t)
            return "date"
        except ValueError:
            return "text"
    if all(re.fullmatch(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}.*([+-]\d{2}:?\d{2}|Z)", t)
           for t in texts):
        try:
            for t in texts:
                parse_instant(t)
            return "timestamptz"
        except TemporalError:
            return "text"
    return "text"


def _personal(column: str, values: list) -> str | None:
    """The mask kind when the column looks personal, from its name or its values."""
    key = column.strip().lower()
    for kind, names in PERSONAL_NAMES.items():
        if key in names:
            return kind
    texts = [str(v).strip() for v in values if isinstance(v, str | int)]
    if not texts:
        return None
    half = len(texts) / 2
    if sum(_is_resident_id(t) for t in texts if len(t) == 18) >= half:
        return "id_number"
    if sum(bool(MOBILE.fullmatch(t) or LANDLINE.fullmatch(t)) for t in texts) >= half:
        return "phone"
    return None


def _geometry_type(rows: list[Row]) -> str:
    kinds = {r.geometry.geom_type for r in rows if r.geometry is not None
             and not r.geometry.is_empty}
    if not kinds:
        raise DefinitionError("the file has no geometries (a CSV needs lon/lat or wkt columns)")
    unknown = kinds - set(FAMILIES)
    families = {FAMILIES[k] for k in kinds - unknown}
    if unknown or len(families) > 1:
        raise DefinitionError(f"mixed geometry types ({', '.join(sorted(kinds))}): a layer "
                              "has one; split the file by type")
    family = families.pop()
    return family if kinds == {family} else f"Multi{family}"


def _csv_geometries(rows: list[Row]) -> list:
    """The geometries of CSV rows from their lon/lat or WKT columns (None where absent)."""
    out = []
    for r in rows:
        try:
            out.append(csv_geometry(r.fields, lambda a: None)[0])
        except ValueError:
            out.append(None)
    return out


def infer(path: Path, name: str, *, department: str, sharing: str = "conditional",
          id_field: str | None = None, title: str | None = None, title_en: str | None = None,
          theme: str = "published", public: tuple[str, ...] = (),
          source_layer: str | None = None, max_bytes: int = MAX_FILE_BYTES) -> Inferred:
    """The definition of a new layer `name` from the file, with the rows read. Raises
    DefinitionError (or ImportFailed for an unreadable file) naming the problem."""
    if not path.exists():
        raise ImportFailed(f"{path}: no such file")
    size = file_size(path)
    if size > max_bytes:
        raise DefinitionError(f"{path.name} is {size / 2**20:.0f} MB: over the "
                              f"{max_bytes / 2**20:.0f} MB limit of one publication")
    rows, crs = read_rows(path, source_layer)
    if not rows:
        raise DefinitionError(f"{path.name} has no rows")
    columns = list(rows[0].fields)
    bad = [c for c in columns if "\ufffd" in c or not c.isprintable()]
    if bad:
        raise DefinitionError(f"column names that are not UTF-8 text: {bad!r} (save the file "
                              "as UTF-8, or give a Shapefile its .cpg)")
    csv = path.suffix.lower() == ".csv"
    if csv:  # the geometry type from the coordinates; the import reads them again
        geometry_type = _geometry_type([Row(r.number, g, {}) for r, g in
                                        zip(rows, _csv_geometries(rows), strict=True)])
        geo_cols = {c for c in columns if c.lower() in (*LON, *LAT, *WKT)}
        columns = [c for c in columns if c not in geo_cols]
    else:
        geometry_type = _geometry_type(rows)
    notes: list[str] = []
    taken: set[str] = set()
    attrs: list[AttributeDefinition] = []
    unknown_public = set(public) - set(columns)
    for i, col in enumerate(columns, 1):
        values = [r.fields.get(col) for r in rows]
        present = [v for v in values if v not in (None, "")]
        attr = _attribute_name(col, i, taken)
        taken.add(attr)
        if attr in public:
            unknown_public.discard(attr)
        mask = _personal(col, present)
        if mask and (col in public or attr in public):
            notes.append(f"{col}: looks personal ({mask}) but --public-field makes it public")
            mask = None
        elif mask:
            notes.append(f"{col} → {attr}: personal ({mask}), masked unless granted")
        ascii_name = col.isascii()
        attrs.append(AttributeDefinition(
            name=attr, type=_sql_type(present), personal=mask is not None, mask=mask,
            required=len(present) == len(values), source=col,
            title_zh="" if ascii_name else col.strip(), title_en=col.strip() if ascii_name else ""))
    if unknown_public:
        raise DefinitionError(f"--public-field: no column {sorted(unknown_public)}")
    by_source = {a.source: a for a in attrs}
    by_name = {a.name: a for a in attrs}
    if id_field is not None:
        id_attr = by_source.get(id_field) or by_name.get(id_field)
        if id_attr is None:
            raise DefinitionError(f"--id-field {id_field}: no such column "
                                  f"(columns: {', '.join(columns)})")
        dup = _unique(rows, id_attr.source)
        if dup:
            raise DefinitionError(f"id field {id_attr.source} is not unique: {dup}")
    else:  # the first id-like column unique in every row (each scanned once)
        candidates = [a for a in attrs if (a.source or "").strip().lower() in ID_CANDIDATES]
        why = {a.source: _unique(rows, a.source) for a in candidates}
        id_attr = next((a for a in candidates if why[a.source] is None), None)
        if id_attr is None:
            raise DefinitionError("which column identifies a feature? give --id-field "
                                  f"(columns: {', '.join(columns)})"
                                  + "".join(f"; {c} is not: {w}" for c, w in why.items()))
        notes.append(f"id: {id_attr.source} (unique in every row)")
    if id_attr.personal:
        raise DefinitionError(f"id field {id_attr.source} is personal: ids are public in every "
                              "URL; choose another column")
    attrs = [a.model_copy(update={"required": True}) if a is id_attr else a for a in attrs]
    label = next((a.name for a in attrs if not a.personal and a.type == "text"
                  and a.name in ("name", "title", "label")), None)
    definition = parse({
        "name": name, "title_zh": title or "", "title_en": title_en or "", "theme": theme,
        "department": department, "sharing": sharing, "geometry_type": geometry_type,
        "attributes": [a.model_dump() for a in attrs], "id_attribute": id_attr.name,
        "tiles": TileDefinition(label=label, detail_zoom=12 if geometry_type.endswith("Point")
                                else 10).model_dump(),
        "searchable": label})
    return Inferred(definition, rows, crs, notes)


def _unique(rows: list[Row], column: str | None) -> str | None:
    """Why the column is not a unique, present value in every row, or None."""
    seen: dict[str, int] = {}
    for r in rows:
        v = r.fields.get(column)
        if v in (None, ""):
            return f"row {r.number} has no value"
        key = str(v).strip()
        if key in seen:
            return f"rows {seen[key]} and {r.number} both have {key!r}"
        seen[key] = r.number
    return None
