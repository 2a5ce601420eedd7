"""Security: departments, API tokens and their grants, the audit log, the analyst role.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# (code, name) — the name in the layers' DEPARTMENT style: Chinese, then English.
DEPARTMENTS = (
    ("gongan", "抚顺市公安局 Public Security Bureau"),
    ("minzheng", "抚顺市民政局 Civil Affairs Bureau"),
    ("zhujian", "抚顺市住房和城乡建设局 Housing and Urban-Rural Development Bureau"),
    ("shichang", "抚顺市市场监督管理局 Market Regulation Bureau"),
    ("chengguan", "抚顺市城市管理综合行政执法局 City Management Bureau"),
    ("dashuju", "抚顺市大数据管理局 Big Data Bureau"),
    ("ziran", "抚顺市自然资源局 Natural Resources Bureau"),
)

ANALYST_ROLE = "gisplatform_analyst"
# Snapshot views with no personal attributes that analysts may read straight from PostGIS,
# as they stood when this migration was written (later layers get their own grant).
# Not here: persons, housing_units, cameras and camera_cones (a conditional layer),
# legal_persons (legal_representative) and every *_version table.
ANALYST_VIEWS = ("admin_areas", "grid_cells", "addresses", "buildings", "components", "cases",
                 "responsibility_zones", "case_status")
# Public aggregates over persons_version: SECURITY DEFINER so the caller needs no access to
# persons_version itself (they run as their owner, with a fixed search_path).
AGGREGATES = ("population_by_grid(timestamptz)", "population_by_area(timestamptz)")
AGGREGATE_PATH = "pg_catalog, public, city"


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def upgrade() -> None:
    op.execute("""
        create table city.departments (
          code text primary key check (code ~ '^[a-z][a-z0-9_]*$'),
          name text not null
        )""")
    op.execute("insert into city.departments (code, name) values "
               + ", ".join(f"({_lit(c)}, {_lit(n)})" for c, n in DEPARTMENTS))
    op.execute("""
        create table city.api_tokens (
          id bigint generated always as identity primary key,
          token_hash text not null unique check (token_hash ~ '^[0-9a-f]{64}$'),
          department text not null references city.departments (code),
          label text,
          created_at timestamptz not null default now(),
          expires_at timestamptz,
          revoked_at timestamptz
        )""")
    op.execute("comment on column city.api_tokens.token_hash is "
               "'sha256 hex of the secret; the secret itself is never stored'")
    op.execute("""
        create table city.grants (
          token_id bigint not null references city.api_tokens (id) on delete cascade,
          layer text not null check (layer ~ '^[a-z][a-z0-9-]*$'),
          level text not null check (level in ('read', 'read_personal', 'write')),
          primary key (token_id, layer, level)
        )""")
    op.execute("""
        create table city.audit_log (
          id bigint generated always as identity primary key,
          at timestamptz not null default now(),
          token_id bigint,
          department text,
          layer text,
          action text not null check (action <> ''),
          detail jsonb not null default '{}',
          client text
        )""")
    op.execute("create index audit_log_at on city.audit_log (at)")
    op.execute("create index audit_log_token on city.audit_log (token_id, at)")

    # Roles are cluster-wide: another database of this cluster may have created it already.
    op.execute(f"""
        do $$ begin
          if not exists (select from pg_roles where rolname = {_lit(ANALYST_ROLE)}) then
            create role {ANALYST_ROLE} nologin;
          end if;
        end $$""")
    op.execute(f"grant usage on schema city to {ANALYST_ROLE}")
    op.execute(f"grant select on {', '.join('city.' + v for v in ANALYST_VIEWS)} to {ANALYST_ROLE}")
    for fn in AGGREGATES:
        op.execute(f"alter function city.{fn} security definer set search_path = {AGGREGATE_PATH}")
        op.execute(f"revoke execute on function city.{fn} from public")
        op.execute(f"grant execute on function city.{fn} to {ANALYST_ROLE}")


def downgrade() -> None:
    for fn in AGGREGATES:
        op.execute(f"revoke execute on function city.{fn} from {ANALYST_ROLE}")
        op.execute(f"grant execute on function city.{fn} to public")
        op.execute(f"alter function city.{fn} security invoker reset search_path")
    op.execute(f"revoke select on {', '.join('city.' + v for v in ANALYST_VIEWS)} "
               f"from {ANALYST_ROLE}")
    op.execute(f"revoke usage on schema city from {ANALYST_ROLE}")
    # Drop the role only when nothing else holds on to it: no member logins (dropping would
    # silently cut them off) and no privileges in another database of the cluster.
    op.execute(f"""
        do $$ begin
          if exists (select from pg_auth_members m join pg_roles r on r.oid = m.roleid
                     where r.rolname = {_lit(ANALYST_ROLE)}) then
            raise notice '{ANALYST_ROLE} kept: it has member roles';
          else
            drop role if exists {ANALYST_ROLE};
          end if;
        exception when dependent_objects_still_exist then
          raise notice '{ANALYST_ROLE} kept: it still has privileges in another database';
        end $$""")
    op.execute("drop table if exists city.audit_log")
    op.execute("drop table if exists city.grants")
    op.execute("drop table if exists city.api_tokens")
    op.execute("drop table if exists city.departments")
