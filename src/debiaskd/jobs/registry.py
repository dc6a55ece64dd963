"""Every job by its ``KIND``, and the one entry point that validates and runs one.

:func:`debiaskd.runtime.dispatch.execute` (what a kfp component calls) ends here, wherever the job
runs: in a warm worker or in the task's own process.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, TypeAdapter

from debiaskd.jobs.analyze import AnalyzeJob
from debiaskd.jobs.base import Job, records_errors
from debiaskd.jobs.data import AugmentDataJob, PrepareDataJob, ValidateDataJob
from debiaskd.jobs.promote import PromoteJob
from debiaskd.jobs.report import CollectJob, SummarizeJob
from debiaskd.jobs.study import EndStudyJob, StartStudyJob
from debiaskd.jobs.sweep import SweepReportJob
from debiaskd.jobs.train import TrainJob

JobKind = Annotated[
    StartStudyJob | EndStudyJob | PrepareDataJob | ValidateDataJob | AugmentDataJob | TrainJob | AnalyzeJob
    | CollectJob | SummarizeJob | PromoteJob | SweepReportJob,
    Field(discriminator="KIND"),
]
#: KIND → job class
JOBS: dict[str, type[Job]] = {
    cls.model_fields["KIND"].default: cls
    for cls in (StartStudyJob, EndStudyJob, PrepareDataJob, ValidateDataJob, AugmentDataJob, TrainJob, AnalyzeJob,
                CollectJob, SummarizeJob, PromoteJob, SweepReportJob)
}
_ADAPTER: TypeAdapter[Job] = TypeAdapter(JobKind)


def make_job(kind: str, fields: dict[str, Any]) -> Job:
    """The job ``kind`` validated from ``fields`` (plain JSON values, or already-typed ones in-process)."""
    if kind not in JOBS:
        raise ValueError(f"unknown job kind '{kind}' (known: {', '.join(sorted(JOBS))})")
    with records_errors(kind):  # the config text is parsed here: a user error in it is recorded like one in run()
        return _ADAPTER.validate_python({**fields, "KIND": kind})


def run_job(kind: str, fields: dict[str, Any]) -> Any:
    """Validate the job ``kind`` from ``fields`` and run it; returns its JSON-able result."""
    with make_job(kind, fields) as job:
        return job.run()
