"""The base of every job: a frozen pydantic model, validated once, run as a context manager.

A job is one pipeline step: its fields are everything the step needs (the study's config, folders
as paths, a :class:`~debiaskd.tracking.tracker.Tracker`), so a kfp component builds it from plain
JSON values (:func:`debiaskd.runtime.dispatch.execute`), and :meth:`Job.run` returns a JSON-able
result from which the component writes its kfp outputs. The config arrives as YAML (or JSON) text
from a component and as a :class:`StudyConfig` in-process; either way it is parsed here, once.

``with job:`` records a :class:`DebiaskdError` (an error in the user's input) in
``$DEBIASKD_ERROR_FILE`` before it propagates: steps run in subprocesses, and the CLI reads the
file back to print the message and exit with code 2.
"""

from __future__ import annotations

import abc
import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, field_validator

from debiaskd.core.config import StudyConfig, config_from_yaml_text
from debiaskd.core.errors import DebiaskdError
from debiaskd.tracking.tracker import Tracker

RESULT_FILE = "result.json"
#: when set, a job that fails on user input appends its message here (the CLI reads it back)
ERROR_FILE_ENV = "DEBIASKD_ERROR_FILE"


def record_error(step: str, exc: DebiaskdError) -> None:
    """Append ``exc`` to ``$DEBIASKD_ERROR_FILE`` as ``{"step", "message"}`` (once per error)."""
    if getattr(exc, "recorded", False):  # an inner step of the job recorded it already
        return
    exc.recorded = True
    target = os.environ.get(ERROR_FILE_ENV)
    if target:
        with open(target, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"step": step, "message": exc.render()}) + "\n")


@contextlib.contextmanager
def records_errors(step: str) -> Iterator[None]:
    """Record a :class:`DebiaskdError` raised inside (:func:`record_error`), then re-raise it."""
    try:
        yield
    except DebiaskdError as exc:
        record_error(step, exc)
        raise


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str), encoding="utf-8")


def read_result(folder: str | Path) -> dict[str, Any]:
    """The ``result.json`` a training or evaluation job wrote into its folder."""
    return json.loads((Path(folder) / RESULT_FILE).read_text(encoding="utf-8"))


def share_cpus(concurrent: int) -> int:
    """Give this process its share of the machine's cores when ``concurrent`` tasks run on it at once
    (the local runner's fan-out over students); returns the torch thread count now in use.

    One thread per task beats two tasks fighting over two threads each; a configured
    ``*_train.num_threads`` still wins inside :func:`debiaskd.training.loop.fit`."""
    import torch  # slow: only the training and analysis jobs need it, where they run

    if concurrent > 1:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        torch.set_num_threads(max(1, cpus // concurrent))
    return torch.get_num_threads()


class Job(BaseModel, abc.ABC):
    """One pipeline step. Subclasses set ``KIND`` (a ``Literal`` field: the registry's key, the name
    its errors are recorded under) and implement :meth:`run`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    KIND: str
    config: StudyConfig
    tracker: Tracker = Tracker()

    #: the step name errors are recorded under (the step functions' names, which the CLI prints)
    STEP: ClassVar[str] = ""

    @field_validator("config", mode="before")
    @classmethod
    def _parse_config(cls, value: Any) -> Any:
        """The YAML (or one-line JSON) text a component receives becomes a :class:`StudyConfig` here."""
        return config_from_yaml_text(value) if isinstance(value, str) else value

    @property
    def step(self) -> str:
        return self.STEP or self.KIND

    def __enter__(self) -> Job:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if isinstance(exc, DebiaskdError):
            record_error(self.step, exc)
        return False

    @abc.abstractmethod
    def run(self) -> Any:
        """Do the step; returns a JSON-able result."""
