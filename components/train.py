"""Training components: a model trained on labels alone, and a student trained beside its teacher.

Each also evaluates the model it trained (bias-stratified, :class:`debiaskd.jobs.train.TrainJob`)
before it exits: one task per variant, so the libraries and the model are loaded once. The headline
metrics and the test split's confusion matrix come back in the job's result and are shown here.
"""

# kfp ships each component function's source alone (a lightweight component), so every import its body
# needs is made inside the function: the function-local imports in this file are required, not a choice.
from typing import Optional

from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output


def train_model(config: str, variant: str, seed: int, dataset: Input[Dataset], tracking_uri: str,
                study: Input[Artifact], model: Output[Model], metrics: Output[Metrics],
                confusion: Output[ClassificationMetrics], evaluation: Output[Artifact],
                reference: Optional[Input[Model]] = None, launch: str = "", store: str = "") -> str:  # noqa: UP045
    """Train a teacher, or a student without a teacher, and evaluate it; returns its MLflow run id.
    ``store`` (a sweep's): the folder of finished models by content key; a model found there is reused.
    ``reference``: the model whose logits the objective reads (the ERM teacher, for conf_reg).
    ``launch`` (JSON, set when compiled for a cluster): train on shared storage, as a Kubeflow Trainer
    TrainJob when it names one (:class:`debiaskd.jobs.cluster_train.ClusterLaunch`)."""
    import json

    from debiaskd.components.outputs import show_training
    from debiaskd.runtime.dispatch import execute

    result = execute("train_variant", config=config, variant=variant, seed=seed, dataset_dir=dataset.path,
                     model_dir=model.path, eval_dir=evaluation.path, progress=False,
                     launch=json.loads(launch) if launch else None,
                     reference=reference.path if reference is not None else None, store=store or None,
                     tracker={"uri": tracking_uri, "study_run_id": study.metadata["run_id"]})
    run_id = result["trained"]["run_id"] or ""
    model.metadata.update({"variant": variant, "seed": seed, "run_id": run_id})
    show_training(result, metrics, confusion)
    return run_id


def train_student(config: str, variant: str, concurrent: int, dataset: Input[Dataset],
                  teacher: Input[Model], tracking_uri: str, study: Input[Artifact], model: Output[Model],
                  metrics: Output[Metrics], confusion: Output[ClassificationMetrics],
                  evaluation: Output[Artifact], reference: Optional[Input[Model]] = None,  # noqa: UP045
                  launch: str = "", store: str = "") -> str:
    """Train one student of the fan-out over student variants and evaluate it.

    The student distils from ``teacher`` when its recipe uses KD (without KD, ``teacher`` only
    supplies the seed, from its metadata, and the ordering); ``reference`` is the model whose logits
    its objective reads (the ERM teacher, for conf_reg). ``concurrent`` students share this
    machine's CPUs under the local runner. Returns "yes" when the study analyses this student against
    its teacher (the fan-out's ``dsl.If`` reads it), else "no"; the MLflow run id is in the model's
    metadata. ``launch``, ``store``: as for :func:`train_model`.
    """
    import json

    from debiaskd.components.outputs import show_training
    from debiaskd.runtime.dispatch import execute

    seed = int(teacher.metadata["seed"])
    result = execute("train_variant", config=config, variant=variant, seed=seed, dataset_dir=dataset.path,
                     model_dir=model.path, eval_dir=evaluation.path, progress=False, concurrent=concurrent,
                     launch=json.loads(launch) if launch else None,
                     teacher=teacher.path, reference=reference.path if reference is not None else None,
                     store=store or None, tracker={"uri": tracking_uri, "study_run_id": study.metadata["run_id"]})
    model.metadata.update({"variant": variant, "seed": seed, "run_id": result["trained"]["run_id"] or ""})
    show_training(result, metrics, confusion)
    return result["analysed"]
