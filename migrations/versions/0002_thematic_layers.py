"""Thematic layers: one version table + snapshot view per layer, case steps, derived views.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

from gisplatform.temporal import create_sql, drop_sql
from layers import LAYERS
from layers.city_management import STEPS

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Later changes to a layer's attributes come as their own migrations; this one
# creates the tables as the specs stood when it was written.
LAYER_NAMES = ("admin-areas", "grid-cells", "addresses", "buildings", "housing-units", "persons",
               "legal-persons", "cameras", "components", "cases", "responsibility-zones")


def upgrade() -> None:
    for name in LAYER_NAMES:
        for stmt in create_sql(LAYERS[name].spec):
            op.execute(stmt)

    steps = ", ".join(f"'{s}'" for s in STEPS)
    # The lifecycle log: append-only, one row per step of a case.
    op.execute(f"""
        create table city.case_steps (
          id bigint generated always as identity primary key,
          case_number text not null,
          step text not null check (step in ({steps})),
          at timestamptz not null,
          actor text,
          note text,
          recorded_at timestamptz not null default now()
        )""")
    op.execute("create index case_steps_case on city.case_steps (case_number, at)")
    op.execute("""
        create view city.case_status as
        select fid, case_number, kind, big_class, source, status, department, grid_code,
               reported_at, dispatched_at, deadline, handled_at, closed_at,
               -- the task clock runs from dispatch to the handling unit's report (CJ/T 315)
               deadline is not null and coalesce(handled_at, now()) > deadline as overdue,
               geom
        from city.cases""")

    # A camera's view cone: a sector of `range_m` around `azimuth`, `fov` wide.
    op.execute("""
        create function city.view_cone(pt geometry, azimuth double precision,
                                       fov double precision, range_m double precision)
        returns geometry language sql immutable parallel safe as $$
          select case when pt is null or azimuth is null or fov is null or range_m is null
                      then null else
            st_setsrid(st_makepolygon(st_makeline(
              array[st_setsrid(pt, 4326)]
              || array(select st_project(st_setsrid(pt, 4326)::geography, range_m,
                                         radians(azimuth - fov / 2 + fov * i / 16.0))::geometry
                       from generate_series(0, 16) i)
              || array[st_setsrid(pt, 4326)])), 4490) end
        $$""")
    op.execute("""
        create view city.camera_cones as
        select vid, fid, device_id, name, sector, status,
               city.view_cone(geom, azimuth, fov, range_m) as geom
        from city.cameras""")

    # Public aggregates: population per grid cell / admin area at any instant.
    for fn, src, key in (("population_by_grid", "grid_cells_version", "grid_code"),
                         ("population_by_area", "admin_areas_version", "code")):
        level = "" if key == "grid_code" else "and a.level in ('district', 'county')"
        op.execute(f"""
            create function city.{fn}(at timestamptz default now())
            returns table (code text, name text, geom geometry, total bigint,
                           registered bigint, floating bigint)
            language sql stable as $$
              select a.{key}, a.name, a.geom, count(p.vid),
                     count(p.vid) filter (where p.household_type = 'registered'),
                     count(p.vid) filter (where p.household_type = 'floating')
              from city.{src} a
              left join city.persons_version p
                on p.geom && a.geom and st_intersects(a.geom, p.geom)
               and p.valid @> at and upper_inf(p.recorded)
              where a.valid @> at and upper_inf(a.recorded) {level}
              group by a.{key}, a.name, a.geom
            $$""")


def downgrade() -> None:
    for fn in ("population_by_grid", "population_by_area"):
        op.execute(f"drop function if exists city.{fn}(timestamptz)")
    op.execute("drop view if exists city.camera_cones")
    op.execute("drop function if exists city.view_cone(geometry, double precision, double precision, double precision)")
    op.execute("drop view if exists city.case_status")
    op.execute("drop table if exists city.case_steps")
    for name in reversed(LAYER_NAMES):
        for stmt in drop_sql(LAYERS[name].spec):
            op.execute(stmt)
