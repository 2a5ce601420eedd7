"""Publishing a dataset, as `gisplatform layer create` and `POST /api/layers` both do it:
the definition (inferred from the file, or given), then one transaction — registry row,
tables, the file imported as the first versions (every row must pass), the indexes — and
an audit row per column declared public against the inference."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from gisplatform.registry import published
from gisplatform.registry.definition import DefinitionError, LayerDefinition, parse, parse_toml
from gisplatform.security import audit
from gisplatform.security.principals import Principal

from .importer import ImportFailed, Mapping, run_import
from .inference import MAX_FILE_BYTES, Inferred, infer

__all__ = ["PublishRequest", "Prepared", "prepare", "publish", "PublishFailed"]


class PublishFailed(ValueError):
    """Nothing was published; the message says why (a bad definition or file, a taken
    name, a rejected row)."""


@dataclass(frozen=True)
class PublishRequest:
    name: str
    department: str | None = None
    sharing: str = "conditional"
    id_field: str | None = None
    title: str | None = None
    title_en: str | None = None
    public_fields: tuple[str, ...] = ()
    crs: str | None = None
    valid_from: str | None = None
    source_layer: str | None = None
    definition: str | dict | None = None  # TOML text or a parsed object, instead of inferring


@dataclass
class Prepared:
    definition: LayerDefinition
    inferred: Inferred | None
    notes: list[str] = field(default_factory=list)


def prepare(req: PublishRequest, source: Path | None,
            max_bytes: int = MAX_FILE_BYTES) -> Prepared:
    """The definition to publish (no database): given, or inferred from `source`."""
    try:
        if req.definition is not None:
            d = (parse_toml(req.definition) if isinstance(req.definition, str)
                 else parse(req.definition))
            if d.name != req.name:
                raise PublishFailed(f"the definition is of {d.name!r}, not {req.name!r}")
            return Prepared(d, None)
        if source is None:
            raise PublishFailed("give a file (its definition is inferred) or a definition")
        if req.department is None:
            raise PublishFailed("department: which department owns the layer")
        inferred = infer(source, req.name, department=req.department, sharing=req.sharing,
                         id_field=req.id_field, title=req.title, title_en=req.title_en,
                         public=req.public_fields, source_layer=req.source_layer,
                         max_bytes=max_bytes)
        return Prepared(inferred.definition, inferred, inferred.notes)
    except (DefinitionError, ImportFailed) as e:
        raise PublishFailed(str(e)) from None


def publish(conn: psycopg.Connection, prepared: Prepared, source: Path | None,
            req: PublishRequest, actor: Principal, builtin: set[str],
            progress_factory: Callable[[int], Callable[[int], None]] | None = None) -> str:
    """Create the layer and import `source`, in one transaction; a summary line.
    Raises PublishFailed (nothing written)."""
    d = prepared.definition
    try:
        with conn.transaction():
            who = (f"token:{actor.token_id} ({actor.department})" if actor.token_id
                   else actor.label or "unknown")
            later = published.create(conn, d, who, builtin, defer_indexes=source is not None)
            for col in req.public_fields:
                audit(conn, actor, d.name, "public_field",
                      {"column": col, "reason": "declared not personal when published"})
            if source is None:
                return f"{d.name}: created, no rows"
            inferred = prepared.inferred
            report = run_import(
                conn, d.to_layer(), source, crs=req.crs, valid_from=req.valid_from,
                all_or_nothing=True, source_layer=req.source_layer,
                progress_factory=progress_factory,
                mapping=Mapping(columns={a.source: a.name for a in d.attributes if a.source}),
                read=(inferred.rows, inferred.crs) if inferred else None)
            if report.rejected:
                first = report.rejected[0]
                raise PublishFailed(f"{len(report.rejected)} rows rejected, first: row "
                                    f"{first.number}: {first.reason}; nothing created")
            for stmt in later:  # built once, after the rows
                conn.execute(stmt)
            return f"{d.name}: created; {report.summary()}"
    except (published.PublishError, ImportFailed, DefinitionError) as e:
        raise PublishFailed(str(e)) from None
