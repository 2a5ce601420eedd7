"""Digital city management as a workflow (数字城管): cases reported, registered,
dispatched, handled, verified and closed, each step a new version of the case.

- workflow.py: the state machine (`apply`, `allowed`), who does what (`ROLE`);
- limits.py: the handling time limits as data (`time_limit`, `set_limit`);
- service.py: the workflow on the database (`report`, `take_step`, `get`, `tasks`);
- routes.py: `/api/cases…`, `/api/tasks`.
"""

from .limits import limits, set_limit, time_limit
from .service import CaseSetup, get, report, take_step, tasks
from .workflow import ACTIONS, ROLE, STATUSES, Conflict, Step, WorkflowError, allowed, apply

__all__ = ["ACTIONS", "ROLE", "STATUSES", "CaseSetup", "Conflict", "Step", "WorkflowError",
           "allowed", "apply", "get", "limits", "report", "set_limit", "take_step", "tasks",
           "time_limit"]
