"""3D tilesets registry: generated building tilesets and imported real-scene tilesets.

Each tileset is a folder under `<data_dir>/3d/<directory>`; `/3d/{name}/…` serves only what
is registered here, from that folder (never a caller-given path).

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

ANALYST_ROLE = "gisplatform_analyst"


def upgrade() -> None:
    # `terrain` is the terrain URL family (/3d/terrain/…), not a tileset name.
    op.execute("""
        create table city.tilesets (
          name text primary key
            check (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$' and name <> 'terrain'),
          kind text not null check (kind in ('buildings', 'realscene')),
          at timestamptz,
          directory text not null unique check (directory ~ '^[a-z0-9][a-z0-9_.-]*$'
                                                and directory !~ '\\.\\.'),
          bounds geometry(Polygon, 4490),
          tiles integer not null default 0,
          bytes bigint not null default 0,
          source text,
          created timestamptz not null default now(),
          updated timestamptz not null default now()
        )""")
    op.execute("comment on column city.tilesets.at is "
               "'real-scene: when it was captured; buildings: null (carries its own time)'")
    op.execute(f"grant select on city.tilesets to {ANALYST_ROLE}")


def downgrade() -> None:
    op.execute(f"revoke select on city.tilesets from {ANALYST_ROLE}")
    op.execute("drop table if exists city.tilesets")
