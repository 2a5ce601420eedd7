"""What every thematic layer declares: its table spec plus how it is owned, shared and checked."""

from __future__ import annotations

from gisplatform.registry.layer import (  # noqa: F401 -- re-exported for the layer modules
    KeyedFid,
    Layer,
    TileSettings,
    no_checks,
)

# Government data-sharing classes (国发〔2016〕51号): the security kernel's, which decides
# access by them.
from gisplatform.security import (  # noqa: F401 -- re-exported for the layer modules
    CONDITIONAL,
    NOT_SHARED,
    UNCONDITIONAL,
    PseudonymKeyMissing,
    pseudonym,
)
from gisplatform.temporal import LayerSpec  # noqa: F401


def check_choice(props: dict, name: str, choices, required: bool = False) -> None:
    value = props.get(name)
    if value is None:
        if required:
            raise ValueError(f"{name} is required")
        return
    if value not in choices:
        raise ValueError(f"{name} {value!r} is not one of {sorted(choices)}")


def check_range(props: dict, name: str, lo: float, hi: float) -> None:
    value = props.get(name)
    if value is not None and not (lo <= value <= hi):
        raise ValueError(f"{name} {value} is outside {lo}..{hi}")
