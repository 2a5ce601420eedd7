"""The grant `layers:publish` (gisplatform.security.require_publish): a token may publish
new layers for its department (POST /api/layers).

Revision ID: 0020
Revises: 0019
"""

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("alter table city.grants drop constraint grants_level_check")
    op.execute("alter table city.grants add constraint grants_level_check check"
               " (level in ('read', 'read_personal', 'write')"
               " or (layer = 'layers' and level = 'publish'))")


def downgrade() -> None:
    op.execute("delete from city.grants where level = 'publish'")
    op.execute("alter table city.grants drop constraint grants_level_check")
    op.execute("alter table city.grants add constraint grants_level_check check"
               " (level in ('read', 'read_personal', 'write'))")
