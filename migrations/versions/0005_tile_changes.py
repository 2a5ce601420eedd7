"""Tile invalidation log: every write to a layer records where and when it changed.

A statement-level trigger on each version table appends the envelopes of the rows a
statement touched (grouped per ~1 km cell, so a 100 k-row import adds hundreds of rows,
not 100 k) with the valid-time span they cover, then NOTIFYs `gisplatform_tiles` with the
seq range. Notifications are delivered at commit, in commit order, so a tile server
listening evicts exactly the cached tiles that intersect those envelopes, for the
datetimes in that span — including writes made by another process (`gisplatform import`).

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

LAYER_NAMES = ("admin-areas", "grid-cells", "addresses", "buildings", "housing-units", "persons",
               "legal-persons", "cameras", "components", "cases", "responsibility-zones")


def _table(layer: str) -> str:
    return layer.replace("-", "_") + "_version"


# What an update changed: closing a version at T changes the city from T on, not before
# (so past tiles stay cached); superseding a version (a correction) or moving it changes
# its whole validity as known now.
_UPDATED = """
            select o.geom,
                   case when upper_inf(o.recorded) and not upper_inf(n.recorded) then o.valid
                        when n.geom is distinct from o.geom then range_merge(o.valid, n.valid)
                        when lower(o.valid) = lower(n.valid) and not upper_inf(n.valid)
                             and (upper_inf(o.valid) or upper(o.valid) > upper(n.valid))
                          then tstzrange(upper(n.valid), upper(o.valid))
                        else range_merge(o.valid, n.valid) end as valid
            from old_rows o join new_rows n using (vid)
            where o.valid is distinct from n.valid or o.recorded is distinct from n.recorded
               or o.geom is distinct from n.geom"""


def _log(changed: str) -> str:
    """Log the envelopes of `changed` (geom, valid) grouped per ~1 km cell — a bulk load
    logs hundreds of rows, not one per feature — and notify at commit."""
    return f"""
          with changed as ({changed}), grouped as (
            select st_extent(geom) as bbox, min(lower(valid)) as valid_lo,
                   case when bool_or(upper_inf(valid)) then null else max(upper(valid)) end
                     as valid_hi
            from changed
            group by st_snaptogrid(st_pointonsurface(st_envelope(geom)), 0.01)
          ), ins as (
            insert into city.tile_changes (layer, bbox, valid_lo, valid_hi)
            select tg_argv[0], bbox, valid_lo, valid_hi from grouped
            returning seq
          )
          select min(seq), max(seq) into lo, hi from ins;"""


def upgrade() -> None:
    op.execute("""
        create table city.tile_changes (
          seq bigint generated always as identity primary key,
          layer text not null,
          bbox box2d not null,
          valid_lo timestamptz,          -- null: unbounded
          valid_hi timestamptz,
          at timestamptz not null default now()
        )""")
    op.execute("create index tile_changes_at on city.tile_changes (at)")
    # plpgsql plans a statement when it first runs it, so each branch may name the
    # transition tables only its event has.
    op.execute(f"""
        create function city.log_tile_changes() returns trigger
        language plpgsql as $$
        declare lo bigint; hi bigint;
        begin
          if tg_op = 'INSERT' then {_log("select geom, valid from new_rows")}
          elsif tg_op = 'DELETE' then {_log("select geom, valid from old_rows")}
          else {_log(_UPDATED)}
          end if;
          if lo is not null then
            perform pg_notify('gisplatform_tiles', tg_argv[0] || ' ' || lo || ' ' || hi);
          end if;
          return null;
        end $$""")
    for layer in LAYER_NAMES:
        t = _table(layer)
        for event, refs in (("insert", "new table as new_rows"),
                            ("update", "old table as old_rows new table as new_rows"),
                            ("delete", "old table as old_rows")):
            op.execute(f"""
                create trigger {t}_tiles_{event} after {event} on city.{t}
                referencing {refs}
                for each statement execute function city.log_tile_changes('{layer}')""")


def downgrade() -> None:
    for layer in LAYER_NAMES:
        t = _table(layer)
        for event in ("insert", "update", "delete"):
            op.execute(f"drop trigger if exists {t}_tiles_{event} on city.{t}")
    op.execute("drop function if exists city.log_tile_changes()")
    op.execute("drop table if exists city.tile_changes")
