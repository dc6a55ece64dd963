"""Evaluation and analysis components."""

from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output


def evaluate_model(config: str, model: Input[Model], dataset: Input[Dataset], tracking_uri: str,
                   metrics: Output[Metrics], evaluation: Output[Artifact]):
    """Bias-stratified evaluation: headline numbers as kfp Metrics, everything in the artifact and MLflow."""
    import json

    from debiaskd import steps

    result = steps.evaluate_variant(config, model.path, dataset.path, evaluation.path, tracking_uri or None)
    headline = {k: float(result[k]) for k in steps.HEADLINE_KEYS if isinstance(result.get(k), (int, float))}
    for key, value in headline.items():
        metrics.log_metric(key, value)
    with open(metrics.path, "w", encoding="utf-8") as fh:  # a file behind the artifact lets kfp cache the task
        json.dump(headline, fh)


def collect_evaluations(config: str, seed: int, tracking_uri: str, study: Input[Artifact],
                        evaluations: Output[Artifact]):
    """Gather one seed's evaluations and analyses from MLflow (fails if a variant did not finish)."""
    from debiaskd import steps

    steps.collect_evaluations(config, seed, tracking_uri, steps.study_run_id(study.path), evaluations.path)


def analyze_model(config: str, model: Input[Model], reference: Input[Model], dataset: Input[Dataset],
                  tracking_uri: str, study: Input[Artifact], analysis: Output[HTML]):
    """Attention-pattern and circuit analysis of a model against its reference."""
    from debiaskd import steps

    steps.analyze_pair(config, model.path, reference.path, dataset.path, analysis.path,
                       tracking_uri or None, steps.study_run_id(study.path))
