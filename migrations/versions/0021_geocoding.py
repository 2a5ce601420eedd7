"""Geocoding: trigram indexes over the standard addresses (gisplatform/geocode).

pg_trgm splits text into words of letters and digits as the database's LC_CTYPE sees them;
the platform's clusters are initialised with the C locale, where a Chinese character is
neither, so `similarity('榆林1路', '榆材1路')` is 1.0: only the digits count. So the indexes
are over `city.trgm_key(text)`, which spells every non-ASCII character as four ASCII letters
(its code point in base 26): trigrams then span characters and their neighbours, whatever
the locale. Partial (current knowledge only: what every geocode reads), and a B-tree on the
house number for the structured path (number first, then the road ranked in Python).

Revision ID: 0021
Revises: 0020
"""

from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

TRGM_KEY = """
create or replace function city.trgm_key(t text) returns text
language sql immutable strict parallel safe as $$
  select coalesce(string_agg(
    case when ascii(c) < 128 then c
         else chr(97 + (ascii(c) / 17576) % 26) || chr(97 + (ascii(c) / 676) % 26)
           || chr(97 + (ascii(c) / 26) % 26) || chr(97 + ascii(c) % 26) end, '' order by n), '')
  from regexp_split_to_table(t, '') with ordinality as x(c, n)
$$"""


def upgrade() -> None:
    # trusted since PostgreSQL 13: the database owner may create it; Debian ships it in
    # postgresql-<v> itself (contrib)
    op.execute("create extension if not exists pg_trgm")
    op.execute(TRGM_KEY)
    op.execute("comment on function city.trgm_key(text) is 'Text spelled in ASCII for"
               " pg_trgm under any locale (migration 0021, gisplatform/geocode)'")
    op.execute("create index addresses_version_address_trgm on city.addresses_version"
               " using gist (city.trgm_key(address) gist_trgm_ops) where upper_inf(recorded)")
    op.execute("create index addresses_version_house_number on city.addresses_version"
               " (house_number) where upper_inf(recorded)")


def downgrade() -> None:
    op.execute("drop index if exists city.addresses_version_house_number")
    op.execute("drop index if exists city.addresses_version_address_trgm")
    op.execute("drop function if exists city.trgm_key(text)")
