"""Snapshot views filter validity with bound comparisons instead of `valid @> now()`.

Same rows; on the city-size demo a z14 building tile read through `city.buildings` took
65 ms because the planner ANDed the exclusion constraint's GiST index (most of the
table) with the geometry index (see `gisplatform.temporal.contains_sql`). QGIS, tipg and
analysts read these views.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

from gisplatform.temporal import create_sql
from layers import LAYERS

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

LAYER_NAMES = ("admin-areas", "grid-cells", "addresses", "buildings", "housing-units", "persons",
               "legal-persons", "cameras", "components", "cases", "responsibility-zones")


def _views(old: bool) -> list[str]:
    out = []
    for name in LAYER_NAMES:
        view = next(s for s in create_sql(LAYERS[name].spec) if s.startswith("create view"))
        if old:
            view = view[:view.index("where ")] + "where upper_inf(recorded) and valid @> now()"
        out.append("create or replace view" + view[len("create view"):])
    return out


def upgrade() -> None:
    for stmt in _views(old=False):
        op.execute(stmt)


def downgrade() -> None:
    for stmt in _views(old=True):
        op.execute(stmt)
