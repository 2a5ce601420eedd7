"""The case workflow (gisplatform/cases): its roles as grants, the steps it records, the time
limits as data, case numbers.

- grants: the workflow roles on `cases` (security.WORKFLOW_ROLES: accept, dispatch, handle,
  verify, close, manage), beside read / read_personal / write;
- city.case_steps: the steps the workflow records besides the lifecycle's own (rejected,
  suspended, resumed, reworked);
- city.case_time_limits: the handling time limit per kind and big class, from `effective`
  on (a new row per change, who and when: a dispatch reads the limit in effect at its
  instant). Seeded with the figures the code held until now (layers/city_management);
- city.case_number_seq: the serial of reported case numbers (FS + date + 7 digits), from
  8 000 001 so it never meets the demo's numbers.

Revision ID: 0022
Revises: 0021
"""

from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

ROLES = ("accept", "dispatch", "handle", "verify", "close", "manage")
STEPS = ("reported", "registered", "dispatched", "handled", "verified", "closed")
MORE_STEPS = ("rejected", "suspended", "resumed", "reworked")
# (kind, big class) -> hours, as layers/city_management held them
LIMITS = {("component", "01"): 24, ("component", "02"): 48, ("component", "03"): 24,
          ("component", "04"): 72, ("component", "05"): 72, ("component", "06"): 72,
          ("event", "01"): 4, ("event", "02"): 24, ("event", "03"): 24, ("event", "04"): 2,
          ("event", "05"): 4, ("event", "06"): 48}


def _list(values) -> str:
    return ", ".join(f"'{v}'" for v in values)


def upgrade() -> None:
    op.execute("alter table city.grants drop constraint grants_level_check")
    op.execute("alter table city.grants add constraint grants_level_check check"
               " (level in ('read', 'read_personal', 'write')"
               " or (layer = 'layers' and level = 'publish')"
               f" or (layer = 'cases' and level in ({_list(ROLES)})))")
    op.execute("alter table city.case_steps drop constraint case_steps_step_check")
    op.execute("alter table city.case_steps add constraint case_steps_step_check check"
               f" (step in ({_list(STEPS + MORE_STEPS)}))")
    op.execute("""
        create table city.case_time_limits (
          kind text not null,
          big_class text not null,
          hours numeric not null check (hours > 0),
          effective timestamptz not null,
          actor text not null,
          recorded timestamptz not null default now(),
          primary key (kind, big_class, effective))""")
    op.execute("comment on table city.case_time_limits is 'Case handling time limits per"
               " kind and big class, from effective on (gisplatform/cases/limits.py)'")
    op.execute("insert into city.case_time_limits (kind, big_class, hours, effective, actor)"
               " values " + ", ".join(f"('{k}', '{b}', {h}, '1900-01-01 00:00+08', 'migration 0022')"
                                      for (k, b), h in LIMITS.items()))
    op.execute("create sequence city.case_number_seq start 8000001")


def downgrade() -> None:
    op.execute("drop sequence if exists city.case_number_seq")
    op.execute("drop table if exists city.case_time_limits")
    op.execute("delete from city.case_steps where step in (" + _list(MORE_STEPS) + ")")
    op.execute("alter table city.case_steps drop constraint case_steps_step_check")
    op.execute("alter table city.case_steps add constraint case_steps_step_check check"
               f" (step in ({_list(STEPS)}))")
    op.execute("delete from city.grants where layer = 'cases' and level in (" + _list(ROLES) + ")")
    op.execute("alter table city.grants drop constraint grants_level_check")
    op.execute("alter table city.grants add constraint grants_level_check check"
               " (level in ('read', 'read_personal', 'write')"
               " or (layer = 'layers' and level = 'publish'))")
