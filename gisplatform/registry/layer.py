"""The runtime layer: a definition's spec plus how it is owned, shared, identified and
checked — what the rest of the platform serves. Built-in layers are made in code
(layers/), published ones from their definitions (definition.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from gisplatform.security import PseudonymKeyMissing, pseudonym
from gisplatform.temporal import LayerSpec


def check_choice(props: dict, name: str, choices, required: bool = False) -> None:
    """The value of `name` is one of `choices` (or absent, unless `required`)."""
    value = props.get(name)
    if value is None:
        if required:
            raise ValueError(f"{name} is required")
        return
    if value not in choices:
        try:
            listed = sorted(choices)
        except TypeError:  # choices of mixed types: in their given order
            listed = list(choices)
        raise ValueError(f"{name} {value!r} is not one of {listed}")


def check_range(props: dict, name: str, lo: float, hi: float) -> None:
    """The value of `name` lies in lo..hi (or is absent)."""
    value = props.get(name)
    if value is not None and not (lo <= value <= hi):
        raise ValueError(f"{name} {value} is outside {lo}..{hi}")


def no_checks(props: dict) -> list[str]:
    return []


@dataclass(frozen=True)
class TileSettings:
    """How the layer appears in vector tiles. Below `detail_zoom` a tile holds clusters
    (a point per cell of features with their `count`), never a silent subset; from
    `detail_zoom` on, every feature. `properties` None = every non-personal attribute
    (personal attributes never enter a tile, whoever asks)."""

    detail_zoom: int = 12
    minzoom: int = 0
    maxzoom: int = 16  # advertised in TileJSON; deeper zooms are still served
    properties: tuple[str, ...] | None = None
    color: str = "#3388ff"


@dataclass(frozen=True)
class Workflow:
    """A layer whose lifecycle another path writes (the case workflow): plain OGC
    transactions may not create or retire its objects nor change `fields`; `path` says
    where those writes go instead."""
    path: str
    fields: tuple[str, ...]


@dataclass(frozen=True)
class KeyedFid:
    """The fid is a keyed pseudonym (gisplatform.security.pseudonyms) of a personal
    attribute, after `normalize` (which raises ValueError for a bad value): stable for one
    object, and no way back to the value from it. Computing it needs the database's key."""
    attribute: str
    prefix: str
    normalize: Callable[[str], str] = str


@dataclass(frozen=True)
class Layer:
    spec: LayerSpec
    theme: str
    department: str
    sharing: str
    # The attribute whose value is the stable id, a function of the row, or a keyed
    # pseudonym of a personal attribute.
    fid: str | Callable[[dict], str] | KeyedFid
    # Normalises props in place; returns warnings; raises ValueError with the reason.
    validate: Callable[[dict], list[str]] = no_checks
    keywords: tuple[str, ...] = field(default=())
    tiles: TileSettings = field(default_factory=TileSettings)
    workflow: Workflow | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def personal(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.spec.attributes if a.personal)

    @property
    def fid_needs_key(self) -> bool:
        return isinstance(self.fid, KeyedFid)

    def fid_of(self, props: dict, key: bytes | None = None) -> str:
        """The row's fid; `key` (the database's pseudonym key) when `fid_needs_key`."""
        if isinstance(self.fid, KeyedFid):
            if key is None:
                raise PseudonymKeyMissing(f"{self.name}: its fid needs the database's pseudonym key")
            value = self.fid.normalize(str(props.get(self.fid.attribute) or ""))
            return pseudonym(key, value, self.fid.prefix)
        if callable(self.fid):
            return self.fid(props)
        value = props.get(self.fid)
        if value in (None, ""):
            raise ValueError(f"{self.fid} is required (it identifies the object)")
        return str(value)
