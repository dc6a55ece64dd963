"""Tracking, summary/registration and promotion components."""


from kfp.dsl import HTML, Artifact, Input, Output, PipelineTaskFinalStatus


def start_study(config: str, tracking_uri: str, run_name: str, study_key: str, job_id: str,
                study: Output[Artifact]):
    """Create the study's parent MLflow run, tagged with ``study_key`` (the pipeline job's id when
    empty); its id travels to later steps in the ``study`` artifact."""
    from debiaskd.jobs import steps

    study.metadata["run_id"] = steps.start_study(config, tracking_uri, run_name, study.path, study_key or job_id)


def end_study(config: str, tracking_uri: str, study_key: str, job_id: str, status: PipelineTaskFinalStatus,
              report: Output[HTML], files: Output[Artifact]) -> str:
    """The exit task: end the study run FINISHED or FAILED from the pipeline's final status; after
    success ``files`` holds the study's report (summary.json, report.md, plots), read back from MLflow,
    and ``report`` one self-contained page of it."""
    from debiaskd.jobs import steps

    return steps.end_study(config, tracking_uri, study_key or job_id, status.state, files.path, report.path)


def summarize_study(config: str, evaluations: Input[list[Artifact]], tracking_uri: str, study: Input[Artifact],
                    report: Output[HTML], files: Output[Artifact]) -> str:
    """summary.json + report.md (``files``, and ``report`` as one page); registers the teacher and the
    candidate student; returns the gate's verdict."""
    from debiaskd.jobs import steps

    eval_dirs, analysis_dirs = steps.collected_dirs([e.path for e in evaluations])
    summary = steps.summarize(config, eval_dirs, files.path, tracking_uri or None,
                              steps.study_run_id(study.path), analysis_dirs, report.path)
    return steps.gate_decision(summary)


def promote_champion(config: str, tracking_uri: str, study: Input[Artifact]) -> str:
    """Move ``champion`` to the challenger (the gate is applied again on its evidence tags)."""
    import json

    from debiaskd.jobs import steps

    return json.dumps(steps.promote_challenger(config, tracking_uri))
