"""What every thematic layer declares: its table spec plus how it is owned, shared and checked."""

from __future__ import annotations

from gisplatform.registry.layer import (  # noqa: F401 -- re-exported for the layer modules
    KeyedFid,
    Layer,
    TileSettings,
    Workflow,
    check_choice,
    check_range,
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
