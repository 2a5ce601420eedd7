"""A btree index on lower(valid) of every version table: a layer's temporal extent (its
earliest valid_from, gisplatform/temporal/extents.py) in one index lookup instead of a scan
of the table (2 M rows for persons at city size). New version tables get it from
gisplatform.temporal.spec.index_sql.

Revision ID: 0013
Revises: 0012
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# every version table in schema city, whoever created it
VERSION_TABLES = """
    select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = 'city' and c.relkind in ('r', 'p') and right(c.relname, 8) = '_version'
      and exists (select 1 from pg_attribute a where a.attrelid = c.oid
                  and a.attname = 'valid' and not a.attisdropped)"""


def _tables() -> list[str]:
    return [r[0] for r in op.get_bind().exec_driver_sql(VERSION_TABLES)]


def upgrade() -> None:
    for t in _tables():
        op.execute(f'create index if not exists "{t}_valid_lo" on city."{t}" (lower(valid))')


def downgrade() -> None:
    for t in _tables():
        op.execute(f'drop index if exists city."{t}_valid_lo"')
