"""The case clock as data (gisplatform/cases/clock.py, limits.py): limits per step in
calendar or working hours, the work calendar, and a log of changes to the directories.

- city.case_time_limits: `step` (the step the limit times, from the step before it:
  register from the report, dispatch from registering, handle from dispatch — the case's
  deadline —, verify from handling, close from verifying) and `unit` (calendar | working
  hours). The rows so far are handling limits in calendar hours;
- city.work_calendar: the days that break the Monday–Friday rule (holidays, moved working
  days), one row a day;
- city.directory_changes: every change the platform makes to city.departments and
  city.work_calendar (old and new row, when, by whom; gisplatform/cases/directory.py) —
  the directories are edited in place and their history kept here. Written by the code,
  not by trigger: departments is a Citus reference table, where a row trigger would run
  on every node.

Revision ID: 0025
Revises: 0024
"""

from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

STEPS = ("register", "dispatch", "handle", "verify", "close")


def upgrade() -> None:
    steps = ", ".join(f"'{s}'" for s in STEPS)
    op.execute(f"""
        alter table city.case_time_limits
          add column step text not null default 'handle' check (step in ({steps})),
          add column unit text not null default 'calendar'
            check (unit in ('calendar', 'working'))""")
    op.execute("alter table city.case_time_limits drop constraint case_time_limits_pkey")
    op.execute("alter table city.case_time_limits add primary key"
               " (kind, big_class, step, effective)")
    op.execute("""
        create table city.work_calendar (
          day date primary key,
          working boolean not null,
          note text,
          actor text not null,
          recorded timestamptz not null default now())""")
    op.execute("comment on table city.work_calendar is 'Days that break the Monday-Friday"
               " working week: holidays (working false) and moved working days (true)'")
    op.execute("""
        create table city.directory_changes (
          id bigint generated always as identity primary key,
          tbl text not null,
          old jsonb,
          new jsonb,
          at timestamptz not null default now(),
          actor text not null)""")


def downgrade() -> None:
    op.execute("drop table if exists city.directory_changes")
    op.execute("drop table if exists city.work_calendar")
    op.execute("delete from city.case_time_limits where step <> 'handle' or unit <> 'calendar'")
    op.execute("alter table city.case_time_limits drop constraint case_time_limits_pkey")
    op.execute("alter table city.case_time_limits drop column step, drop column unit")
    op.execute("alter table city.case_time_limits add primary key (kind, big_class, effective)")
