"""The case lifecycle of digital city management (数字城管, CJ/T 315) as a state machine.

    reported ──register──▶ registered ──dispatch──▶ dispatched ──handle──▶ handled
        │                      │  ▲                    │  ▲                   │
      reject                suspend│resume        suspend│resume     verify: pass ──▶ verified ──close──▶ closed
        ▼                      ▼  │                    ▼  │                 verify: rework ──▶ dispatched
     rejected               suspended               suspended               (rework_count + 1)

Every action is done by a role, a grant on `cases` (`ROLE`): `accept` registers or rejects,
`dispatch` dispatches, suspends and resumes, `handle` handles (only the department the case
is dispatched to), `verify` verifies, `close` closes. Anything else from a state is a
`Conflict` naming the actions allowed there.

`apply` is pure: the case's properties and the step → the new properties. The deadline is
set at dispatch (the time limit of the case's kind and class, as it stood at that moment,
on the case clock: limits.py, clock.py) and pushed back on resume by the time the case was
suspended (the clock stops); the service computes both, `apply` records them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

ROLE = {"register": "accept", "reject": "accept", "dispatch": "dispatch", "handle": "handle",
        "verify": "verify", "close": "close", "suspend": "dispatch", "resume": "dispatch"}
ACTIONS = tuple(ROLE)
STATUSES = ("reported", "registered", "dispatched", "handled", "verified", "closed",
            "rejected", "suspended")
FINAL = ("closed", "rejected")
# action -> the states it may be taken from
FROM = {"register": ("reported",), "reject": ("reported",), "dispatch": ("registered",),
        "handle": ("dispatched",), "verify": ("handled",), "close": ("verified",),
        "suspend": ("registered", "dispatched"), "resume": ("suspended",)}
# the step each action records in city.case_steps
STEP = {"register": "registered", "reject": "rejected", "dispatch": "dispatched",
        "handle": "handled", "close": "closed", "suspend": "suspended", "resume": "resumed"}


class WorkflowError(ValueError):
    """A step that cannot be taken as asked (a 400: a missing or bad parameter)."""


class Conflict(WorkflowError):
    """An action the case's state does not allow (a 409), or a concurrent step won."""

    def __init__(self, message: str, allowed: list[str]):
        super().__init__(message)
        self.allowed = allowed


def allowed(status: str) -> list[str]:
    """The actions that may be taken from `status`."""
    return [a for a in ACTIONS if status in FROM[a]]


def check(status: str, action: str) -> None:
    """WorkflowError for an unknown action, Conflict for one `status` does not allow."""
    if action not in ROLE:
        raise WorkflowError(f"action: one of {', '.join(ACTIONS)}; got {action!r}")
    if status not in FROM[action]:
        raise Conflict(f"{action}: not from a {status} case (allowed: "
                       f"{', '.join(allowed(status)) or 'none, it is ' + status})",
                       allowed(status))


@dataclass(frozen=True)
class Step:
    """What an action asks: `department` for dispatch (a name from the directory),
    `result` (pass | rework) for verify, `note` or `reason`."""
    action: str
    department: str | None = None
    result: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class Applied:
    properties: dict  # the case as it now stands
    step: str  # the row of city.case_steps
    note: str | None


def apply(case: dict, step: Step, at: datetime, deadline: datetime | None = None,
          resumes_to: str | None = None) -> Applied:
    """The case after `step` at `at`. `deadline`: for a dispatch, when handling is due (the
    time limit in effect on the case clock: limits.py, clock.py); for a resume, the deadline
    pushed back by the time suspended. `resumes_to`: the state a resume returns to.
    Conflict / WorkflowError say why not."""
    check(case["status"], step.action)
    if step.action in ("reject", "suspend") and not (step.note or "").strip():
        raise WorkflowError(f"{step.action}: a reason is required")
    new, kind = dict(case), STEP.get(step.action)
    if step.action == "dispatch":
        if not step.department:
            raise WorkflowError("dispatch: department is required (a department's code)")
        if deadline is None:
            raise WorkflowError(f"dispatch: no time limit for {case['kind']} class "
                                f"{case['big_class']} (gisplatform cases limits)")
        new.update(status="dispatched", department=step.department, dispatched_at=at,
                   deadline=deadline)
    elif step.action == "verify":
        if step.result not in ("pass", "rework"):
            raise WorkflowError("verify: result is pass or rework")
        if step.result == "pass":
            new["status"], kind = "verified", "verified"
        else:  # back to the department; its deadline stands
            new.update(status="dispatched", handled_at=None,
                       rework_count=(case.get("rework_count") or 0) + 1)
            kind = "reworked"
    elif step.action == "resume":
        if resumes_to is None:
            raise WorkflowError("resume: the suspension is not on record")
        new["deadline"] = deadline  # the clock stopped while suspended
        new["status"] = resumes_to
    else:
        new["status"] = kind
        if step.action == "handle":
            new["handled_at"] = at
        elif step.action == "close":
            new["closed_at"] = at
    return Applied(new, kind, step.note)
