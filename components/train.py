"""Training components: a model trained on labels alone, and a student distilled from a teacher.

Each also evaluates the model it trained (bias-stratified, :func:`debiaskd.steps.evaluate_variant`)
before it exits: one task per variant, so the libraries and the model are loaded once.
"""

from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output


def train_model(config: str, variant: str, seed: int, dataset: Input[Dataset], tracking_uri: str,
                study: Input[Artifact], model: Output[Model], metrics: Output[Metrics],
                evaluation: Output[Artifact]) -> str:
    """Train a teacher, or a student without a teacher, and evaluate it; returns its MLflow run id."""
    from debiaskd import steps

    result, evaluated = steps.train_and_evaluate(config, variant, seed, dataset.path, model.path, evaluation.path,
                                                 None, tracking_uri or None, steps.study_run_id(study.path),
                                                 progress=False)
    model.metadata.update({"variant": variant, "seed": seed, "run_id": result["run_id"] or ""})
    steps.write_task_metrics(metrics, evaluated)
    return result["run_id"] or ""


def distill_student(config: str, variant: str, seed: int, dataset: Input[Dataset], teacher: Input[Model],
                    tracking_uri: str, study: Input[Artifact], model: Output[Model], metrics: Output[Metrics],
                    evaluation: Output[Artifact]) -> str:
    """Train a student variant from its teacher's model and evaluate it; returns its MLflow run id."""
    from debiaskd import steps

    teacher_dir = steps.read_result(teacher.path)["model_dir"]
    result, evaluated = steps.train_and_evaluate(config, variant, seed, dataset.path, model.path, evaluation.path,
                                                 teacher_dir, tracking_uri or None, steps.study_run_id(study.path),
                                                 progress=False)
    model.metadata.update({"variant": variant, "seed": seed, "run_id": result["run_id"] or ""})
    steps.write_task_metrics(metrics, evaluated)
    return result["run_id"] or ""
