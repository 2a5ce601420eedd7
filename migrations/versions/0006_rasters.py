"""Raster registry: the COGs (orthophotos per year, DEMs) that /raster may serve.

titiler serves a dataset only by its name in this table, never by a caller-given URL or
path, so the table is the whole list of what can be read from disk. `path` is a bare
file name relative to `<data_dir>/rasters` (the server joins it to its own raster
directory and refuses anything that would leave it).

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ANALYST_ROLE = "gisplatform_analyst"  # created by 0003


def upgrade() -> None:
    # `ortho` and `dem` are the time-series URLs (/raster/ortho/…, /raster/dem/…), not names.
    op.execute("""
        create table city.rasters (
          name text primary key
            check (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$' and name not in ('ortho', 'dem')),
          kind text not null check (kind in ('ortho', 'dem')),
          at timestamptz not null,
          bounds geometry(Polygon, 4490) not null,
          crs text not null,
          path text not null unique check (path ~ '^[a-z0-9][a-z0-9_.-]*\\.tif$'
                                           and path !~ '\\.\\.'),
          width integer not null check (width > 0),
          height integer not null check (height > 0),
          bands integer not null check (bands > 0),
          dtype text not null,
          created timestamptz not null default now()
        )""")
    op.execute("comment on column city.rasters.at is "
               "'when the image shows the city (acquisition); /raster/ortho picks the latest "
               "ortho with at <= datetime'")
    op.execute("comment on column city.rasters.path is "
               "'COG file name relative to <data_dir>/rasters'")
    op.execute("create index rasters_kind_at on city.rasters (kind, at)")
    op.execute("create index rasters_bounds on city.rasters using gist (bounds)")
    op.execute(f"grant select on city.rasters to {ANALYST_ROLE}")


def downgrade() -> None:
    op.execute(f"revoke select on city.rasters from {ANALYST_ROLE}")
    op.execute("drop table if exists city.rasters")
