"""One function per pipeline step, on paths: what each kfp component calls.

Each step reads its inputs from folders, calls the core library and writes its outputs to a
folder; MLflow logging happens here too, so a step behaves the same inside a kfp component,
in :func:`run_inprocess` (the benchmark's baseline) and in tests.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any, TypeVar

from debiaskd.core.config import StudyConfig, config_from_yaml_text
from debiaskd.core.errors import DebiaskdError
from debiaskd.core.study import run_name, variant_specs
from debiaskd.reporting.report import HEADLINE

RESULT_FILE = "result.json"
HEADLINE_KEYS = HEADLINE  # the numbers every variant reports (one definition, in report.py)
#: when set, a step that fails on user input appends its message here (the CLI reads it back)
ERROR_FILE_ENV = "DEBIASKD_ERROR_FILE"
F = TypeVar("F", bound=Callable[..., Any])


def reports_errors(fn: F) -> F:
    """Record a :class:`DebiaskdError` for the CLI before re-raising it (steps run in subprocesses)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DebiaskdError as exc:
            target = os.environ.get(ERROR_FILE_ENV)
            if target:
                with open(target, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps({"step": fn.__name__, "message": exc.render()}) + "\n")
            raise

    return wrapper  # type: ignore[return-value]


def _tracking(uri: str | None) -> str | None:
    """The tracking URI a step uses: the given one, else ``$MLFLOW_TRACKING_URI`` (cluster secret)."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or None


def _cfg(config_yaml: str | StudyConfig) -> StudyConfig:
    return config_yaml if isinstance(config_yaml, StudyConfig) else config_from_yaml_text(config_yaml)


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str), encoding="utf-8")


def read_result(folder: str | Path) -> dict[str, Any]:
    return json.loads((Path(folder) / RESULT_FILE).read_text(encoding="utf-8"))


# ------------------------------------------------------------------ tracking
def _require_tracking(tracking_uri: str | None) -> str:
    uri = _tracking(tracking_uri)
    if uri is None:
        raise DebiaskdError("no MLflow tracking URI: pass --tracking-uri or set MLFLOW_TRACKING_URI",
                            rule="tracking configured")
    return uri


@reports_errors
def start_study(config_yaml: str | StudyConfig, tracking_uri: str, name: str,
                out_dir: str | Path | None = None, key: str = "") -> str:
    """Create the parent MLflow run of one study; returns its id (also written to ``out_dir``).

    ``key`` (the pipeline run's study key) is tagged on the run so that :func:`end_study`, the
    pipeline's exit task, finds it again without any input from inside the pipeline."""
    from debiaskd.tracking import service as tracking

    cfg = _cfg(config_yaml)
    tracking_uri = _require_tracking(tracking_uri)
    run_id = tracking.start_study_run(tracking_uri, cfg, name, {tracking.STUDY_KEY_TAG: key} if key else None)
    if out_dir is not None:
        _write_json(Path(out_dir) / "study.json", {"run_id": run_id, "name": name})
    return run_id


#: kfp's final pipeline states (``dsl.PipelineTaskFinalStatus.state``) → MLflow run statuses
FINAL_STATUS = {"SUCCEEDED": "FINISHED", "FAILED": "FAILED", "CANCELLED": "KILLED"}


@reports_errors
def end_study(config_yaml: str | StudyConfig, tracking_uri: str, key: str, state: str,
              report_dir: str | Path | None = None, html_file: str | Path | None = None) -> str:
    """The pipeline's exit task: end the study run tagged ``key`` — ``FINISHED`` when the pipeline
    succeeded, ``FAILED`` (with its variant runs still running) otherwise — and, after success, copy
    the study's report (summary.json, report.md, plots) from MLflow into ``report_dir`` and, with
    ``html_file``, one self-contained page of it. Returns the MLflow status it set ("" when no study
    run had been started)."""
    from debiaskd.tracking import service as tracking

    cfg = _cfg(config_yaml)
    tracking_uri = _require_tracking(tracking_uri)
    status = FINAL_STATUS.get(state, "FAILED")
    run_id = tracking.find_study_run(tracking_uri, cfg.experiment_name, key)
    if run_id is None:
        if status == "FINISHED":
            raise DebiaskdError(f"no study run tagged {tracking.STUDY_KEY_TAG}={key}", file=tracking_uri,
                                rule="study run started")
        return ""
    tracking.end_study_run(tracking_uri, run_id, status)
    if report_dir is not None and status == "FINISHED":
        staging = Path(report_dir).parent / f".{Path(report_dir).name}.download"
        local = tracking.download_artifacts(tracking_uri, run_id, "report", staging)
        shutil.copytree(local, report_dir, dirs_exist_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
        if html_file is not None:
            from debiaskd.reporting.html import write_page

            write_page(report_dir, html_file, f"debiaskd {cfg.task} study ({cfg.preset})")
    return status


def study_run_id(study_dir: str | Path) -> str:
    """The parent run id recorded by :func:`start_study` in its output folder."""
    return json.loads((Path(study_dir) / "study.json").read_text(encoding="utf-8"))["run_id"]


# ---------------------------------------------------------------------- data
def preflight(cfg: StudyConfig) -> None:
    """Cheap checks before any pipeline starts: data specs parse and exist, the model source resolves.

    The pipeline's validation step still runs the full suites; this only makes the common
    mistakes (a typo in a path, an unknown scheme) fail in a second with exit code 2.
    """
    from debiaskd.data.loaders import parse_spec

    data = cfg.nli_data if cfg.task == "nli" else cfg.vision_data
    for split in ("train", "validation", "test", "challenge"):
        spec = getattr(data, split)
        try:
            scheme, arg = parse_spec(spec)
        except DebiaskdError as exc:
            rule = f"{cfg.task}_data.{split}: {exc.rule}"
            raise DebiaskdError(exc.message, file=exc.file or spec, rule=rule) from exc
        if scheme in ("generated", "hf", "colored-digits"):
            continue
        path = Path(arg.split("#", 1)[0].rsplit(":", 1)[0] if scheme == "dataset" else arg.split("#", 1)[0])
        if not path.exists():
            from debiaskd.core.paths import describe

            raise DebiaskdError(f"data path {describe(path)}", file=str(path), rule=f"{cfg.task}_data.{split}")
    if cfg.task == "nli" and cfg.nli_model.teacher != "tiny":
        from debiaskd.training.models import resolve_source

        resolve_source(cfg.nli_model.teacher)


@reports_errors
def prepare_data(config_yaml: str | StudyConfig, out_dir: str | Path) -> dict[str, Any]:
    """Generate or load the four splits into a dataset folder (with its manifest)."""
    from debiaskd.data.build import build_dataset
    from debiaskd.data.store import read_dataset

    cfg = _cfg(config_yaml)
    path = build_dataset(cfg, out_dir)
    return read_dataset(path).manifest


@reports_errors
def validate_data(
    config_yaml: str | StudyConfig, dataset_dir: str | Path, report_dir: str | Path | None = None,
    tracking_uri: str | None = None, parent_run_id: str | None = None, markdown_file: str | Path | None = None,
) -> dict[str, Any]:
    """Run the Great Expectations suites; write the JSON report (into ``report_dir``, and the study run)
    and, with ``markdown_file``, a Markdown page of it (the Kubeflow UI's view); raise on failure."""
    import tempfile

    from debiaskd.data.validate import validate_dataset

    cfg = _cfg(config_yaml)
    tracking_uri = _tracking(tracking_uri)
    report = validate_dataset(dataset_dir, cfg)
    with tempfile.TemporaryDirectory(prefix="debiaskd-validation-") as tmp:
        folder = Path(report_dir) if report_dir is not None else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "validation.json").write_text(report.to_json(), encoding="utf-8")
        if markdown_file is not None:
            verdict = "passed" if report.ok else "failed"
            page = f"# Data validation: {verdict}\n\n```json\n{report.to_json()[:20000]}\n```\n"
            Path(markdown_file).write_text(page, encoding="utf-8")
        if tracking_uri and parent_run_id:
            from debiaskd.tracking import service as tracking

            tracking.log_artifacts(tracking_uri, parent_run_id, folder / "validation.json", "validation")
            tracking.set_tags(tracking_uri, parent_run_id,
                              {"debiaskd.validation": "passed" if report.ok else "failed"})
    report.raise_for_failures()
    return json.loads(report.to_json())


@reports_errors
def augment_data(
    config_yaml: str | StudyConfig, dataset_dir: str | Path, out_dir: str | Path
) -> dict[str, Any]:
    """Fit the bias-only model, store its predictions with the data, add the augmented train split."""
    from debiaskd.data.augment import augment_nli, augment_vision
    from debiaskd.data.schema import ImageSplit
    from debiaskd.data.store import read_dataset, write_dataset
    from debiaskd.training.bias import add_bias_probs, fit_bias_model, fit_color_bias_model

    cfg = _cfg(config_yaml)
    import numpy as np
    import pandas as pd

    ds = read_dataset(dataset_dir)
    splits = dict(ds.splits)
    if ds.task == "nli":
        bias = fit_bias_model(splits["train"], cfg.debias.bias_model, cfg.augment.seed)
        new_rows = augment_nli(splits["train"], cfg.augment, cfg.augment.seed)
        splits["train_augmented"] = pd.concat([splits["train"], new_rows], ignore_index=True)
        for name in list(splits):
            splits[name] = add_bias_probs(splits[name], bias.predict_proba(splits[name]))
        n_new = len(new_rows)
    else:
        bias = fit_color_bias_model(splits["train"])
        extra = augment_vision(splits["train"], cfg.augment, cfg.augment.seed)
        train = splits["train"]
        splits["train_augmented"] = ImageSplit(
            np.concatenate([train.images, extra.images]),
            pd.concat([train.frame, extra.frame], ignore_index=True),
            train.class_names, train.group_names,
        )
        for name in list(splits):
            split = splits[name]
            split.frame = add_bias_probs(split.frame, bias.predict_proba(split))
        n_new = len(extra)
    meta = {"source": ds.content_hash, "augmented_rows": n_new, "bias_model": cfg.debias.bias_model}
    manifest = write_dataset(out_dir, ds.task, splits, meta)
    return manifest


# ------------------------------------------------------------------ training
def share_cpus(concurrent: int) -> int:
    """Give this process its share of the machine's cores when ``concurrent`` tasks run on it at once
    (the local runner's fan-out over students); returns the torch thread count now in use.

    One thread per task beats two tasks fighting over two threads each; a configured
    ``*_train.num_threads`` still wins inside :func:`debiaskd.training.loop.train_model`."""
    import torch

    if concurrent > 1:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        torch.set_num_threads(max(1, cpus // concurrent))
    return torch.get_num_threads()


@reports_errors
def train_variant(
    config_yaml: str | StudyConfig, variant: str, seed: int, dataset_dir: str | Path, out_dir: str | Path,
    teacher_dir: str | Path | None = None, tracking_uri: str | None = None, parent_run_id: str | None = None,
    progress: bool = True, reference_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Train one variant (a teacher, or a student with its whole recipe) and log it to MLflow;
    ``reference_dir`` is the model its objective reads logits of (``spec.reference``: the ERM teacher
    for confidence regularisation)."""
    from debiaskd.data.store import read_dataset
    from debiaskd.tracking import service as tracking
    from debiaskd.training.variant import share_logits, train_split_name, train_variant_model

    cfg = _cfg(config_yaml)
    tracking_uri = _tracking(tracking_uri)
    specs = variant_specs(cfg)
    if variant not in specs:
        raise DebiaskdError(f"unknown or unselected variant '{variant}'", file="variants", rule="study design")
    spec = specs[variant]
    if spec.uses_kd and teacher_dir is None:
        raise DebiaskdError(f"variant '{variant}' needs its teacher's model", rule="study design")
    if spec.reference and reference_dir is None:
        raise DebiaskdError(f"variant '{variant}' ({spec.method}) needs the model of '{spec.reference}'",
                            rule="study design")
    ds = read_dataset(dataset_dir)
    train_name = train_split_name(spec, ds.splits)
    train = ds.splits[train_name]
    out_dir = Path(out_dir)
    run_id = None
    if tracking_uri and parent_run_id:
        params = {f"variant.{k}": v for k, v in spec.to_dict().items()}
        params.update({"seed": seed, "train_split": train_name, "data.content_hash": ds.content_hash})
        run_id = tracking.start_variant_run(tracking_uri, parent_run_id, variant, seed, spec.role, params)
        tracking.log_dataset(tracking_uri, run_id, getattr(train, "frame", train).drop(columns=["bias_probs"],
                             errors="ignore").head(1000), f"{train_name}", ds.content_hash,
                             str(Path(dataset_dir).resolve()), "training")
    monitor = tracking.system_metrics(run_id) if (run_id and cfg.tracking.system_metrics) else nullcontext()
    try:
        with monitor:
            result = train_variant_model(spec, cfg, ds.splits, seed, out_dir, teacher_dir=teacher_dir,
                                         reference_dir=reference_dir, progress=progress)
    except BaseException:
        if run_id:
            tracking.end_run(tracking_uri, run_id, "FAILED")
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
            tracking.log_metrics(tracking_uri, run_id, {f"train/{k}": v for k, v in epoch.items()}, step=step)
        tracking.log_metrics(tracking_uri, run_id, {"train/seconds": result.seconds,
                                                    "train/examples_per_second": result.examples_per_second})
        model_uri = tracking.log_model(tracking_uri, run_id, result.model_dir, cfg.task)
        tracking.set_tags(tracking_uri, run_id, {"debiaskd.model_uri": model_uri})
        out["model_uri"] = model_uri
    _write_json(out_dir / RESULT_FILE, out)
    return out


# ---------------------------------------------------------------- evaluation
@reports_errors
def evaluate_variant(
    config_yaml: str | StudyConfig, train_dir: str | Path, dataset_dir: str | Path, out_dir: str | Path,
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    """Bias-stratified evaluation of a trained variant; metrics and predictions land in its run."""
    from debiaskd.data.store import read_dataset
    from debiaskd.evaluation.evaluate import evaluate_model
    from debiaskd.tracking import service as tracking

    cfg = _cfg(config_yaml)
    tracking_uri = _tracking(tracking_uri)
    trained = read_result(train_dir)
    ds = read_dataset(dataset_dir)
    splits = {k: v for k, v in ds.splits.items() if k in ("test", "challenge", "challenge_dev")}
    result = evaluate_model(Path(trained["model_dir"]), splits, cfg)
    out_dir = Path(out_dir)
    result.save(out_dir)
    summary = result.to_dict()
    summary.update({k: trained[k] for k in ("variant", "seed", "role", "run_id", "run_name")})
    summary["model_uri"] = trained.get("model_uri")
    run_id = trained.get("run_id")
    _write_json(out_dir / RESULT_FILE, summary)
    if tracking_uri and run_id:
        tracking.log_metrics(tracking_uri, run_id, result.metrics)
        tracking.log_artifacts(tracking_uri, run_id, out_dir, "evaluation")
        tracking.end_run(tracking_uri, run_id, "FINISHED")
    return summary


def train_and_evaluate(
    config_yaml: str | StudyConfig, variant: str, seed: int, dataset_dir: str | Path, model_dir: str | Path,
    eval_dir: str | Path, teacher_dir: str | Path | None = None, tracking_uri: str | None = None,
    parent_run_id: str | None = None, progress: bool = True, concurrent: int = 1,
    reference_dir: str | Path | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """:func:`train_variant` then :func:`evaluate_variant` in one process (one pipeline task per variant:
    the model is evaluated while loaded libraries are warm, instead of in a second task); ``concurrent``
    tasks share the CPUs (:func:`share_cpus`)."""
    if concurrent > 1:
        share_cpus(concurrent)
    trained = train_variant(config_yaml, variant, seed, dataset_dir, model_dir, teacher_dir, tracking_uri,
                            parent_run_id, progress, reference_dir)
    return trained, evaluate_variant(config_yaml, model_dir, dataset_dir, eval_dir, tracking_uri)


def write_task_metrics(metrics: Any, evaluation: dict[str, Any]) -> dict[str, float]:
    """Show the headline numbers on a kfp ``Output[Metrics]`` (anything with ``log_metric`` and ``path``);
    a file behind the artifact lets kfp cache the task."""
    headline = {k: float(evaluation[k]) for k in HEADLINE_KEYS if isinstance(evaluation.get(k), int | float)}
    for key, value in headline.items():
        metrics.log_metric(key, value)
    Path(metrics.path).parent.mkdir(parents=True, exist_ok=True)
    Path(metrics.path).write_text(json.dumps(headline), encoding="utf-8")
    return headline


def write_confusion_matrix(artifact: Any, eval_dir: str | Path, split: str = "test") -> list[list[int]]:
    """Show the confusion matrix of ``split`` (rows gold, columns predicted) on a kfp
    ``Output[ClassificationMetrics]`` (anything with ``log_confusion_matrix`` and ``path``)."""
    import numpy as np

    from debiaskd.evaluation.evaluate import PREDICTIONS_FILE

    eval_dir = Path(eval_dir)
    labels = json.loads((eval_dir / "eval.json").read_text(encoding="utf-8"))["splits"][split]["label_names"]
    with np.load(eval_dir / PREDICTIONS_FILE, allow_pickle=False) as arrays:
        gold, pred = arrays[f"{split}/gold"].astype(int), arrays[f"{split}/pred"].astype(int)
    matrix = np.zeros((len(labels), len(labels)), dtype=int)
    known = (gold >= 0) & (pred >= 0)  # a gold label outside the model's label set has no row
    np.add.at(matrix, (gold[known], pred[known]), 1)
    artifact.log_confusion_matrix([str(label) for label in labels], matrix.tolist())
    Path(artifact.path).parent.mkdir(parents=True, exist_ok=True)
    Path(artifact.path).write_text(json.dumps({"labels": labels, "matrix": matrix.tolist()}), encoding="utf-8")
    return matrix.tolist()


@reports_errors
def analyze_pair(
    config_yaml: str | StudyConfig, train_dir: str | Path, reference_train_dir: str | Path | None,
    dataset_dir: str | Path, out_dir: str | Path | None = None, tracking_uri: str | None = None,
    parent_run_id: str | None = None, concurrent: int = 1, html_file: str | Path | None = None,
) -> dict[str, Any]:
    """Attention and circuit analysis of a model (and its reference) into ``out_dir`` (a temporary
    folder when None), logged to the study run; with ``html_file``, one self-contained page of it
    (the Kubeflow UI's view). ``concurrent`` tasks share the CPUs (:func:`share_cpus`)."""
    if concurrent > 1:
        share_cpus(concurrent)
    import tempfile

    from debiaskd.analysis.run import analyze
    from debiaskd.data.store import read_dataset
    from debiaskd.tracking import service as tracking

    cfg = _cfg(config_yaml)
    tracking_uri = _tracking(tracking_uri)
    trained = read_result(train_dir)
    reference = read_result(reference_train_dir)["model_dir"] if reference_train_dir else None
    ds = read_dataset(dataset_dir)
    with tempfile.TemporaryDirectory(prefix="debiaskd-analysis-") as tmp:
        folder = Path(out_dir) if out_dir is not None else Path(tmp)
        result = analyze(trained["model_dir"], ds.splits["challenge"], folder, cfg, reference=reference)
        if tracking_uri and parent_run_id:
            tracking.log_artifacts(tracking_uri, parent_run_id, folder, f"analysis/{trained['run_name']}")
        if html_file is not None:
            from debiaskd.reporting.html import write_page

            write_page(folder, html_file, f"analysis of {trained['run_name']}")
    return result


@reports_errors
def collect_evaluations(
    config_yaml: str | StudyConfig, seed: int, tracking_uri: str, parent_run_id: str, out_dir: str | Path
) -> list[str]:
    """Download one seed's evaluations (``eval/<run>``) and analyses (``analysis/<run>``) from MLflow.

    Fails with a clear error when a selected variant has no finished, evaluated run, so nothing
    downstream registers a model from a failed run.
    """
    import mlflow

    from debiaskd.tracking import service as tracking

    cfg = _cfg(config_yaml)
    tracking_uri = _tracking(tracking_uri)
    rows = tracking.study_runs(tracking_uri, cfg.experiment_name, parent_run_id)
    out_dir = Path(out_dir)
    found = []
    for name in variant_specs(cfg):
        runs = [r for r in rows if r["variant"] == name and str(r["seed"]) == str(seed)]
        done = [r for r in runs if r["status"] == "FINISHED" and any(k.startswith("challenge") for k in r["metrics"])]
        if not done:
            raise DebiaskdError(f"variant {run_name(name, seed)} has no finished, evaluated run",
                                file=tracking_uri, rule="every variant evaluated")
        target = out_dir / "eval" / run_name(name, seed)
        target.mkdir(parents=True, exist_ok=True)
        tracking.client(tracking_uri)
        local = mlflow.artifacts.download_artifacts(run_id=done[0]["run_id"], artifact_path="evaluation",
                                                    dst_path=str(target.parent / f".{target.name}"))
        shutil.copytree(local, target, dirs_exist_ok=True)
        shutil.rmtree(target.parent / f".{target.name}", ignore_errors=True)
        found.append(str(target))
    for model, _ in analysis_pairs(cfg):
        name = run_name(model, seed)
        try:
            local = mlflow.artifacts.download_artifacts(run_id=parent_run_id, artifact_path=f"analysis/{name}",
                                                        dst_path=str(out_dir / ".analysis"))
        except Exception:  # analysis is optional (disabled or skipped for this model)
            continue
        shutil.copytree(local, out_dir / "analysis" / name, dirs_exist_ok=True)
    shutil.rmtree(out_dir / ".analysis", ignore_errors=True)
    return found


def collected_dirs(folders: list[str | Path]) -> tuple[list[Path], list[Path]]:
    """Evaluation and analysis folders inside the artifacts written by :func:`collect_evaluations`."""
    evals, analyses = [], []
    for folder in folders:
        folder = Path(folder)
        evals += sorted(p for p in (folder / "eval").glob("*") if p.is_dir())
        analyses += sorted(p for p in (folder / "analysis").glob("*") if p.is_dir())
    return evals, analyses


# ------------------------------------------------------------ summary, gate
@reports_errors
def summarize(
    config_yaml: str | StudyConfig, eval_dirs: list[str | Path], out_dir: str | Path,
    tracking_uri: str | None = None, parent_run_id: str | None = None,
    analysis_dirs: list[str | Path] | None = None, html_file: str | Path | None = None,
) -> dict[str, Any]:
    """Write summary.json, report.md and plots (and, with ``html_file``, one self-contained page of
    them); register teacher and candidate student; gate it."""
    from debiaskd.reporting.report import build_summary, write_report

    cfg = _cfg(config_yaml)
    tracking_uri = _tracking(tracking_uri)
    evals = [read_result(d) for d in eval_dirs]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = build_summary(cfg, evals, eval_dirs)
    if tracking_uri and parent_run_id and cfg.tracking.register_models:
        summary["registration"] = register_candidates(cfg, summary, tracking_uri, parent_run_id)
    summary["promoted"] = None
    write_report(cfg, summary, out_dir, analysis_dirs or [])
    if html_file is not None:
        from debiaskd.reporting.html import write_page

        write_page(out_dir, html_file, f"debiaskd {cfg.task} study ({cfg.preset})")
    if tracking_uri and parent_run_id:
        from debiaskd.tracking import service as tracking

        tracking.log_metrics(tracking_uri, parent_run_id, _summary_metrics(summary))
        tracking.log_artifacts(tracking_uri, parent_run_id, out_dir, "report")
    return summary


def _summary_metrics(summary: dict[str, Any]) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for variant, entry in summary["variants"].items():
        for key in HEADLINE:
            if isinstance(entry.get(key), int | float):
                metrics[f"{variant}/{key}"] = entry[key]
    for variant, entry in summary.get("transfer", {}).items():
        if isinstance(entry.get("robustness_retention"), int | float):
            metrics[f"{variant}/robustness_retention"] = entry["robustness_retention"]
    return metrics


def register_candidates(
    cfg: StudyConfig, summary: dict[str, Any], tracking_uri: str, parent_run_id: str
) -> dict[str, Any]:
    """Register the debiased teacher and the candidate student (alias ``challenger``) with evidence.

    The registered weights are one seed's (the first of the study's seeds the variant ran with), and
    so is the evidence the gate reads: ``metric.*`` is that seed's evaluation, ``teacher.*`` the
    teacher's on the same seed; the means over seeds go under ``mean.metric.*`` / ``mean.teacher.*``
    for the record only. The gate's thresholds are stored as ``gate.threshold.*``, so a later
    ``promote`` re-applies them.
    """
    from debiaskd.core.gate import GATE_KEYS, threshold_tags
    from debiaskd.tracking import service as tracking

    variants = summary["variants"]
    teacher_name, student_name = f"{cfg.model_prefix}-teacher", f"{cfg.model_prefix}-student"
    teacher = variants.get("teacher_debiased")
    candidate = summary.get("candidate")
    out: dict[str, Any] = {"teacher": None, "student": None}
    if not teacher or not teacher.get("model_uri"):
        return out

    def own(entry: dict[str, Any], seed: str) -> dict[str, Any]:
        per_seed = entry.get("per_seed") or {}
        if per_seed:
            return per_seed.get(seed) or {}
        return {**{k: entry.get(k) for k in GATE_KEYS}, "by_group": entry.get("by_group") or {},
                "mlflow_run_id": entry.get("mlflow_run_id"), "model_uri": entry.get("model_uri")}

    def first_seed(entry: dict[str, Any]) -> str:
        seeds = entry.get("seeds") or sorted(int(k) for k in (entry.get("per_seed") or {"0": None}))
        return str(seeds[0])

    t_seed = first_seed(teacher)
    t_own = own(teacher, t_seed)
    t_tags = {f"metric.{k}": t_own.get(k) for k in GATE_KEYS}
    t_tags.update({f"mean.metric.{k}": teacher.get(k) for k in GATE_KEYS})
    t_tags.update({"run_id": t_own.get("mlflow_run_id") or teacher["mlflow_run_id"], "variant": "teacher_debiased",
                   "seed": t_seed, "data_hash": summary.get("data_hash", ""), "study_run_id": parent_run_id})
    t_version = tracking.register_model(tracking_uri, t_own.get("model_uri") or teacher["model_uri"], teacher_name,
                                        t_tags["run_id"], t_tags)
    out["teacher"] = {"name": teacher_name, "version": t_version, "seed": t_seed}
    if not candidate:
        return out
    student = variants[candidate]
    seed = first_seed(student)
    s_own = own(student, seed)
    t_same = own(teacher, seed)  # the teacher this seed's student was distilled from / compared with
    if not s_own.get("model_uri"):
        return out
    s_tags: dict[str, Any] = {f"metric.{k}": s_own.get(k) for k in GATE_KEYS}
    s_tags.update({f"teacher.{k}": t_same.get(k) for k in GATE_KEYS})
    s_tags.update({f"mean.metric.{k}": student.get(k) for k in GATE_KEYS})
    s_tags.update({f"mean.teacher.{k}": teacher.get(k) for k in GATE_KEYS})
    s_tags.update({"run_id": s_own["mlflow_run_id"], "variant": candidate, "seed": seed,
                   "teacher_version": t_version, "teacher_seed": seed, "teacher_run_id": t_same.get("mlflow_run_id"),
                   "teacher_name": teacher_name, "data_hash": summary.get("data_hash", ""),
                   "study_run_id": parent_run_id})
    s_ch, t_ch = s_own.get("challenge_accuracy"), t_same.get("challenge_accuracy")
    s_tags["retention"] = (s_ch / t_ch) if s_ch is not None and t_ch else None
    t_groups, s_groups = t_same.get("by_group") or {}, s_own.get("by_group") or {}
    for group, tv in t_groups.items():
        sv = s_groups.get(group)
        s_tags[f"retention.{group}"] = (sv / tv) if sv is not None and tv else None
    transfer = summary.get("transfer", {}).get(candidate, {})
    s_tags["mean.retention"] = transfer.get("robustness_retention")
    for group, value in (transfer.get("by_group_retention") or {}).items():
        s_tags[f"mean.retention.{group}"] = value
    s_tags.update(threshold_tags(cfg.gate))
    s_version = tracking.register_model(tracking_uri, s_own["model_uri"], student_name, s_own["mlflow_run_id"],
                                        s_tags)
    tracking.set_alias(tracking_uri, student_name, tracking.CHALLENGER, s_version)
    decision = tracking.promote(tracking_uri, student_name, s_version, cfg.gate, dry_run=True)
    out["student"] = {"name": student_name, "version": s_version, "variant": candidate, "seed": seed,
                      "gate": decision.to_dict()}
    return out


def gate_decision(summary: dict[str, Any]) -> str:
    student = (summary.get("registration") or {}).get("student")
    return "pass" if student and student["gate"]["passed"] else "refuse"


@reports_errors
def promote_challenger(config_yaml: str | StudyConfig, tracking_uri: str) -> dict[str, Any]:
    """Move ``champion`` to the ``challenger`` if the gate passes (GateRefused otherwise)."""
    from debiaskd.tracking import service as tracking

    cfg = _cfg(config_yaml)
    tracking_uri = _tracking(tracking_uri)
    name = f"{cfg.model_prefix}-student"
    challenger = tracking.alias_version(tracking_uri, name, tracking.CHALLENGER)
    if challenger is None:
        raise DebiaskdError(f"'{name}' has no challenger to promote", file=tracking_uri, rule="registered model")
    decision = tracking.promote(tracking_uri, name, str(challenger.version), cfg.gate)
    return {"name": name, "version": str(challenger.version), "alias": tracking.CHAMPION,
            "decision": decision.to_dict()}


def champion_version(tracking_uri: str, name: str) -> str | None:
    """The version the ``champion`` alias of registered model ``name`` points at, or None."""
    from debiaskd.tracking import service as tracking

    champion = tracking.alias_version(tracking_uri, name, tracking.CHAMPION)
    return None if champion is None else str(champion.version)


# ----------------------------------------------------------- in-process run
def _listdir(path: Path) -> list[str]:
    return [p.name for p in path.iterdir()] if path.is_dir() else []


def run_inprocess(cfg: StudyConfig, out_dir: str | Path, tracking_uri: str | None = None,
                  progress: bool = False) -> dict[str, Any]:
    """The same steps as the kfp pipeline, called directly in this process, in the same order."""
    from debiaskd.core.paths import check_replaceable_dir

    out = Path(out_dir)
    marker = ".debiaskd-inprocess"  # only a folder an earlier in-process run made is ever replaced
    check_replaceable_dir(out, "out_dir", None if not (out / marker).is_file() else set(_listdir(out)))
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / marker).write_text("written by debiaskd.jobs.steps.run_inprocess; replaced by the next run\n",
                              encoding="utf-8")
    parent = start_study(cfg, tracking_uri, "study") if tracking_uri else None
    try:
        summary = _run_steps(cfg, out, tracking_uri, parent, progress)
    except BaseException:
        if tracking_uri and parent:
            from debiaskd.tracking import service as tracking

            tracking.end_study_run(tracking_uri, parent, "FAILED")
        raise
    if tracking_uri and parent:
        from debiaskd.tracking import service as tracking

        tracking.end_study_run(tracking_uri, parent, "FINISHED")
    return summary


def _run_steps(cfg: StudyConfig, out: Path, tracking_uri: str | None, parent: str | None,
               progress: bool) -> dict[str, Any]:
    prepare_data(cfg, out / "data")
    validate_data(cfg, out / "data", out / "validation", tracking_uri, parent)
    augment_data(cfg, out / "data", out / "augmented")
    evals, analyses = [], []
    for seed in cfg.seeds:
        trained: dict[str, Path] = {}
        for name, spec in variant_specs(cfg).items():
            tdir = out / "train" / run_name(name, seed)
            teacher_dir, reference_dir = (Path(read_result(trained[v])["model_dir"]) if v else None
                                          for v in (spec.teacher, spec.reference))
            edir = out / "eval" / run_name(name, seed)
            train_and_evaluate(cfg, name, seed, out / "augmented", tdir, edir, teacher_dir, tracking_uri, parent,
                               progress, reference_dir=reference_dir)
            trained[name] = tdir
            evals.append(edir)
        if cfg.analysis.enabled and seed == cfg.seeds[0]:
            for model, ref in analysis_pairs(cfg):
                if model in trained:
                    adir = out / "analysis" / run_name(model, seed)
                    analyze_pair(cfg, trained[model], trained.get(ref) if ref else None, out / "augmented", adir,
                                 tracking_uri, parent)
                    analyses.append(adir)
    summary = summarize(cfg, evals, out / "report", tracking_uri, parent, analyses)
    if tracking_uri and gate_decision(summary) == "pass":
        summary["promoted"] = promote_challenger(cfg, tracking_uri)
    return summary


def analysis_pairs(cfg: StudyConfig) -> list[tuple[str, str | None]]:
    """Which models are analysed, each against which reference (the study's "why")."""
    pairs = [("teacher_debiased", "teacher_erm"), ("student_kd", "teacher_debiased"),
             ("student_kd_all", "teacher_debiased")]
    selected = variant_specs(cfg)
    return [(m, r) for m, r in pairs if m in selected and (r is None or r in selected)]


def analysed(config_yaml: str | StudyConfig, variant: str) -> str:
    """"yes" when the study analyses ``variant`` against a reference (:func:`analysis_pairs`), else "no"."""
    cfg = _cfg(config_yaml)
    return "yes" if cfg.analysis.enabled and any(m == variant for m, _ in analysis_pairs(cfg)) else "no"
