"""A layer definition as data: what a layer is, in a form that is stored, printed, reviewed
and checked — the 11 built-in layers (described from their Python modules, whose national
code checks stay in code) and every layer an analyst publishes (declarative checks only).

`LayerDefinition` is the one schema (pydantic): `to_layer()` gives the runtime `Layer` the
rest of the platform serves (OGC, tiles, feed, exports …), `describe(layer)` the definition
of a built-in one. TOML is the review format (`gisplatform layer create --dry-run` prints
it, `--spec` reads it); the registry (layers/published.py) stores it as JSON.

Names are refused unless they are plain: a collection id becomes a table name, a URL
segment and a tile layer name; an attribute name a column. Both are quoted wherever they
reach SQL anyway.
"""

from __future__ import annotations

import re
import tomllib
from typing import Annotated, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy.dialects.postgresql.base import RESERVED_WORDS

from gisplatform.security import CONDITIONAL, NOT_SHARED, PUBLISH_TARGET, UNCONDITIONAL
from gisplatform.security.masking import MASK_KINDS
from gisplatform.temporal import Attribute, LayerSpec

from .layer import KeyedFid, Layer, TileSettings, check_choice, check_range

__all__ = ["AttributeDefinition", "DefinitionError", "LayerDefinition", "TileDefinition",
           "describe", "parse_toml"]

GEOMETRY_TYPES = ("Point", "MultiPoint", "LineString", "MultiLineString", "Polygon",
                  "MultiPolygon")
# the attribute types a published layer may declare: each has an importer coercion
# (layers/importer.py coerce) and a JSON Schema type in the OGC queryables
TYPES = ("text", "integer", "bigint", "smallint", "double precision", "numeric", "boolean",
         "date", "timestamptz")
SHARING = (UNCONDITIONAL, CONDITIONAL, NOT_SHARED)
# columns every version table has, and the properties cluster tiles add
RESERVED_COLUMNS = frozenset({"vid", "fid", "valid", "recorded", "geom", "valid_from",
                              "valid_to", "count", "cluster", "id", "oid", "ctid", "xmin",
                              "xmax", "cmin", "cmax", "tableoid"})
LAYER_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
ATTRIBUTE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")


class DefinitionError(ValueError):
    """A definition that cannot be a layer; the message names every problem."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _zh_en(zh: str, en: str) -> str:
    """"中文 English", or whichever is there: how titles are shown."""
    return " ".join(t for t in (zh, en) if t)


class AttributeDefinition(_Model):
    name: Annotated[str, Field(max_length=48)]
    type: str = "text"
    required: bool = False
    personal: bool = False
    mask: str | None = None  # how a personal value is masked (security.masking kinds)
    choices: tuple[str | int, ...] | None = None
    range: tuple[float, float] | None = None
    unit: str | None = None
    title_zh: str = ""
    title_en: str = ""
    description: str = ""
    # the column of the source file this attribute was inferred from (its import mapping)
    source: str | None = None

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        if not ATTRIBUTE_NAME.fullmatch(v):
            raise ValueError(f"attribute name {v!r}: lower-case ASCII letters, digits and _,"
                             " starting with a letter")
        if v in RESERVED_COLUMNS or v in RESERVED_WORDS:
            raise ValueError(f"attribute name {v!r} is reserved")
        return v

    @field_validator("mask")
    @classmethod
    def _known_mask(cls, v: str | None) -> str | None:
        if v is not None and v not in MASK_KINDS:
            raise ValueError(f"mask {v!r} is not one of {sorted(MASK_KINDS)}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> AttributeDefinition:
        base = self.type.split("(")[0].strip()
        if self.range is not None:
            if base not in ("integer", "bigint", "smallint", "double precision", "numeric"):
                raise ValueError(f"{self.name}: a range needs a numeric type, not {self.type}")
            if self.range[0] > self.range[1]:
                raise ValueError(f"{self.name}: range {self.range[0]}..{self.range[1]} is empty")
        if self.mask is not None and not self.personal:
            raise ValueError(f"{self.name}: a mask is for personal attributes")
        return self

    def check(self, props: dict) -> None:
        """The declarative checks of one value (ValueError says which)."""
        if self.choices is not None:
            check_choice(props, self.name, self.choices, self.required)
        elif self.required and props.get(self.name) is None:
            raise ValueError(f"{self.name} is required")
        if self.range is not None:
            check_range(props, self.name, *self.range)

    @property
    def title(self) -> str:
        return _zh_en(self.title_zh, self.title_en)


class TileDefinition(_Model):
    detail_zoom: Annotated[int, Field(ge=0, le=22)] = 12
    minzoom: Annotated[int, Field(ge=0, le=22)] = 0
    maxzoom: Annotated[int, Field(ge=0, le=22)] = 16
    color: str = "#3388ff"
    label: str | None = None  # the attribute the style labels features with
    properties: tuple[str, ...] | None = None  # None: every non-personal attribute

    @field_validator("color")
    @classmethod
    def _hex(cls, v: str) -> str:
        if not COLOR.fullmatch(v):
            raise ValueError(f"color {v!r} is not #rrggbb")
        return v


class LayerDefinition(_Model):
    name: Annotated[str, Field(min_length=2, max_length=40)]
    title_zh: str = ""
    title_en: str = ""
    description: str = ""
    theme: Annotated[str, Field(min_length=1, max_length=40)] = "published"
    department: Annotated[str, Field(min_length=1, max_length=200)]
    sharing: Literal["unconditional", "conditional", "not_shared"] = CONDITIONAL
    geometry_type: Literal[GEOMETRY_TYPES]
    attributes: tuple[AttributeDefinition, ...] = ()
    # the attribute whose value is the stable id; None only for built-in layers whose id
    # is a rule in code (`id_rule` says which)
    id_attribute: str | None = None
    id_rule: str | None = None
    tiles: TileDefinition = TileDefinition()
    keywords: tuple[str, ...] = ()
    searchable: str | None = None  # a text attribute /api/search matches
    category: str | None = None  # the attribute statistics count by, per district
    builtin: bool = False  # described from code: never altered or retired here

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        if not LAYER_NAME.fullmatch(v):
            raise ValueError(f"layer name {v!r}: lower-case ASCII letters and digits in words"
                             " joined by single hyphens (e.g. bus-stops)")
        if (v.endswith("-history") or v.replace("-", "_") in RESERVED_WORDS
                or v == PUBLISH_TARGET):  # the publish grant's target
            raise ValueError(f"layer name {v!r} is reserved")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> LayerDefinition:
        names = [a.name for a in self.attributes]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"attribute names used twice: {', '.join(dup)}")
        by_name = {a.name: a for a in self.attributes}
        if not self.builtin:
            unknown = [a.name + ": " + a.type for a in self.attributes if a.type not in TYPES]
            if unknown:
                raise ValueError(f"unknown attribute types ({'; '.join(unknown)}); "
                                 f"known: {', '.join(TYPES)}")
            if self.id_attribute is None:
                raise ValueError("id_attribute: which attribute identifies a feature")
        if self.id_attribute is not None:
            a = by_name.get(self.id_attribute)
            if a is None:
                raise ValueError(f"id_attribute {self.id_attribute!r} is not an attribute")
            if a.personal and not self.builtin:
                raise ValueError(f"id_attribute {a.name!r} is personal: an id is public in"
                                 " every URL; choose another attribute")
        for what, name in (("tiles.label", self.tiles.label), ("searchable", self.searchable),
                           ("category", self.category)):
            if name is None:
                continue
            a = by_name.get(name)
            if a is None:
                raise ValueError(f"{what} {name!r} is not an attribute")
            if a.personal:  # a masked field is never an input, nor drawn
                raise ValueError(f"{what} {name!r} is personal")
            if what == "searchable" and a.type != "text":
                raise ValueError(f"searchable {name!r} is {a.type}: text is matched")
        for name in self.tiles.properties or ():
            if name not in by_name:
                raise ValueError(f"tiles.properties: {name!r} is not an attribute")
        if self.tiles.minzoom > self.tiles.maxzoom:
            raise ValueError("tiles: minzoom is above maxzoom")
        return self

    @property
    def title(self) -> str:
        return _zh_en(self.title_zh, self.title_en) or self.name

    def spec(self) -> LayerSpec:
        return LayerSpec(self.name, self.geometry_type, tuple(
            Attribute(a.name, a.type, a.required, a.personal,
                      a.description or a.title, a.mask) for a in self.attributes),
            title=self.title, description=self.description,
            # attribute → "中文 English" (queryables, popups, legends)
            extra={"titles": {a.name: a.title for a in self.attributes if a.title},
                   "choices": {a.name: a.choices for a in self.attributes if a.choices},
                   "searchable": self.searchable, "category": self.category,
                   "label": self.tiles.label})

    def to_layer(self) -> Layer:
        """The runtime layer of a published definition (declarative checks only)."""
        if self.builtin:
            raise ValueError(f"{self.name} is built in: its layer is in code")
        attrs = self.attributes

        def validate(props: dict) -> list[str]:
            for a in attrs:
                a.check(props)
            return []

        t = self.tiles
        return Layer(self.spec(), self.theme, self.department, self.sharing,
                     fid=self.id_attribute, validate=validate, keywords=self.keywords,
                     tiles=TileSettings(t.detail_zoom, t.minzoom, t.maxzoom, t.properties,
                                        t.color))

    def to_toml(self) -> str:
        """The review form: what differs from the defaults, and the sharing class always
        (what an approver reads first)."""
        data = self.model_dump(exclude_defaults=True, exclude_none=True, mode="json")
        data.setdefault("sharing", self.sharing)
        return tomli_w.dumps(data)


def parse(data: dict) -> LayerDefinition:
    try:
        return LayerDefinition.model_validate(data)
    except ValidationError as e:
        raise DefinitionError("; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'definition'}: "
            f"{err['msg'].removeprefix('Value error, ')}" for err in e.errors())) from None


def parse_toml(text: str) -> LayerDefinition:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise DefinitionError(f"not TOML: {e}") from None
    return parse(data)


def _split_title(title: str) -> tuple[str, str]:
    """'行政区划 Administrative areas' -> ('行政区划', 'Administrative areas')."""
    m = re.match(r"^([^A-Za-z]*?)\s*([A-Za-z].*)?$", title)
    return ((m.group(1) or "").strip(), (m.group(2) or "").strip()) if m else (title, "")


def describe(layer: Layer) -> LayerDefinition:
    """The definition of a built-in layer, from its module (its checks stay in code)."""
    if isinstance(layer.fid, str):
        id_attribute, id_rule = layer.fid, None
    elif isinstance(layer.fid, KeyedFid):
        id_attribute, id_rule = None, f"keyed pseudonym of {layer.fid.attribute}"
    else:
        id_attribute, id_rule = None, "computed in code from the row"
    zh, en = _split_title(layer.spec.title)
    t = layer.tiles
    return LayerDefinition(
        name=layer.name, title_zh=zh, title_en=en, description=layer.spec.description,
        theme=layer.theme, department=layer.department, sharing=layer.sharing,
        geometry_type=layer.spec.geometry_type, builtin=True,
        attributes=tuple(AttributeDefinition(
            name=a.name, type=a.type, required=a.required, personal=a.personal,
            mask=a.mask if a.personal else None, description=a.description)
            for a in layer.spec.attributes),
        id_attribute=id_attribute, id_rule=id_rule, keywords=layer.keywords,
        tiles=TileDefinition(detail_zoom=t.detail_zoom, minzoom=t.minzoom, maxzoom=t.maxzoom,
                             color=t.color, properties=t.properties))
