"""Tracking, summary/registration and promotion components."""


from kfp.dsl import HTML, Artifact, Input, Output


def start_study(config: str, tracking_uri: str, run_name: str, study: Output[Artifact]):
    """Create the study's parent MLflow run; its id travels to later steps in the ``study`` artifact."""
    from debiaskd import steps

    study.metadata["run_id"] = steps.start_study(config, tracking_uri, run_name, study.path)


def summarize_study(config: str, evaluations: Input[list[Artifact]], tracking_uri: str, study: Input[Artifact],
                    report: Output[HTML]) -> str:
    """summary.json + report.md; registers the teacher and the candidate student; returns the gate's verdict."""
    from debiaskd import steps

    eval_dirs, analysis_dirs = steps.collected_dirs([e.path for e in evaluations])
    summary = steps.summarize(config, eval_dirs, report.path, tracking_uri or None,
                              steps.study_run_id(study.path), analysis_dirs)
    return steps.gate_decision(summary)


def promote_champion(config: str, tracking_uri: str, study: Input[Artifact]) -> str:
    """Move ``champion`` to the challenger (the gate is applied again on its evidence tags)."""
    import json

    from debiaskd import steps

    return json.dumps(steps.promote_challenger(config, tracking_uri))
