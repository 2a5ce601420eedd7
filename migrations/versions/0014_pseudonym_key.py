"""The pseudonym key (gisplatform/security/pseudonyms.py) and persons' fids keyed by it.

`city.pseudonym_key`: one row, 32 random bytes made here, for this database alone; no grant
to the analyst role. A person's fid was `p` + SHA-256(ID number)[:20]: from the masked ID
number (area code and last four) a `read` grant holder recovered the whole number by hashing
the possible birth dates. It becomes `p` + HMAC-SHA256(key, ID number)[:20]: the versions and
the change feed's log are rewritten in place (the triggers log the update, so tile caches
drop the persons' tiles). The downgrade restores the unkeyed ids.

Revision ID: 0014
Revises: 0013
"""

import hashlib
import hmac
import secrets

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def _rewrite(fid_of) -> None:
    """Give every person the fid `fid_of(id_number)`, in the versions and the change log."""
    bind = op.get_bind()
    rows = bind.exec_driver_sql("select distinct fid, id_number from city.persons_version"
                                " where id_number is not null").fetchall()
    mapping = [(old, new) for old, new in ((old, fid_of(rid)) for old, rid in rows) if new != old]
    if not mapping:
        return
    op.execute("create temp table person_fid_map (old text primary key, new text not null)")
    raw = bind.connection.driver_connection  # psycopg: COPY, in this migration's transaction
    with raw.cursor() as cur, cur.copy("copy person_fid_map (old, new) from stdin") as cp:
        for row in mapping:
            cp.write_row(row)
    op.execute("update city.persons_version v set fid = m.new from person_fid_map m"
               " where v.fid = m.old")
    op.execute("update city.change_log c set fid = m.new from person_fid_map m"
               " where c.layer = 'persons' and c.fid = m.old")
    op.execute("drop table person_fid_map")


def upgrade() -> None:
    op.execute("""
        create table city.pseudonym_key (
          singleton boolean primary key default true check (singleton),
          key bytea not null check (length(key) >= 16),
          created_at timestamptz not null default now()
        )""")
    op.execute("comment on table city.pseudonym_key is 'HMAC key of pseudonymous ids (person"
               " fids); made at random per database; never granted to analysts'")
    op.execute("revoke all on city.pseudonym_key from public")
    key = secrets.token_bytes(32)
    op.execute(f"insert into city.pseudonym_key (key) values (decode('{key.hex()}', 'hex'))")
    _rewrite(lambda rid: "p" + hmac.new(key, rid.encode(), hashlib.sha256).hexdigest()[:20])


def downgrade() -> None:
    _rewrite(lambda rid: "p" + hashlib.sha256(rid.encode()).hexdigest()[:20])
    op.execute("drop table city.pseudonym_key")
