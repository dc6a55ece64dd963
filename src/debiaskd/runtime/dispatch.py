"""Run a pipeline step's job: in a warm worker when ``debiaskd run`` serves one, else in this process.

A kfp component calls :func:`execute` with the job's kind and fields (plain JSON values), so the
task's own process imports nothing heavy; the job is validated and run where it executes.
"""

from __future__ import annotations

from typing import Any


def execute(kind: str, **fields: Any) -> Any:
    """Validate the job ``kind`` from ``fields`` and run it; returns its (JSON-able) result."""
    from debiaskd.jobs.registry import run_job  # the jobs import torch, MLflow and the rest: only where they run

    return run_job(kind, fields)
