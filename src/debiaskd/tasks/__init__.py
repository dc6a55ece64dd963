"""The study's tasks, NLI and vision, as implementations of :class:`debiaskd.core.task.Task`.

``get_task("nli")`` → the task object; every module that once branched on ``cfg.task`` asks it."""

from __future__ import annotations

from debiaskd.core.errors import DebiaskdError
from debiaskd.core.task import TASK_NAMES, Task
from debiaskd.tasks.nli import NLITask
from debiaskd.tasks.vision import VisionTask

__all__ = ["TASK_NAMES", "Task", "all_tasks", "get_task", "task_of_scheme"]

_TASKS: dict[str, Task] = {task.name: task for task in (NLITask(), VisionTask())}


def get_task(task: str | Task) -> Task:
    """The task object of a name (``cfg.task``, a manifest's or a model's ``task``); a task passes through."""
    if isinstance(task, Task):
        return task
    found = _TASKS.get(task) if isinstance(task, str) else None
    if found is None:
        raise DebiaskdError(f"unknown task '{task}'", rule="task")
    return found


def all_tasks() -> tuple[Task, ...]:
    return tuple(_TASKS.values())


def task_of_scheme(scheme: str) -> Task | None:
    """The task whose format a loader scheme is (None: a shared scheme, ``generated`` or ``dataset``)."""
    return next((t for t in _TASKS.values() if scheme in t.schemes), None)
