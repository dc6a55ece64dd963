"""Training components: a model trained on labels alone, and a student trained beside its teacher.

Each also evaluates the model it trained (bias-stratified, :func:`debiaskd.jobs.steps.evaluate_variant`)
before it exits: one task per variant, so the libraries and the model are loaded once.
"""

from typing import Optional

from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output


def train_model(config: str, variant: str, seed: int, dataset: Input[Dataset], tracking_uri: str,
                study: Input[Artifact], model: Output[Model], metrics: Output[Metrics],
                confusion: Output[ClassificationMetrics], evaluation: Output[Artifact],
                reference: Optional[Input[Model]] = None) -> str:  # noqa: UP045
    """Train a teacher, or a student without a teacher, and evaluate it; returns its MLflow run id.
    ``reference``: the model whose logits the objective reads (the ERM teacher, for conf_reg)."""
    from debiaskd.jobs import steps

    reference_dir = steps.read_result(reference.path)["model_dir"] if reference is not None else None
    result, evaluated = steps.train_and_evaluate(config, variant, seed, dataset.path,
                                                 model.path, evaluation.path, None, tracking_uri or None,
                                                 steps.study_run_id(study.path), progress=False,
                                                 reference_dir=reference_dir)
    model.metadata.update({"variant": variant, "seed": seed, "run_id": result["run_id"] or ""})
    steps.write_task_metrics(metrics, evaluated)
    steps.write_confusion_matrix(confusion, evaluation.path)
    return result["run_id"] or ""


def train_student(config: str, variant: str, concurrent: int, dataset: Input[Dataset],
                  teacher: Input[Model], tracking_uri: str, study: Input[Artifact], model: Output[Model],
                  metrics: Output[Metrics], confusion: Output[ClassificationMetrics],
                  evaluation: Output[Artifact], reference: Optional[Input[Model]] = None) -> str:  # noqa: UP045
    """Train one student of the fan-out over student variants and evaluate it.

    The student distils from ``teacher`` when its recipe uses KD (without KD, ``teacher`` only
    supplies the seed, from its metadata, and the ordering); ``reference`` is the model whose logits
    its objective reads (the ERM teacher, for conf_reg). ``concurrent`` students share this
    machine's CPUs under the local runner. Returns "yes" when the study analyses this student against
    its teacher (the fan-out's ``dsl.If`` reads it), else "no"; the MLflow run id is in the model's
    metadata.
    """
    from debiaskd.jobs import steps

    seed = int(teacher.metadata["seed"])
    teacher_dir = steps.read_result(teacher.path)["model_dir"]
    reference_dir = steps.read_result(reference.path)["model_dir"] if reference is not None else None
    result, evaluated = steps.train_and_evaluate(config, variant, seed, dataset.path,
                                                 model.path, evaluation.path, teacher_dir, tracking_uri or None,
                                                 steps.study_run_id(study.path), progress=False, concurrent=concurrent,
                                                 reference_dir=reference_dir)
    model.metadata.update({"variant": variant, "seed": seed, "run_id": result["run_id"] or ""})
    steps.write_task_metrics(metrics, evaluated)
    steps.write_confusion_matrix(confusion, evaluation.path)
    return steps.analysed(config, variant)
