"""Tracking, summary/registration and promotion components."""


from kfp.dsl import HTML, Artifact, Input, Output


def start_study(config: str, tracking_uri: str, run_name: str) -> str:
    """Create the study's parent MLflow run; returns its id."""
    from debiaskd import steps

    return steps.start_study(config, tracking_uri, run_name)


def summarize_study(config: str, evaluations: Input[list[Artifact]], tracking_uri: str, parent_run_id: str,
                    report: Output[HTML]) -> str:
    """summary.json + report.md; registers the teacher and the candidate student; returns the gate's verdict."""
    from debiaskd import steps

    eval_dirs, analysis_dirs = steps.collected_dirs([e.path for e in evaluations])
    summary = steps.summarize(config, eval_dirs, report.path, tracking_uri or None, parent_run_id or None,
                              analysis_dirs)
    return steps.gate_decision(summary)


def promote_champion(config: str, tracking_uri: str, parent_run_id: str) -> str:
    """Move ``champion`` to the challenger (the gate is applied again on its evidence tags)."""
    import json

    from debiaskd import steps

    return json.dumps(steps.promote_challenger(config, tracking_uri))
