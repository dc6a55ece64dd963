"""Train one variant (a teacher, or a student with its whole recipe) and evaluate it, in one job.

One pipeline task per variant: the model is evaluated while the libraries are loaded, instead of in
a second task. Training calls :func:`debiaskd.training.variant.train_variant_model` (with
``*_train.processes`` above 1, through :func:`debiaskd.training.launch.train_in_processes`: the same call
in each of N processes under torchrun); the torch/pandas stack is imported where the job runs.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Literal

import numpy as np

from debiaskd.core.errors import DebiaskdError
from debiaskd.core.study import analysed, run_name, variant_specs
from debiaskd.core.sweep import content_key
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


#: a stored model's record (its folder is complete when this file is there), and an evaluation's metrics
STORE_DONE, METRICS_FILE = "stored.json", "metrics.json"


def spec_params(spec: Any) -> dict[str, Any]:
    """A variant run's parameters from its spec: ``variant.*``, and a matrix cell's axes as ``axis.*``."""
    return {**{f"variant.{k}": v for k, v in spec.to_dict().items()}, **{f"axis.{k}": v for k, v in spec.axes}}


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
    #: a sweep's store of finished models (one folder per content key, :func:`debiaskd.core.sweep.content_key`):
    #: a model whose key is there is reused (copied, and logged as a new run of this sweep) instead of trained
    store: Path | None = None

    def run(self) -> dict[str, Any]:
        """Train, then evaluate; returns what the task shows: ``trained``, ``evaluation``, ``headline``
        (the numbers), ``confusion`` (labels, matrix), ``analysed`` ("yes" when the study analyses
        this variant against a reference) and ``reused`` (the content key when a finished model was reused)."""
        if self.concurrent > 1:
            share_cpus(self.concurrent)
        key = self.key() if self.store is not None else None
        if key is not None and (self.store / key / STORE_DONE).is_file():
            with records_errors("reuse_variant"):
                trained, evaluation = self.reuse(self.store / key, key)
        else:
            trained = self.train()
            evaluation = self.evaluate()
            if key is not None:
                self.keep(self.store / key, key, trained)
        return {"trained": trained, "evaluation": evaluation, "headline": headline(evaluation),
                "confusion": confusion_matrix(self.eval_dir), "analysed": analysed(self.config, self.variant),
                "reused": key if trained.get("reused_from_key") else None}

    # -- a sweep's reuse of finished models ----------------------------------
    def key(self) -> str:
        """The content key of this model: trained config, spec, seed, data, and the specs of what it reads."""
        from debiaskd.data.store import read_dataset  # pandas: slow, only where the job runs

        specs = variant_specs(self.config)
        if self.variant not in specs:
            raise DebiaskdError(f"unknown or unselected variant '{self.variant}'", file="variants",
                                rule="study design")
        spec = specs[self.variant]
        upstream = {name: specs[name].to_dict() for name in (spec.teacher, spec.reference) if name}
        data_hash = read_dataset(self.dataset_dir).content_hash
        return content_key(self.config, spec.to_dict(), self.seed, data_hash, upstream)

    def keep(self, folder: Path, key: str, trained: dict[str, Any]) -> None:
        """Copy the finished model and its evaluation into the store under ``key`` (whole, or not at all)."""
        staging = folder.with_name(f".{folder.name}.{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(self.model_dir, staging / "model")
        shutil.copytree(self.eval_dir, staging / "eval")
        model_rel = os.path.relpath(trained["model_dir"], Path(self.model_dir).resolve())
        write_json(staging / STORE_DONE, {"key": key, "variant": self.variant, "seed": self.seed,
                                          "run_id": trained.get("run_id"), "model_uri": trained.get("model_uri"),
                                          "model_rel": model_rel})
        if folder.exists():  # another task kept the same key first: its copy stands
            shutil.rmtree(staging, ignore_errors=True)
            return
        os.replace(staging, folder)

    def reuse(self, folder: Path, key: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """A finished model of an earlier sweep: copied into this task's outputs and logged as this sweep's
        run (params, metrics, evaluation; the model URI and run it came from as tags), not trained again."""
        done = json.loads((folder / STORE_DONE).read_text(encoding="utf-8"))
        for src, dst in ((folder / "model", self.model_dir), (folder / "eval", self.eval_dir)):
            shutil.copytree(src, dst, dirs_exist_ok=True)
        trained = read_result(self.model_dir)
        trained["model_dir"] = str((Path(self.model_dir) / done["model_rel"]).resolve())
        trained["reused_from_key"] = key
        spec = variant_specs(self.config)[self.variant]
        evaluation = read_result(self.eval_dir)
        run_id = None
        if self.tracker.active:
            params = {**spec_params(spec), "seed": self.seed, "data.content_hash": evaluation.get("data_hash")}
            run_id = self.tracker.start_variant(self.variant, self.seed, spec.role, params)
        trained.update({"run_id": run_id, "model_uri": done.get("model_uri")})
        evaluation.update({"run_id": run_id, "model_uri": done.get("model_uri"), "reused_from_key": key})
        write_json(self.model_dir / RESULT_FILE, trained)
        write_json(self.eval_dir / RESULT_FILE, evaluation)
        if run_id:
            self.tracker.set_tags({"debiaskd.cell_key": key, "debiaskd.reused_from_run": done.get("run_id") or "",
                                   "debiaskd.model_uri": done.get("model_uri") or ""}, run_id)
            metrics_file = self.eval_dir / METRICS_FILE
            if metrics_file.is_file():
                self.tracker.log_metrics(json.loads(metrics_file.read_text(encoding="utf-8")), run_id)
            self.tracker.log_metrics({"reused": 1.0}, run_id)
            self.tracker.log_artifacts(self.eval_dir, "evaluation", run_id)
            self.tracker.end_run(run_id, "FINISHED")
        return trained, evaluation

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
            params = spec_params(spec)
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
        if self.store is not None:  # a sweep's reuse logs these again on its own run
            write_json(self.eval_dir / METRICS_FILE, result.metrics)
        if self.tracker.uri and run_id:
            self.tracker.log_metrics(result.metrics, run_id)
            self.tracker.log_artifacts(self.eval_dir, "evaluation", run_id)
            self.tracker.end_run(run_id, "FINISHED")
        return summary
