"""Training components: a model trained on labels alone, and a student distilled from a teacher."""

from kfp.dsl import Artifact, Dataset, Input, Model, Output


def train_model(config: str, variant: str, seed: int, dataset: Input[Dataset], tracking_uri: str,
                study: Input[Artifact], model: Output[Model]) -> str:
    """Train a teacher, or a student without a teacher; returns its MLflow run id."""
    from debiaskd import steps

    result = steps.train_variant(config, variant, seed, dataset.path, model.path, None,
                                 tracking_uri or None, steps.study_run_id(study.path), progress=False)
    model.metadata.update({"variant": variant, "seed": seed, "run_id": result["run_id"] or ""})
    return result["run_id"] or ""


def distill_student(config: str, variant: str, seed: int, dataset: Input[Dataset], teacher: Input[Model],
                    tracking_uri: str, study: Input[Artifact], model: Output[Model]) -> str:
    """Train a student variant (from its teacher's model when it distils); returns its MLflow run id."""
    from debiaskd import steps

    teacher_dir = steps.read_result(teacher.path)["model_dir"] if teacher is not None else None
    result = steps.train_variant(config, variant, seed, dataset.path, model.path, teacher_dir,
                                 tracking_uri or None, steps.study_run_id(study.path), progress=False)
    model.metadata.update({"variant": variant, "seed": seed, "run_id": result["run_id"] or ""})
    return result["run_id"] or ""
