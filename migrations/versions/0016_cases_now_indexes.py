"""Indexes of the cases valid now, covering what the `cases` and `evaluation` statistics
(gisplatform/stats/topics.py) and the case-hotspots process read: their first request
read the whole cases version table (480 MB at city size, 9.7 s cold for `cases`); these
partial indexes hold only the open-ended current versions and answer by index-only scans.

Revision ID: 0016
Revises: 0015
"""

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

CURRENT = "where upper_inf(recorded) and upper_inf(valid)"


def _has_cases() -> bool:
    return op.get_bind().exec_driver_sql(
        "select to_regclass('city.cases_version') is not null").scalar()


def upgrade() -> None:
    if not _has_cases():
        return
    # also what the case-hotspots process reads (gisplatform/ogc/processes.py)
    op.execute("create index if not exists cases_version_now_reported on city.cases_version"
               " (reported_at) include (division_code, kind, big_class, source, status,"
               " grid_code, fid, handled_at, deadline, valid) " + CURRENT)
    op.execute("create index if not exists cases_version_now_deadline on city.cases_version"
               " (deadline) include (division_code, department, grid_code, handled_at,"
               " closed_at, rework_count, valid) " + CURRENT)


def downgrade() -> None:
    op.execute("drop index if exists city.cases_version_now_reported")
    op.execute("drop index if exists city.cases_version_now_deadline")
