"""The bitemporal feature store (see ARCHITECTURE.md, "The time model")."""

from .errors import (
    ConflictError,
    InvalidFeatureError,
    NaiveTimestampError,
    OverlapError,
    RetiredFeatureError,
    TemporalError,
    UnknownFeatureError,
)
from .instants import (
    BEIJING_TIME,
    city_midnight,
    parse_instant,
    parse_interval,
    parse_request_instant,
)
from .spec import (
    SCHEMA,
    SRID,
    Attribute,
    LayerSpec,
    contains_sql,
    create_sql,
    drop_sql,
    spatial_first,
)
from .store import Feature, SyncResult, TemporalStore, write_transaction

__all__ = [
    "BEIJING_TIME", "city_midnight", "contains_sql", "spatial_first", "parse_request_instant",
    "Attribute", "ConflictError", "Feature", "InvalidFeatureError", "LayerSpec",
    "NaiveTimestampError", "OverlapError", "RetiredFeatureError", "SCHEMA", "SRID",
    "SyncResult", "TemporalError", "TemporalStore", "UnknownFeatureError", "create_sql", "drop_sql",
    "parse_instant", "parse_interval", "write_transaction",
]
