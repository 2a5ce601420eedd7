"""Cases: the reporter's contact (hotline and citizen reports), personal data.

`reporter_name` and `reporter_phone` on the cases' version table and snapshot view (at the
end: the view's columns as layers/city_management declares them). Masked on every path
without `cases:read_personal`, as every personal attribute is; so the analyst role no
longer reads the cases view (analysts read no personal column: security/analyst.py) —
`city.case_status`, which has none, stays theirs.

Revision ID: 0023
Revises: 0022
"""

from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

ATTRIBUTES = ("case_number", "kind", "big_class", "small_class", "description", "source",
              "status", "grid_code", "division_code", "department", "reported_at",
              "dispatched_at", "deadline", "handled_at", "closed_at", "rework_count")
WHERE = ("upper_inf(city.cases_version.recorded) AND ((lower(city.cases_version.valid) <= now())"
         " AND (upper_inf(city.cases_version.valid) OR (upper(city.cases_version.valid) > now())))")


def _view(attributes) -> str:
    t = "city.cases_version"
    cols = [f"{t}.vid", f"{t}.fid", f"lower({t}.valid) AS valid_from",
            f"upper({t}.valid) AS valid_to", f"{t}.geom AS geom",
            *(f"{t}.{a}" for a in attributes)]
    return ("create or replace view city.cases as\nSELECT " + ", ".join(cols)
            + f" \nFROM {t}\nwhere {WHERE}")


def upgrade() -> None:
    # a database made since creates the layer tables from the current spec (0002): there
    # they are already
    op.execute("alter table city.cases_version add column if not exists reporter_name text,"
               " add column if not exists reporter_phone text")
    op.execute(_view(ATTRIBUTES + ("reporter_name", "reporter_phone")))
    op.execute("do $$ begin if to_regrole('gisplatform_analyst') is not null then"
               " revoke select on city.cases from gisplatform_analyst; end if; end $$")


def downgrade() -> None:
    # The columns stay: the layer tables follow the current spec (0002 makes them so, and
    # later migrations recreate the view from it), so a database below 0023 has them too.
    # Nor is the analyst grant on the cases view restored: the view has personal columns.
    pass
