"""Population counts: how many persons each unit grid cell and each district or county
holds at any instant, kept as monthly change counts, so city.population_by_grid and
city.population_by_area (the population-grid / population-areas tiles and collections)
read an index range instead of testing every person against every area (a district tile
at z10 tested ~1.7 M persons: 9–16 s at city size).

- `city.population_counts`: per area version (the table it is in, its vid) and month
  bucket (city.tile_bucket of migration 0015: UTC+8, an instant on a month's first moment
  in the month before), the change of its total, registered and floating counts that
  month: +1 where a person version intersecting it becomes valid, -1 where it stops. Only
  pairs whose validities overlap are counted (the others cancel out wherever the area is
  valid). The count at T = the changes of the months before T's month + the person
  versions starting or ending in that month up to T (read exactly, tiles/population.py).
- `city.population_counts_state`: one row once the counts are built (tiles/population.py
  builds them and attaches the triggers below); until then the functions join as before.
- The area versions counted: current knowledge, every grid cell and the districts and
  counties of admin_areas (what population_by_area counts).
- Statement triggers keep the counts exact in the writing transaction: on persons (its
  versions' events added to every area containing them), on grid cells and admin areas
  (an area version's counts dropped when it stops being current, counted anew when one is
  added).

Revision ID: 0017
Revises: 0016
"""

from alembic import op

from gisplatform.db.migrate import migration_module
from gisplatform.temporal import contains_sql

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

PATH = "pg_catalog, public, city"
ADMIN_LEVELS = "('district', 'county')"  # what population_by_area has always counted

# a statement's person versions as signed rows, as migration 0015's _CONTRIBUTIONS
_PERSONS = {
    "INSERT": "select 1 as sign, geom, valid, household_type from new_rows"
              " where upper_inf(recorded)",
    "DELETE": "select -1 as sign, geom, valid, household_type from old_rows"
              " where upper_inf(recorded)",
    "UPDATE": """select 1 as sign, geom, valid, household_type from new_rows
                 where upper_inf(recorded)
                 union all
                 select -1, geom, valid, household_type from old_rows
                 where upper_inf(recorded)""",
}

_ADD = """
    insert into city.population_counts as c
      (area_table, area_vid, bucket, total, registered, floating)
    select {tbl}, e.vid, e.b, sum(e.d),
           coalesce(sum(e.d) filter (where e.household_type = 'registered'), 0),
           coalesce(sum(e.d) filter (where e.household_type = 'floating'), 0)
    from ({events}) e
    group by 2, 3
    order by 2, 3
    on conflict (area_table, area_vid, bucket) do update
      set total = c.total + excluded.total, registered = c.registered + excluded.registered,
          floating = c.floating + excluded.floating"""


def _person_events(persons: str, areas: str) -> str:
    """(vid of the area, household_type, d, b) of signed person rows `persons` in the
    area versions `areas` (columns vid, geom, valid): one join, two events a pair."""
    return f"""
        select a.vid, s.household_type, x.d, x.b
        from ({persons}) s join ({areas}) a
          on a.geom && s.geom and st_intersects(a.geom, s.geom) and a.valid && s.valid
        cross join lateral (values
          (s.sign, city.tile_bucket(lower(s.valid))),
          (-s.sign, case when not upper_inf(s.valid) then city.tile_bucket(upper(s.valid)) end)
        ) x(d, b)
        where x.b is not null"""


def _areas(table: str, rows: str) -> str:
    level = f" and level in {ADMIN_LEVELS}" if table == "admin_areas_version" else ""
    return f"select vid, geom, valid from {rows} where upper_inf(recorded){level}"


def _persons_log() -> str:
    def add(op_: str) -> str:
        return ";\n".join(
            _ADD.format(tbl=f"'{t}'", events=_person_events(_PERSONS[op_], _areas(t, f"city.{t}")))
            for t in ("grid_cells_version", "admin_areas_version"))
    return f"""
        create function city.population_counts_persons_log() returns trigger
        language plpgsql as $$
        begin
          if not exists (select 1 from city.population_counts_state) then
            return null;
          end if;
          if tg_op = 'TRUNCATE' then
            delete from city.population_counts;
          elsif tg_op = 'INSERT' then {add("INSERT")};
          elsif tg_op = 'DELETE' then {add("DELETE")};
          else {add("UPDATE")};
          end if;
          return null;
        end $$"""


_ALL_PERSONS = "select 1 as sign, geom, valid, household_type from city.persons_version" \
               " where upper_inf(recorded)"


def _areas_log() -> str:
    def count(t: str) -> str:
        return _ADD.format(tbl=f"'{t}'", events=_person_events(_ALL_PERSONS, _areas(t, "new_rows")))

    return f"""
        create function city.population_counts_areas_log() returns trigger
        language plpgsql as $$
        begin
          if not exists (select 1 from city.population_counts_state) then
            return null;
          end if;
          if tg_op = 'TRUNCATE' then
            delete from city.population_counts where area_table = tg_table_name;
            return null;
          end if;
          if tg_op in ('DELETE', 'UPDATE') then
            delete from city.population_counts
            where area_table = tg_table_name and area_vid in (select vid from old_rows);
          end if;
          if tg_op in ('INSERT', 'UPDATE') then
            if tg_table_name = 'grid_cells_version' then {count("grid_cells_version")};
            else {count("admin_areas_version")};
            end if;
          end if;
          return null;
        end $$"""


def _build() -> str:
    counts = ";\n".join(
        _ADD.format(tbl=f"'{t}'", events=_person_events(_ALL_PERSONS, _areas(t, f"city.{t}")))
        for t in ("grid_cells_version", "admin_areas_version"))
    return f"""
        create function city.population_counts_build() returns void
        language plpgsql as $$
        begin
          perform set_config('work_mem', '256MB', true);
          delete from city.population_counts;
          {counts};
          insert into city.population_counts_state default values
          on conflict (id) do update set built_at = now();
        end $$"""


def _read(fn: str, table: str, key: str, level: str) -> str:
    """population_by_grid / population_by_area: from the counts once built, else the
    join they always were (migration 0008); the same rows either way. PL/pgSQL running
    its query with EXECUTE: planned for the instant and bbox at hand (the generic plan of
    a SQL function took minutes for a mid-month instant that a custom plan answers in
    a quarter of a second)."""
    a_valid = contains_sql("a.valid", "$1")
    p_valid = contains_sql("p.valid", "$1")
    return f"""
        create or replace function city.{fn}(at timestamptz default now(),
                                             bbox geometry default null)
        returns table (code text, name text, geom geometry, total bigint,
                       registered bigint, floating bigint)
        language plpgsql stable security definer set search_path = {PATH} as $$
        begin
          return query execute $q$
          with a as (
            select a.vid, a.{key} as code, a.name, a.geom from city.{table} a
            where {a_valid} and upper_inf(a.recorded) {level}
              and ($2::geometry is null or a.geom && $2)
          ), m as (
            select city.tile_month($1) as bucket,
                   city.tile_month_start(city.tile_month($1)) as since
          ), month as materialized (  -- the month so far (its first instant is in the
            -- months before), through the valid_lo / valid_hi indexes
            select p.geom, p.household_type, 1 as d
            from city.persons_version p, m
            where upper_inf(p.recorded) and lower(p.valid) > m.since and lower(p.valid) <= $1
            union all
            select p.geom, p.household_type, -1
            from city.persons_version p, m
            where upper_inf(p.recorded) and not upper_inf(p.valid)
              and upper(p.valid) > m.since and upper(p.valid) <= $1
          ), part as materialized (  -- of it, what lies in the areas' box
            select p.* from month p,
              (select st_setsrid(st_extent(a.geom)::geometry, 4490) as g from a) box
            where p.geom && box.g
          ), n as (
            select c.area_vid as vid, c.total, c.registered, c.floating
            from city.population_counts c, m
            where (select exists (select 1 from city.population_counts_state))
              and c.area_table = '{table}' and c.area_vid in (select vid from a)
              and c.bucket < m.bucket
            union all
            -- area by area: each polygon is prepared once for all its tests (joined the
            -- other way round, the polygons alternated: 1.4 s for 10 k persons and 4 districts)
            select a.vid, p.d, p.d * (p.household_type = 'registered')::int,
                   p.d * (p.household_type = 'floating')::int
            from a cross join lateral (
              select * from part p where p.geom && a.geom and st_intersects(a.geom, p.geom)
            ) p
            where (select exists (select 1 from city.population_counts_state))
            union all  -- not built yet
            select a.vid, 1, (p.household_type = 'registered')::int,
                   (p.household_type = 'floating')::int
            from a join city.persons_version p
              on p.geom && a.geom and st_intersects(a.geom, p.geom)
             and {p_valid} and upper_inf(p.recorded)
            where (select not exists (select 1 from city.population_counts_state))
          )
          select a.code, a.name, a.geom, coalesce(sum(n.total), 0)::bigint,
                 coalesce(sum(n.registered), 0)::bigint, coalesce(sum(n.floating), 0)::bigint
          from a left join n on n.vid = a.vid
          group by a.vid, a.code, a.name, a.geom
          $q$ using at, bbox;
        end $$"""


FUNCTIONS = (("population_by_grid", "grid_cells_version", "grid_code", ""),
             ("population_by_area", "admin_areas_version", "code",
              f"and a.level in {ADMIN_LEVELS}"))


def upgrade() -> None:
    op.execute("""
        create table city.population_counts (
          area_table text not null,
          area_vid bigint not null,
          bucket int not null,
          total bigint not null, registered bigint not null, floating bigint not null,
          primary key (area_table, area_vid, bucket)
        )""")
    op.execute("""
        create table city.population_counts_state (
          id boolean primary key default true check (id),
          built_at timestamptz not null default now()
        )""")
    op.execute(_persons_log())
    op.execute(_areas_log())
    op.execute(_build())
    for fn, table, key, level in FUNCTIONS:
        op.execute(_read(fn, table, key, level))


def downgrade() -> None:
    for t in ("persons_version", "grid_cells_version", "admin_areas_version"):
        for event in ("insert", "update", "delete", "truncate"):
            op.execute(f'drop trigger if exists "{t}_population_{event}" on city."{t}"')
    # the functions as migration 0008 left them: its own statements
    migration_0008 = migration_module("0008_population_filter.py")
    for fn, table, key, level in migration_0008.FUNCTIONS:
        migration_0008._replace(fn, table, key, level, fast=True)
    op.execute("drop function if exists city.population_counts_build()")
    op.execute("drop function if exists city.population_counts_areas_log()")
    op.execute("drop function if exists city.population_counts_persons_log()")
    op.execute("drop table if exists city.population_counts_state")
    op.execute("drop table if exists city.population_counts")
