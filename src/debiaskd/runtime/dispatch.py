"""Run a pipeline step's job: in a warm worker when ``debiaskd run`` serves one, else in this process.

A kfp component calls :func:`execute` with the job's kind and fields (plain JSON values), so the
task's own process imports nothing heavy: the job is validated and run where it executes. With a
warm server (``$DEBIASKD_WARM_SOCKET``, set by :func:`debiaskd.runtime.warm.serving` for the tasks
``debiaskd run`` starts) that is a child forked from a process that already imported torch,
transformers, MLflow and Great Expectations; on a Kubeflow cluster, or with ``--no-warm``, the
task's own process.
"""

from __future__ import annotations

import os
from typing import Any

from debiaskd.runtime import protocol


def execute(kind: str, **fields: Any) -> Any:
    """Validate the job ``kind`` from ``fields`` and run it; returns its (JSON-able) result."""
    path = os.environ.get(protocol.SOCKET_ENV)
    conn = protocol.connect(path) if path else None
    if conn is not None:
        with conn:
            return protocol.remote(conn, kind, fields)
    return run_here(kind, fields)


def run_here(kind: str, fields: dict[str, Any]) -> Any:
    """Run job ``kind`` in this process (the warm worker's child calls this too)."""
    if kind == PROBE:
        return probe(**fields)
    from debiaskd.jobs.registry import run_job  # the jobs import torch, MLflow and the rest: only where they run

    return run_job(kind, fields)


#: a health check of wherever jobs run: what a job sees there
PROBE = "probe"


def probe(message: str | None = None, env: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """Print ``message`` to the task's stdout; return the process id, working directory and the named
    environment variables (what a job sees where it runs)."""
    if message is not None:
        print(message)
    return {"pid": os.getpid(), "cwd": os.getcwd(), "env": {name: os.environ.get(name) for name in env}}
