"""Bias-stratified evaluation of one model, and teacher-versus-student comparison.

:func:`evaluate_model` runs a model on the in-distribution test split and the challenge
split (two-way collapse for HANS-layout data) and returns an :class:`EvalResult` carrying
the ``summary.json`` keys, a flat ``<split>/<group>/<metric>`` metric dict for MLflow,
bootstrap intervals and the per-example predictions.

Challenge data with construction marks (the embedded benchmark's ``construction_seen``) is
scored on its held-out constructions: ``challenge_accuracy`` (balanced over the two gold
labels), ``by_group``, worst group, AUC and heuristic reliance come from the held-out rows;
the seen rows give ``challenge_seen_accuracy`` and ``by_group_seen`` and the metric keys
``<split>_seen/…``. Data without marks is scored on the whole split. A ``challenge_dev`` split,
when evaluated, only adds its ``challenge_dev/…`` metrics. :func:`evaluate_spec` backs
``debiaskd evaluate``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from debiaskd.core import metrics as M
from debiaskd.core.config import StudyConfig
from debiaskd.core.errors import DebiaskdError
from debiaskd.data.loaders import load_spec
from debiaskd.data.schema import TWO_WAY_LABELS, ImageSplit
from debiaskd.evaluation.inference import predict_proba
from debiaskd.tasks import get_task, task_of
from debiaskd.training.models import LoadedModel, load_model

SUMMARY_KEYS: tuple[str, ...] = (
    "in_distribution_accuracy", "challenge_accuracy", "worst_group_accuracy", "average_group_accuracy",
    "challenge_auc", "heuristic_reliance", "balanced_threshold_accuracy", "challenge_ece",
    "in_distribution_ece", "in_distribution_hard_accuracy", "in_distribution_majority_rate",
    "in_distribution_kappa", "challenge_seen_accuracy",
)
EVAL_FILE = "eval.json"
PREDICTIONS_FILE = "predictions.npz"


@dataclass
class EvalResult:
    """Evaluation of one model on several splits.

    ``splits`` holds :func:`debiaskd.core.metrics.stratified_metrics` per split; ``predictions``
    per split ``{"probs", "pred", "correct", "group"}`` arrays (probs in ``label_names`` of
    that split, after the two-way collapse where it applied).
    """

    in_distribution_accuracy: float | None = None
    challenge_accuracy: float | None = None
    worst_group_accuracy: float | None = None
    average_group_accuracy: float | None = None
    challenge_auc: float | None = None
    heuristic_reliance: float | None = None
    balanced_threshold_accuracy: float | None = None
    challenge_ece: float | None = None
    in_distribution_ece: float | None = None
    #: accuracy on the test pairs most BERT-base runs get wrong (only where the split has ``bert_correct``)
    in_distribution_hard_accuracy: float | None = None
    #: what a constant predictor scores on the test split (the share of its most frequent gold label), and
    #: Cohen's kappa of the predictions there (0 for any constant predictor): the gate's competence evidence
    in_distribution_majority_rate: float | None = None
    in_distribution_kappa: float | None = None
    #: the same as ``challenge_accuracy`` on the challenge's seen constructions (None without marks)
    challenge_seen_accuracy: float | None = None
    by_group: dict[str, float] = field(default_factory=dict)
    #: ``by_group`` of the challenge's seen constructions (empty without marks)
    by_group_seen: dict[str, float] = field(default_factory=dict)
    ci: dict[str, list[float]] = field(default_factory=dict)
    splits: dict[str, dict[str, Any]] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    predictions: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)
    model_path: str | None = None

    def summary(self) -> dict[str, Any]:
        """The ``summary.json`` variant entry (headline numbers, ``by_group`` accuracies, intervals)."""
        out: dict[str, Any] = {k: getattr(self, k) for k in SUMMARY_KEYS}
        out["by_group"] = dict(self.by_group)
        if self.by_group_seen:
            out["by_group_seen"] = dict(self.by_group_seen)
        out["ci"] = {k: list(v) for k, v in self.ci.items()}
        return out

    def to_dict(self) -> dict[str, Any]:
        """Everything but the per-example arrays (JSON-safe)."""
        out = self.summary()
        out.update({"splits": self.splits, "metrics": self.metrics, "model_path": self.model_path})
        return _json_safe(out)

    def save(self, out_dir: str | Path) -> Path:
        """Write ``eval.json`` and ``predictions.npz`` (``<split>/<array>`` keys) into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / EVAL_FILE).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True), encoding="utf-8")
        arrays = {
            f"{split}/{name}": np.asarray(arr) for split, d in self.predictions.items() for name, arr in d.items()
        }
        arrays = {k: (v.astype(str) if v.dtype == object else v) for k, v in arrays.items()}
        np.savez_compressed(out / PREDICTIONS_FILE, **arrays)
        return out

    @classmethod
    def load(cls, out_dir: str | Path) -> EvalResult:
        """Read a result written by :meth:`save`."""
        out = Path(out_dir)
        data = json.loads((out / EVAL_FILE).read_text(encoding="utf-8"))
        result = cls(**{k: data.get(k) for k in SUMMARY_KEYS})
        result.by_group = data.get("by_group", {})
        result.by_group_seen = data.get("by_group_seen", {})
        result.ci = data.get("ci", {})
        result.splits = data.get("splits", {})
        result.metrics = data.get("metrics", {})
        result.model_path = data.get("model_path")
        npz_path = out / PREDICTIONS_FILE
        if npz_path.is_file():
            with np.load(npz_path, allow_pickle=False) as npz:
                for key in npz.files:
                    split, name = key.split("/", 1)
                    result.predictions.setdefault(split, {})[name] = npz[key]
        return result


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _frame(data: pd.DataFrame | ImageSplit) -> pd.DataFrame:
    return task_of(data).frame(data)


def _label_names(loaded: LoadedModel, data: pd.DataFrame | ImageSplit) -> list[str]:
    names = loaded.meta.get("label_names")
    if names:
        return [str(n) for n in names]
    return task_of(data).label_names(data)  # an image split's classes; the NLI labels


def _as_loaded(model: LoadedModel | str | Path) -> LoadedModel:
    return model if isinstance(model, LoadedModel) else load_model(model)


def evaluate_split(
    loaded: LoadedModel,
    data: pd.DataFrame | ImageSplit,
    batch_size: int = 128,
    max_length: int = 64,
    ece_bins: int = 10,
    device: str = "auto",
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Stratified metrics and per-example arrays of one split (two-way collapse where labels are two-way)."""
    frame = _frame(data)
    names = _label_names(loaded, data)
    probs = predict_proba(loaded, data, batch_size=batch_size, max_length=max_length, device=device)
    two_way = get_task(loaded.task).two_way(frame)
    result = M.stratified_metrics(frame, probs, names, two_way=two_way, ece_bins=ece_bins)
    if two_way:
        probs = M.collapse_two_way(probs, names)
    y_true = M.gold_indices(frame["label"].tolist(), result["label_names"], two_way=two_way)
    pred = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=np.int64)
    groups = frame["group"].astype(str).to_numpy() if "group" in frame.columns else np.array(["all"] * len(frame))
    arrays = {"probs": probs.astype(np.float32), "pred": pred, "gold": y_true, "correct": pred == y_true,
              "group": groups}
    seen = M.construction_seen(frame)
    if seen is not None:
        arrays["seen"] = seen
    return result, arrays


def held_out_mask(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Rows of held-out constructions (every row where the split had no construction marks)."""
    if "seen" in arrays:
        return ~np.asarray(arrays["seen"], dtype=bool)
    return np.ones(len(arrays["correct"]), dtype=bool)


def flatten_metrics(split: str, result: dict[str, Any]) -> dict[str, float]:
    """``<split>/<metric>``, ``<split>/<group>/accuracy`` (and ``/n``), ``<split>/<heuristic>/<label>/accuracy``."""
    flat: dict[str, float] = {}
    for key in ("n", "accuracy", "worst_group_accuracy", "average_group_accuracy", "ece", "auc",
                "balanced_accuracy", "heuristic_reliance", "balanced_threshold_accuracy", "majority_class_rate",
                "kappa"):
        value = result.get(key)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            flat[f"{split}/{key}"] = float(value)
    for group, entry in result.get("by_group", {}).items():
        flat[f"{split}/{group}/accuracy"] = float(entry["accuracy"])
        flat[f"{split}/{group}/n"] = float(entry["n"])
    for heur, cells in result.get("by_heuristic", {}).items():
        for label, acc in cells.items():
            flat.setdefault(f"{split}/{heur}/{label}/accuracy", float(acc))
    for subcase, acc in result.get("by_subcase", {}).items():
        flat[f"{split}/subcase/{subcase}/accuracy"] = float(acc)
    if "n_total" in result:
        flat[f"{split}/n_total"] = float(result["n_total"])
    if isinstance(result.get("seen"), dict):  # seen constructions, apart
        flat.update(flatten_metrics(f"{split}_seen", result["seen"]))
    return flat


def _challenge_score(stats: dict[str, Any]) -> float | None:
    """Balanced accuracy (mean over the gold labels) for two-way challenge data, else accuracy."""
    key = "balanced_accuracy" if stats.get("label_names") == list(TWO_WAY_LABELS) else "accuracy"
    value = stats.get(key)
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def evaluate_model(
    loaded_or_path: LoadedModel | str | Path,
    splits: dict[str, pd.DataFrame | ImageSplit],
    cfg: StudyConfig,
    device: str | None = None,
) -> EvalResult:
    """Evaluate on every given split; headline numbers come from ``test`` and ``challenge``.

    Worst-group accuracy, AUC, heuristic reliance and ``by_group`` are read on the challenge
    split (or, without one, on test). Bootstrap intervals (``cfg.eval.bootstrap`` resamples)
    for in-distribution, challenge and worst-group accuracy.
    """
    loaded = _as_loaded(loaded_or_path)
    device = device or cfg.train_config("teacher").device
    result = EvalResult(model_path=str(loaded.path) if loaded.path else None)
    for name, data in splits.items():
        if len(_frame(data)) == 0:
            continue
        stats, arrays = evaluate_split(
            loaded, data, batch_size=cfg.eval.batch_size, max_length=cfg.nli_model.max_length,
            ece_bins=cfg.eval.ece_bins, device=device,
        )
        result.splits[name] = stats
        result.predictions[name] = arrays
        result.metrics.update(flatten_metrics(name, stats))
    ev = cfg.eval
    if "test" in result.splits:
        test = result.splits["test"]
        result.in_distribution_accuracy = test["accuracy"]
        result.in_distribution_ece = test["ece"]
        result.in_distribution_hard_accuracy = test.get("hard_accuracy")
        result.in_distribution_majority_rate = test.get("majority_class_rate")
        result.in_distribution_kappa = test.get("kappa")
        result.ci["in_distribution_accuracy"] = list(
            M.bootstrap_ci(result.predictions["test"]["correct"], ev.bootstrap, ev.confidence, seed=0))
    main = "challenge" if "challenge" in result.splits else ("test" if "test" in result.splits else None)
    if main is not None:
        ch, arrays = result.splits[main], result.predictions[main]
        held = held_out_mask(arrays)
        correct, groups = arrays["correct"][held], arrays["group"][held]
        result.challenge_accuracy = _challenge_score(ch) if main == "challenge" else None
        if main == "challenge" and isinstance(ch.get("seen"), dict):
            result.challenge_seen_accuracy = _challenge_score(ch["seen"])
            result.by_group_seen = {g: v["accuracy"] for g, v in ch["seen"]["by_group"].items()}
        result.worst_group_accuracy = ch["worst_group_accuracy"]
        result.average_group_accuracy = ch["average_group_accuracy"]
        result.challenge_auc = ch["auc"]
        result.heuristic_reliance = ch["heuristic_reliance"]
        result.balanced_threshold_accuracy = ch.get("balanced_threshold_accuracy")
        result.challenge_ece = ch["ece"]
        result.by_group = {g: v["accuracy"] for g, v in ch["by_group"].items()}
        if main == "challenge" and ch.get("label_names") == list(TWO_WAY_LABELS):
            result.ci["challenge_accuracy"] = list(
                M.bootstrap_balanced_ci(correct, arrays["gold"][held], ev.bootstrap, ev.confidence, 1))
        elif main == "challenge":
            result.ci["challenge_accuracy"] = list(M.bootstrap_ci(correct, ev.bootstrap, ev.confidence, 1))
        result.ci["worst_group_accuracy"] = list(
            M.bootstrap_worst_group_ci(correct, groups, ev.bootstrap, ev.confidence, 2))
    return result


def compare_models(teacher_eval: EvalResult, student_eval: EvalResult, split: str = "challenge") -> dict[str, Any]:
    """Retention (overall, per group, worst group), agreement per group, McNemar and error concentration."""
    out: dict[str, Any] = M.retention(student_eval.summary(), teacher_eval.summary())
    tp, sp = teacher_eval.predictions.get(split), student_eval.predictions.get(split)
    if tp is not None and sp is not None and len(tp["pred"]) == len(sp["pred"]):
        keep = held_out_mask(sp)  # the held-out constructions, as the headline numbers
        out["agreement"] = M.agreement(tp["pred"][keep], sp["pred"][keep], sp["group"][keep])
        out["mcnemar"] = M.mcnemar(tp["correct"][keep], sp["correct"][keep])
        frame = pd.DataFrame({"group": sp["group"][keep]})
        out["student_errors"] = M.error_concentration(frame, sp["correct"][keep])
        out["teacher_errors"] = M.error_concentration(frame, tp["correct"][keep])
    in_t, in_s = teacher_eval.in_distribution_accuracy, student_eval.in_distribution_accuracy
    out["in_distribution_gap"] = None if in_t is None or in_s is None else float(in_s - in_t)
    return _json_safe(out)


# ---------------------------------------------------------------- the CLI path
def sample_split(data: pd.DataFrame | ImageSplit, limit: int | None, seed: int = 0) -> pd.DataFrame | ImageSplit:
    """A seeded sample of ``limit`` rows stratified by group (each group keeps its share)."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise DebiaskdError(f"limit must be a positive number of examples; got {limit!r}", rule="limit")
    frame = _frame(data)
    if limit is None or limit >= len(frame):
        return data
    groups = frame["group"] if "group" in frame.columns else pd.Series(["all"] * len(frame))
    index = M.stratified_sample_index(groups.tolist(), limit, seed)
    return task_of(data).take(data, index)


def _load_spec(spec: str, task: str, cfg: StudyConfig) -> pd.DataFrame | ImageSplit:
    split = spec.split(":", 1)[1] if spec.startswith("generated:") else "test"
    return load_spec(spec, task, cfg, split)


def _check_labels(loaded: LoadedModel, data: pd.DataFrame | ImageSplit, spec: str) -> None:
    """Refuse, before any inference, data whose labels the model cannot predict."""
    get_task(loaded.task).check_model_labels(loaded, data, spec)


def evaluate_spec(
    model: str | Path | LoadedModel,
    spec: str,
    cfg: StudyConfig,
    limit: int | None = None,
    seed: int = 0,
    data: pd.DataFrame | ImageSplit | None = None,
) -> dict[str, Any]:
    """``debiaskd evaluate``: the ``evaluate --json`` dict of one model on one data spec.

    ``model`` is a local model folder (MLflow URIs are resolved by the caller); ``data``
    skips loading ``spec`` (tests). Keys: ``n``, ``accuracy``, ``by_group``,
    ``worst_group_accuracy``, ``average_group_accuracy``, ``auc``, ``ece``, ``balanced_accuracy``,
    ``heuristic_reliance``, ``accuracy_ci``; for HANS-format data ``by_heuristic``, ``by_subcase``
    and ``balanced_threshold_accuracy``.
    """
    loaded = _as_loaded(model)
    if data is None:
        data = _load_spec(spec, loaded.task, cfg)
    data = sample_split(data, limit, seed)
    _check_labels(loaded, data, spec)
    stats, arrays = evaluate_split(
        loaded, data, batch_size=cfg.eval.batch_size, max_length=cfg.nli_model.max_length, ece_bins=cfg.eval.ece_bins,
        device=cfg.train_config("teacher").device,
    )
    out = dict(stats)
    out["accuracy_ci"] = list(M.bootstrap_ci(arrays["correct"], cfg.eval.bootstrap, cfg.eval.confidence, seed))
    name = str(loaded.path) if loaded.path else (str(model) if isinstance(model, str | Path) else None)
    out.update({"model": name, "data": spec, "limit": limit, "seed": seed})
    return _json_safe(out)
