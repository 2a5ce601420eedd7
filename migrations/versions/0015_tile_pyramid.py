"""The tile pyramid: how many current versions each small map cell holds at any instant,
kept as monthly change counts, so a low-zoom (clustered) tile at any datetime is an index
range read instead of a scan of every version under it (tiles/pyramid.py says how it is
read and built; a city-size persons z10 tile scanned ~1 M versions).

- `city.tile_pyramid`: per layer, tile zoom z, tile (tx, ty) and cell (i, j) of the tile's
  32 × 32 grid (level z + 5, so the 16 × 16 cluster grid of a tile, which st_snaptogrid
  centres on the grid's points, is a union of whole cells), and month `bucket` (in UTC+8;
  an instant exactly on a month's start belongs to the month it ends): n = versions that
  became valid that month minus those that stopped, sx, sy = the same sums of their
  points' Web Mercator x, y (a cluster's point is their mean).
- `city.tile_pyramid_layers`: which layers have one, for which zooms (written when one is
  built: tiles/pyramid.py), read by the trigger.
- `city.tile_pyramid_log()`: the statement trigger keeping it exact in the writing
  transaction (tiles/pyramid.py attaches it when it builds a layer's pyramid).
- An index on upper(valid) of every version table: the partial month (from its start to
  the requested instant) is read from the versions whose validity starts or ends in it.

Revision ID: 0015
Revises: 0014
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

VERSION_TABLES = """
    select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = 'city' and c.relkind in ('r', 'p') and right(c.relname, 8) = '_version'
      and exists (select 1 from pg_attribute a where a.attrelid = c.oid
                  and a.attname = 'valid' and not a.attisdropped)"""

# What a statement changed, as signed rows: +1 a current version it added, -1 one it took
# away (closed in transaction time, or deleted). Each is counted where it becomes valid
# (+) and where it stops (-), exactly the rule of temporal.contains_sql: lower <= T < upper
# (no lower bound: never counted).
_CONTRIBUTIONS = {
    "INSERT": "select 1 as sign, geom, valid from new_rows where upper_inf(recorded)",
    "DELETE": "select -1 as sign, geom, valid from old_rows where upper_inf(recorded)",
    "UPDATE": """select 1 as sign, geom, valid from new_rows where upper_inf(recorded)
                 union all
                 select -1, geom, valid from old_rows where upper_inf(recorded)""",
}


def _cells(rows: str, cfg: tuple[str, str, str, str]) -> str:
    """The signed rows' events per zoom of the layer's config (`cfg`: how the statement
    names its layer, polygonal, zmin, zmax) and cell: the CTEs ending in `cells` (d, x, y,
    b, z, cx, cy). Migration 0018 adds yearly rows from the same events."""
    _, polygonal, zmin, zmax = cfg
    return f"""
        with pts as (
          select s.sign, st_transform(case when {polygonal} then st_pointonsurface(s.geom)
                                         else s.geom end, 3857) as g,
                 lower(s.valid) as lo, upper(s.valid) as hi
          from ({rows}) s
          where s.geom is not null and lower(s.valid) is not null
        ), events as (
          select sign as d, st_x(g) as x, st_y(g) as y, city.tile_bucket(lo) as b from pts
          union all
          select -sign, st_x(g), st_y(g), city.tile_bucket(hi) from pts where hi is not null
        ), cells as (
          select e.d, e.x, e.y, e.b, z.z, city.tile_cell(e.x, z.z + 5) as cx,
                 city.tile_cell(-e.y, z.z + 5) as cy
          from events e cross join generate_series({zmin}::int, {zmax}::int) as z(z)
        )"""


def _apply(rows: str, cfg: tuple[str, str, str, str]) -> str:
    """Add the signed rows' events to the pyramid (`cfg` as _cells)."""
    return _cells(rows, cfg) + f"""
        insert into city.tile_pyramid as p (layer, z, tx, ty, i, j, bucket, n, sx, sy)
        select {cfg[0]}, z, cx >> 5, cy >> 5, cx & 31, cy & 31, b, sum(d), sum(d * x), sum(d * y)
        from cells group by z, cx, cy, b
        -- in the key's order: a tile's rows then lie together on disk (a cold city-size
        -- tile read 78 k rows scattered over the table in 630 ms)
        order by z, cx >> 5, cy >> 5, b, cx & 31, cy & 31
        on conflict (layer, z, tx, ty, bucket, i, j) do update
          set n = p.n + excluded.n, sx = p.sx + excluded.sx, sy = p.sy + excluded.sy"""


_CFG = ("cfg.layer", "cfg.polygonal", "cfg.zmin", "cfg.zmax")


def create_functions(apply, tables: tuple[str, ...] = ("city.tile_pyramid",)) -> None:
    """The trigger function and the build function, with `apply` writing a statement's
    events into `tables` (migration 0018 passes its own, and its downgrade these)."""
    empty = " ".join(f"delete from {t} where layer = cfg.layer;" for t in tables)
    op.execute(f"""
        create or replace function city.tile_pyramid_log() returns trigger
        language plpgsql as $$
        declare cfg city.tile_pyramid_layers;
        begin
          select * into cfg from city.tile_pyramid_layers where layer = tg_argv[0];
          if not found then
            return null;
          end if;
          if tg_op = 'TRUNCATE' then
            {empty}
          elsif tg_op = 'INSERT' then {apply(_CONTRIBUTIONS["INSERT"], _CFG)};
          elsif tg_op = 'DELETE' then {apply(_CONTRIBUTIONS["DELETE"], _CFG)};
          else {apply(_CONTRIBUTIONS["UPDATE"], _CFG)};
          end if;
          return null;
        end $$""")
    # the whole pyramid of a layer from its version table, as the trigger would have
    # written it (tiles/pyramid.py calls it under a lock that keeps writers out)
    build = apply("select 1 as sign, geom, valid from city.__table__ where upper_inf(recorded)",
                  ("$1", "$2", "$3", "$4")).replace("'", "''")
    op.execute(f"""
        create or replace function city.tile_pyramid_build(p_layer text) returns void
        language plpgsql as $$
        declare cfg city.tile_pyramid_layers;
        begin
          select * into strict cfg from city.tile_pyramid_layers where layer = p_layer;
          {empty}
          perform set_config('work_mem', '256MB', true);  -- one hash aggregate of it all
          execute replace('{build}', '__table__', quote_ident(cfg.version_table))
            using cfg.layer, cfg.polygonal, cfg.zmin, cfg.zmax;
        end $$""")


def upgrade() -> None:
    op.execute("""
        create function city.tile_cell(v float8, level int) returns bigint
        language sql immutable parallel safe as $$
          select floor((v + 20037508.342789244) / (40075016.68557849 / (2.0 ^ level)))::bigint
        $$""")
    # months in UTC+8 (the city's calendar: a map of "2020-06" is asked for at 2020-06-01
    # 00:00+08): year * 12 + month - 1; ±infinity at the ends of int
    op.execute("""
        create function city.tile_month(t timestamptz) returns int
        language sql immutable parallel safe as $$
          select case when t = '-infinity' then -2147483648 when t = 'infinity' then 2147483647
                      else (extract(year from t at time zone 'Etc/GMT-8') * 12
                            + extract(month from t at time zone 'Etc/GMT-8') - 1)::int end
        $$""")
    # an event's month: the one it ends, when it lies exactly on a month's start — an
    # import of a city dated 2018-01-01 00:00 is then wholly counted in the months before
    # a map of 2018-01-01, not read version by version as that month's "so far"
    op.execute("""
        create function city.tile_bucket(t timestamptz) returns int
        language sql immutable parallel safe as $$
          select city.tile_month(t - interval '1 microsecond')
        $$""")
    op.execute("""
        create function city.tile_month_start(b int) returns timestamptz
        language sql immutable parallel safe as $$
          select make_timestamptz(b / 12, mod(b, 12) + 1, 1, 0, 0, 0, 'Etc/GMT-8')
        $$""")
    op.execute("""
        create table city.tile_pyramid_layers (
          layer text primary key,
          version_table text not null,
          polygonal boolean not null,     -- a polygon's point is st_pointonsurface
          zmin smallint not null,
          zmax smallint not null,
          built_at timestamptz not null default now()
        )""")
    op.execute("""
        create table city.tile_pyramid (
          layer text not null,
          z smallint not null, tx int not null, ty int not null,
          bucket int not null,
          i smallint not null, j smallint not null,
          n bigint not null, sx float8 not null, sy float8 not null,
          primary key (layer, z, tx, ty, bucket, i, j)
        )""")
    create_functions(_apply)
    for (t,) in op.get_bind().exec_driver_sql(VERSION_TABLES):
        op.execute(f'create index if not exists "{t}_valid_hi" on city."{t}" (upper(valid))'
                   " where not upper_inf(valid)")


def downgrade() -> None:
    for (t,) in op.get_bind().exec_driver_sql(VERSION_TABLES):
        op.execute(f'drop index if exists city."{t}_valid_hi"')
        for event in ("insert", "update", "delete", "truncate"):
            op.execute(f'drop trigger if exists "{t}_pyramid_{event}" on city."{t}"')
    op.execute("drop function if exists city.tile_pyramid_build(text)")
    op.execute("drop function if exists city.tile_pyramid_log()")
    op.execute("drop table if exists city.tile_pyramid")
    op.execute("drop table if exists city.tile_pyramid_layers")
    op.execute("drop function if exists city.tile_month_start(int)")
    op.execute("drop function if exists city.tile_bucket(timestamptz)")
    op.execute("drop function if exists city.tile_month(timestamptz)")
    op.execute("drop function if exists city.tile_cell(float8, int)")
