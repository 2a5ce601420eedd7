"""Photos of cases (gisplatform/cases/photos.py): which case and step each came with.

The files are under the data dir, named by the SHA-256 of the stored JPEG; a row per case
and photo: the step it came with (the case's latest at upload), who, when it was taken and
where (the only EXIF kept), its distance from the case.

Revision ID: 0024
Revises: 0023
"""

from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        create table city.case_photos (
          id bigint generated always as identity primary key,
          case_number text not null,
          sha256 text not null check (sha256 ~ '^[0-9a-f]{64}$'),
          step_id bigint references city.case_steps (id),
          actor text,
          uploaded_at timestamptz not null default now(),
          taken_at timestamptz,
          lon float8,
          lat float8,
          distance_m float8,
          bytes integer not null,
          unique (case_number, sha256))""")
    op.execute("create index case_photos_step on city.case_photos (step_id)")


def downgrade() -> None:
    op.execute("drop table if exists city.case_photos")
