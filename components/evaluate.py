"""Collection and analysis components (each training task evaluates its own model)."""

from kfp.dsl import HTML, Artifact, Dataset, Input, Model, Output


def collect_evaluations(config: str, seed: int, tracking_uri: str, study: Input[Artifact],
                        evaluations: Output[Artifact]):
    """Gather one seed's evaluations and analyses from MLflow (fails if a variant did not finish)."""
    from debiaskd.jobs import steps

    steps.collect_evaluations(config, seed, tracking_uri, steps.study_run_id(study.path),
                              evaluations.path)


def analyze_model(config: str, concurrent: int, model: Input[Model], reference: Input[Model], dataset: Input[Dataset],
                  tracking_uri: str, study: Input[Artifact], analysis: Output[HTML]):
    """Attention-pattern and circuit analysis of a model against its reference (``concurrent`` tasks
    share the machine's CPUs under the local runner)."""
    from debiaskd.jobs import steps

    steps.analyze_pair(config, model.path, reference.path, dataset.path, None, tracking_uri or None,
                       steps.study_run_id(study.path), concurrent=concurrent, html_file=analysis.path)
