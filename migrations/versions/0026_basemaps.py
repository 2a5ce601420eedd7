"""Registered external basemaps (tiles/basemaps.py): XYZ or WMTS sources the platform
proxies at /basemaps/{name}/…, with their keys.

`secret` is the source's key (天地图's `tk`), read only by the proxy: no grant to the
analysts, and on Citus the table stays on the coordinator (db/distribution.py). `url` is a
template with `{key}` where the key goes, never the key.

Revision ID: 0026
Revises: 0025
"""

from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # `ortho`, `hillshade` and `dem` are the platform's own raster layers (style, viewer)
    op.execute("""
        create table city.basemaps (
          name text primary key check (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'
                                       and name not in ('ortho', 'hillshade', 'dem')),
          title text not null,
          kind text not null check (kind in ('xyz', 'wmts')),
          url text not null check (url ~ '^https?://'),
          layer text,
          style text,
          format text,
          matrix_set text,
          grid text not null check (grid in ('WebMercatorQuad', 'CGCS2000Quad')),
          zoom_offset integer not null default 0,
          min_zoom integer not null check (min_zoom >= 0),
          max_zoom integer not null check (max_zoom >= min_zoom),
          attribution text not null default '',
          secret text,
          is_default boolean not null default false,
          enabled boolean not null default true,
          created timestamptz not null default now(),
          check (case kind when 'wmts' then layer is not null and style is not null
                                            and format is not null and matrix_set is not null
                 else num_nonnulls(layer, style, format, matrix_set) = 0 end)
        )""")
    op.execute("comment on column city.basemaps.secret is "
               "'the source''s key, filled into {key} of url by the proxy only'")
    op.execute("comment on column city.basemaps.grid is "
               "'the platform tile grid the source''s tiles are in'")
    op.execute("comment on column city.basemaps.zoom_offset is "
               "'the source''s level for the grid''s zoom z is z + zoom_offset'")


def downgrade() -> None:
    op.execute("drop table if exists city.basemaps")
