"""Yearly rows in the tile pyramid: a clustered tile at T reads each cell's change per
whole year before T's year and per month of T's year before T's month, not every month
since the first version (a city-size persons z11 tile of 2026-11 read 79 k monthly rows,
72 ms, against 7 ms for 2018-01: the time slider's moves slowed with the date).

- `city.tile_year(bucket)`: the year of a month bucket (floor(bucket / 12), so a month
  lies in exactly one year, the -infinity bucket included).
- `city.tile_pyramid_years`: as city.tile_pyramid with `year` for `bucket`: the sums of
  the year's monthly rows. Filled here from the monthly rows of the pyramids built so far.
- `city.tile_pyramid_log()` and `city.tile_pyramid_build()` write both, from the same
  events (migration 0015's `_cells`), in one statement; TRUNCATE empties both.

Revision ID: 0018
Revises: 0017
"""

from alembic import op

from gisplatform.db.migrate import migration_module

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

TABLES = ("city.tile_pyramid", "city.tile_pyramid_years")


M0015 = migration_module("0015_tile_pyramid.py")


def _apply(rows: str, cfg: tuple[str, str, str, str]) -> str:
    """Add the signed rows' events to the monthly and the yearly rows."""
    layer = cfg[0]
    return M0015._cells(rows, cfg) + f""", grouped as (
          select z, cx, cy, b, sum(d) as n, sum(d * x) as sx, sum(d * y) as sy
          from cells group by z, cx, cy, b
        ), months as (
          insert into city.tile_pyramid as p (layer, z, tx, ty, i, j, bucket, n, sx, sy)
          select {layer}, z, cx >> 5, cy >> 5, cx & 31, cy & 31, b, n, sx, sy from grouped
          -- in the key's order: a tile's rows then lie together on disk
          order by z, cx >> 5, cy >> 5, b, cx & 31, cy & 31
          on conflict (layer, z, tx, ty, bucket, i, j) do update
            set n = p.n + excluded.n, sx = p.sx + excluded.sx, sy = p.sy + excluded.sy
        )
        insert into city.tile_pyramid_years as p (layer, z, tx, ty, i, j, year, n, sx, sy)
        select {layer}, z, cx >> 5, cy >> 5, cx & 31, cy & 31, city.tile_year(b),
               sum(n), sum(sx), sum(sy)
        from grouped group by z, cx, cy, city.tile_year(b)
        order by z, cx >> 5, cy >> 5, city.tile_year(b), cx & 31, cy & 31
        on conflict (layer, z, tx, ty, year, i, j) do update
          set n = p.n + excluded.n, sx = p.sx + excluded.sx, sy = p.sy + excluded.sy"""


def upgrade() -> None:
    op.execute("""
        create function city.tile_year(bucket int) returns int
        language sql immutable parallel safe as $$ select floor(bucket / 12.0)::int $$""")
    op.execute("""
        create table city.tile_pyramid_years (
          layer text not null,
          z smallint not null, tx int not null, ty int not null,
          year int not null,
          i smallint not null, j smallint not null,
          n bigint not null, sx float8 not null, sy float8 not null,
          primary key (layer, z, tx, ty, year, i, j)
        )""")
    op.execute("""
        insert into city.tile_pyramid_years (layer, z, tx, ty, i, j, year, n, sx, sy)
        select layer, z, tx, ty, i, j, city.tile_year(bucket), sum(n), sum(sx), sum(sy)
        from city.tile_pyramid group by layer, z, tx, ty, city.tile_year(bucket), i, j
        order by layer, z, tx, ty, city.tile_year(bucket), i, j""")
    M0015.create_functions(_apply, TABLES)


def downgrade() -> None:
    M0015.create_functions(M0015._apply)
    op.execute("drop table if exists city.tile_pyramid_years")
    op.execute("drop function if exists city.tile_year(int)")
