"""What the OGC layer serves: collections described by the composition root.

The kernel does not import `layers`; `app.py` turns the layer registry into these
records and registers them here, together with the database URL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from psycopg_pool import ConnectionPool

from gisplatform.temporal import LayerSpec

if TYPE_CHECKING:
    from gisplatform.registry.layer import Workflow

SNAPSHOT, HISTORY, AGGREGATE = "snapshot", "history", "aggregate"


@dataclass(frozen=True)
class Collection:
    id: str
    kind: str  # snapshot | history | aggregate
    spec: LayerSpec
    sharing: str
    department: str
    keywords: tuple[str, ...] = ()
    # personal attribute -> mask kind (None = secret)
    personal: dict[str, str | None] = field(default_factory=dict)
    # Transactions: (properties, geometry) -> (fid, properties, geometry) checked as the
    # importer checks a row, or ValueError with the reason. None: not writable.
    prepare: Callable | None = field(default=None, compare=False)
    # The vector tile source showing this collection (/tiles/<name>), if any.
    tiles: str | None = None
    # The version table whose data gives the extent, when not the spec's own (aggregates).
    extent_table: str | None = None
    # The attribute whose value is the fid (layers/registry.py Layer.fid, when a name): a
    # property filter on it is answered through the primary key.
    fid_attribute: str | None = None
    # Fields only another path writes (registry.layer.Workflow), None: transactions are plain.
    workflow: Workflow | None = None

    @property
    def layer(self) -> str:
        """The layer whose grants govern this collection."""
        return self.spec.name


_COLLECTIONS: dict[str, Collection] = {}
_STATE: dict[str, ConnectionPool] = {}


def register(collections: list[Collection], pool: ConnectionPool) -> None:
    _COLLECTIONS.clear()
    _COLLECTIONS.update({c.id: c for c in collections})
    _STATE["pool"] = pool


def collections() -> dict[str, Collection]:
    return _COLLECTIONS


def get(collection_id: str) -> Collection:
    return _COLLECTIONS[collection_id]


def pool() -> ConnectionPool:
    """The sync pool of the app that registered these collections (create_app)."""
    return _STATE["pool"]
