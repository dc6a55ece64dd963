"""Train one variant (a teacher, or a student with its whole recipe) and evaluate it, in one job.

One pipeline task per variant: the model is evaluated while the libraries are loaded, instead of in
a second task. Training calls :func:`debiaskd.training.variant.train_variant_model` (with
``*_train.processes`` above 1, through :func:`debiaskd.training.launch.train_in_processes`: the same call
in each of N processes under torchrun); the torch/pandas stack is imported where the job runs.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Literal

import numpy as np

from debiaskd.core.errors import DebiaskdError
from debiaskd.core.study import analysed, run_name, variant_specs
from debiaskd.jobs.base import RESULT_FILE, Job, read_result, records_errors, share_cpus, write_json
from debiaskd.jobs.cluster_train import ClusterLaunch, train_on_cluster
from debiaskd.reporting.report import HEADLINE
from debiaskd.tracking.lineage import current_data_version


def headline(evaluation: dict[str, Any]) -> dict[str, float]:
    """The headline numbers of an evaluation (what a kfp ``Output[Metrics]`` shows)."""
    return {k: float(evaluation[k]) for k in HEADLINE if isinstance(evaluation.get(k), int | float)}


def confusion_matrix(eval_dir: str | Path, split: str = "test") -> dict[str, list]:
    """The confusion matrix of ``split`` (rows gold, columns predicted) from an evaluation folder:
    ``{"labels": [...], "matrix": [[...], ...]}``."""
    from debiaskd.evaluation.evaluate import PREDICTIONS_FILE  # torch: slow, and importing the jobs must stay cheap

    eval_dir = Path(eval_dir)
    labels = json.loads((eval_dir / "eval.json").read_text(encoding="utf-8"))["splits"][split]["label_names"]
    with np.load(eval_dir / PREDICTIONS_FILE, allow_pickle=False) as arrays:
        gold, pred = arrays[f"{split}/gold"].astype(int), arrays[f"{split}/pred"].astype(int)
    matrix = np.zeros((len(labels), len(labels)), dtype=int)
    known = (gold >= 0) & (pred >= 0)  # a gold label outside the model's label set has no row
    np.add.at(matrix, (gold[known], pred[known]), 1)
    return {"labels": labels, "matrix": matrix.tolist()}


class TrainJob(Job):
    """Train ``variant`` on ``seed`` into ``model_dir`` (logged to its own MLflow run, nested in the
    study run), then evaluate it bias-stratified into ``eval_dir`` (metrics and predictions land in the
    same run, which then ends FINISHED).

    ``teacher`` and ``reference`` are the training folders (with ``result.json``) of the model the
    student distils from and of the model whose logits its objective reads (``spec.reference``: the
    ERM teacher, for confidence regularisation). ``concurrent`` tasks share the machine's CPUs
    (:func:`~debiaskd.jobs.base.share_cpus`).
    """

    KIND: Literal["train_variant"] = "train_variant"
    variant: str
    seed: int
    dataset_dir: Path
    model_dir: Path
    eval_dir: Path
    teacher: Path | None = None
    reference: Path | None = None
    progress: bool = True
    concurrent: int = 1
    #: on a cluster: train on shared storage, as a Kubeflow Trainer TrainJob for several nodes or GPUs
    launch: ClusterLaunch | None = None

    def run(self) -> dict[str, Any]:
        """Train, then evaluate; returns what the task shows: ``trained``, ``evaluation``, ``headline``
        (the numbers), ``confusion`` (labels, matrix) and ``analysed`` ("yes" when the study analyses
        this variant against a reference)."""
        if self.concurrent > 1:
            share_cpus(self.concurrent)
        trained = self.train()
        evaluation = self.evaluate()
        return {"trained": trained, "evaluation": evaluation, "headline": headline(evaluation),
                "confusion": confusion_matrix(self.eval_dir), "analysed": analysed(self.config, self.variant)}

    def train(self) -> dict[str, Any]:
        """Train the variant and log it (params, data set, per-epoch metrics, the model) to its run;
        writes and returns ``result.json`` of ``model_dir``."""
        with records_errors("train_variant"):
            return self._train()

    def evaluate(self) -> dict[str, Any]:
        """Evaluate the model in ``model_dir``; metrics and predictions land in its run, which ends."""
        with records_errors("evaluate_variant"):
            return self._evaluate()

    def _train(self) -> dict[str, Any]:
        # pandas, torch: slow, only where the job runs (importing the jobs must stay cheap)
        from debiaskd.data.store import read_dataset
        from debiaskd.training.launch import train_in_processes
        from debiaskd.training.variant import share_logits, train_split_name, train_variant_model

        cfg, variant, seed, tracker = self.config, self.variant, self.seed, self.tracker
        specs = variant_specs(cfg)
        if variant not in specs:
            raise DebiaskdError(f"unknown or unselected variant '{variant}'", file="variants", rule="study design")
        spec = specs[variant]
        if spec.uses_kd and self.teacher is None:
            raise DebiaskdError(f"variant '{variant}' needs its teacher's model", rule="study design")
        if spec.reference and self.reference is None:
            raise DebiaskdError(f"variant '{variant}' ({spec.method}) needs the model of '{spec.reference}'",
                                rule="study design")
        teacher_dir, reference_dir = (Path(read_result(folder)["model_dir"]) if folder is not None else None
                                      for folder in (self.teacher, self.reference))
        ds = read_dataset(self.dataset_dir)
        train_name = train_split_name(spec, ds.splits)
        train = ds.splits[train_name]
        run_id = None
        if tracker.active:
            # the data set's source names its version (git revision, DVC hash of data/, content hash), not
            # a folder inside this task's container
            version = current_data_version(ds.content_hash)
            params = {f"variant.{k}": v for k, v in spec.to_dict().items()}
            params.update({"seed": seed, "train_split": train_name, "data.content_hash": ds.content_hash,
                           "data.version": version})
            run_id = tracker.start_variant(variant, seed, spec.role, params)
            tracker.log_dataset(run_id, getattr(train, "frame", train).drop(columns=["bias_probs"],
                                errors="ignore").head(1000), f"{train_name}", ds.content_hash,
                                version, "training")
        monitor = tracker.system_metrics(run_id) if (run_id and cfg.tracking.system_metrics) else nullcontext()
        try:
            with monitor:
                processes = cfg.train_config(spec.role).processes
                if self.launch is not None:  # a cluster task: on shared storage, in its pod or as a TrainJob
                    result = train_on_cluster(self.launch, spec, cfg, ds.splits, seed, ds.content_hash,
                                              self.dataset_dir, self.model_dir, teacher_dir=teacher_dir,
                                              reference_dir=reference_dir, progress=self.progress, run_id=run_id)
                elif processes > 1:  # the same call, in each of N data-parallel processes under torchrun
                    result = train_in_processes(processes, variant, cfg, seed, self.dataset_dir, self.model_dir,
                                                teacher_dir=teacher_dir, reference_dir=reference_dir,
                                                progress=self.progress)
                else:
                    result = train_variant_model(spec, cfg, ds.splits, seed, self.model_dir, teacher_dir=teacher_dir,
                                                 reference_dir=reference_dir, progress=self.progress)
        except BaseException:
            if run_id:
                tracker.end_run(run_id, "FAILED")
            raise
        share_logits(spec, specs, cfg, ds.splits, result.model_dir)
        out = {
            "variant": variant, "seed": seed, "role": spec.role, "run_id": run_id, "run_name": run_name(variant, seed),
            "model_dir": str(Path(result.model_dir).resolve()), "seconds": result.seconds,
            "examples_per_second": result.examples_per_second, "best_epoch": result.best_epoch,
            "history": result.history,
        }
        if run_id:
            for step, epoch in enumerate(result.history):
                tracker.log_metrics({f"train/{k}": v for k, v in epoch.items()}, run_id, step=step)
            tracker.log_metrics({"train/seconds": result.seconds,
                                 "train/examples_per_second": result.examples_per_second}, run_id)
            model_uri = tracker.log_model(run_id, result.model_dir, cfg.task)
            tracker.set_tags({"debiaskd.model_uri": model_uri}, run_id)
            out["model_uri"] = model_uri
        write_json(self.model_dir / RESULT_FILE, out)
        return out

    def _evaluate(self) -> dict[str, Any]:
        # pandas, torch: slow, only where the job runs (importing the jobs must stay cheap)
        from debiaskd.data.store import read_dataset
        from debiaskd.evaluation.evaluate import evaluate_model

        trained = read_result(self.model_dir)
        ds = read_dataset(self.dataset_dir)
        splits = {k: v for k, v in ds.splits.items() if k in ("test", "challenge", "challenge_dev")}
        result = evaluate_model(Path(trained["model_dir"]), splits, self.config)
        result.save(self.eval_dir)
        summary = result.to_dict()
        summary.update({k: trained[k] for k in ("variant", "seed", "role", "run_id", "run_name")})
        summary["model_uri"] = trained.get("model_uri")
        summary["data_hash"] = ds.content_hash  # the dataset version it was trained and evaluated on
        run_id = trained.get("run_id")
        write_json(self.eval_dir / RESULT_FILE, summary)
        if self.tracker.uri and run_id:
            self.tracker.log_metrics(result.metrics, run_id)
            self.tracker.log_artifacts(self.eval_dir, "evaluation", run_id)
            self.tracker.end_run(run_id, "FINISHED")
        return summary
