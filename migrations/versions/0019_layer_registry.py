"""The layer registry: the definitions of published layers (layers/definition.py), kept
like features — a change closes the current row in transaction time and adds the new one,
so who changed a layer's schema, and when, is never lost.

- `city.layer_registry`: one row per version of a layer's definition (JSON), with the
  action (create | alter | retire) and the actor; the current one has an open `recorded`.
  A retired layer keeps its name (and its version table): it cannot be created again.

Built-in layers are not stored: their definitions come from their modules
(layers/definition.py describe).

Revision ID: 0019
Revises: 0018
"""

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        create table city.layer_registry (
          rid bigint generated always as identity primary key,
          name text not null,
          definition jsonb not null,
          action text not null check (action in ('create', 'alter', 'retire')),
          actor text not null,
          recorded tstzrange not null default tstzrange(now(), null)
            check (not isempty(recorded) and not lower_inf(recorded))
        )""")
    op.execute("create unique index layer_registry_current on city.layer_registry (name)"
               " where upper_inf(recorded)")


def downgrade() -> None:
    op.execute("drop table if exists city.layer_registry")
