"""Tracking, summary/registration and promotion components."""

# kfp ships each component function's source alone (a lightweight component), so every import its body
# needs is made inside the function: the function-local imports in this file are required, not a choice.
from kfp.dsl import HTML, Artifact, Input, Output, PipelineTaskFinalStatus


def start_study(config: str, tracking_uri: str, run_name: str, study_key: str, job_id: str,
                study: Output[Artifact]):
    """Create the study's parent MLflow run, tagged with ``study_key`` (the pipeline job's id when
    empty); its id travels to later steps in the ``study`` artifact."""
    from debiaskd.runtime.dispatch import execute

    study.metadata["run_id"] = execute("start_study", config=config, tracker={"uri": tracking_uri}, name=run_name,
                                       out_dir=study.path, key=study_key or job_id)


def end_study(config: str, tracking_uri: str, study_key: str, job_id: str, status: PipelineTaskFinalStatus,
              report: Output[HTML], files: Output[Artifact]) -> str:
    """The exit task: end the study run FINISHED or FAILED from the pipeline's final status; after
    success ``files`` holds the study's report (summary.json, report.md, plots), read back from MLflow,
    and ``report`` one self-contained page of it."""
    from pathlib import Path

    from debiaskd.runtime.dispatch import execute

    result = execute("end_study", config=config, tracker={"uri": tracking_uri}, key=study_key or job_id,
                     state=status.state, report_dir=files.path, page=True)
    if result["page"] is not None:
        Path(report.path).parent.mkdir(parents=True, exist_ok=True)
        Path(report.path).write_text(result["page"], encoding="utf-8")
    return result["status"]


def summarize_study(config: str, evaluations: Input[list[Artifact]], tracking_uri: str, study: Input[Artifact],
                    report: Output[HTML], files: Output[Artifact]) -> str:
    """summary.json + report.md (``files``, and ``report`` as one page); registers the teacher and the
    candidate student; returns the gate's verdict."""
    from pathlib import Path

    from debiaskd.runtime.dispatch import execute

    result = execute("summarize", config=config, out_dir=files.path, collected=[e.path for e in evaluations],
                     page=True, tracker={"uri": tracking_uri, "study_run_id": study.metadata["run_id"]})
    Path(report.path).parent.mkdir(parents=True, exist_ok=True)
    Path(report.path).write_text(result["page"], encoding="utf-8")
    return result["gate"]


def summarize_sweep(config: str, evaluations: Input[list[Artifact]], tracking_uri: str, study: Input[Artifact],
                    report: Output[HTML], files: Output[Artifact]) -> str:
    """The distillability matrix's report (sweep.json, report.md, the heat map) into ``files`` and logged to
    the sweep's parent run; ``report`` as one page. Registers the best robust cell as the challenger; returns
    "pass" when it passes the gate's dry run (the pipeline then promotes it), else "refuse"."""
    from pathlib import Path

    from debiaskd.runtime.dispatch import execute

    result = execute("summarize_sweep", config=config, out_dir=files.path, collected=[e.path for e in evaluations],
                     page=True, tracker={"uri": tracking_uri, "study_run_id": study.metadata["run_id"]})
    Path(report.path).parent.mkdir(parents=True, exist_ok=True)
    Path(report.path).write_text(result["page"], encoding="utf-8")
    return result["gate"]


def promote_champion(config: str, tracking_uri: str, study: Input[Artifact]) -> str:
    """Move ``champion`` to the challenger (the gate is applied again on its evidence tags); returns the
    promotion (``{"name", "version", "alias", "decision"}``) as JSON."""
    import json

    from debiaskd.runtime.dispatch import execute

    return json.dumps(execute("promote_challenger", config=config, tracker={"uri": tracking_uri}))
