"""Bias-stratified metrics: pure functions of arrays and frames (no torch).

Every function takes predicted probabilities (rows sum to 1, columns in ``label_names``
order) and gold labels from a split's frame, and returns plain Python numbers, so the
results go straight into JSON, MLflow and the report. Disaggregation by group gives what
Fairlearn's ``MetricFrame(...).by_group`` gives for accuracy and count (a test checks it against
Fairlearn), computed with one ``np.unique`` instead of a frame per metric: it runs in every
evaluation task, where Fairlearn's import alone took 1.4 s.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from debiaskd.core.errors import DebiaskdError
from debiaskd.data.schema import NO_HEURISTIC, TWO_WAY_LABELS, to_two_way

ENTAILMENT = "entailment"
#: the hard subset of an annotated split: pairs fewer than HARD_BELOW of 100 BERT-base runs got right
HARD_COLUMN, HARD_BELOW = "bert_correct", 50


# ----------------------------------------------------------------- labels
def collapse_two_way(probs: np.ndarray, label_names: Sequence[str]) -> np.ndarray:
    """HANS rule: P(entailment) vs the sum of every other class → ``(N, 2)`` in TWO_WAY_LABELS order."""
    probs = np.asarray(probs, dtype=np.float64)
    names = list(label_names)
    if names == list(TWO_WAY_LABELS):
        return probs
    if ENTAILMENT not in names:
        raise DebiaskdError(
            f"cannot collapse predictions over {names} to two-way: no 'entailment' class", rule="two-way collapse"
        )
    p_ent = probs[:, names.index(ENTAILMENT)]
    others = [i for i, n in enumerate(names) if n != ENTAILMENT]
    p_non = probs[:, others].sum(axis=1)
    return np.stack([p_ent, p_non], axis=1)


def is_two_way(labels: Sequence[Any]) -> bool:
    """Gold labels in the two-way (HANS) label set, with 'non-entailment' among them."""
    values = {str(v) for v in labels}
    return "non-entailment" in values and values <= set(TWO_WAY_LABELS)


def gold_indices(labels: Sequence[Any], label_names: Sequence[str], two_way: bool = False) -> np.ndarray:
    """Map gold labels (strings or ints) to column indices of ``label_names``."""
    names = [str(n) for n in label_names]
    lookup = {n: i for i, n in enumerate(names)}
    values = [to_two_way(str(v)) if two_way else str(v) for v in labels]
    unknown = sorted({v for v in values if v not in lookup})
    if unknown:
        raise DebiaskdError(
            f"gold labels {unknown[:5]} are not among the model's labels {names}", rule="label set",
            examples=unknown[:5],
        )
    return np.fromiter((lookup[v] for v in values), dtype=np.int64, count=len(values))


# ------------------------------------------------------------ basic scores
def _accuracy(y_true: Any, y_pred: Any) -> float:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float(np.mean(y_true == y_pred)) if len(y_true) else float("nan")


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, n_bins: int = 10) -> float:
    """Confidence ECE: Σ_b |B|/N · |acc(B) − conf(B)| over equal-width bins of max probability."""
    probs = np.asarray(probs, dtype=np.float64)
    if len(probs) == 0:
        return float("nan")
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == np.asarray(y_true)).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        sel = bins == b
        if sel.any():
            ece += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(ece)


def _binary_auc(y: np.ndarray, score: np.ndarray) -> float | None:
    """ROC AUC as the Mann-Whitney statistic (ties count one half), what ``sklearn.metrics.roc_auc_score``
    gives (a test checks it), without importing scikit-learn into every evaluation task."""
    y = np.asarray(y).astype(bool)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    _, inverse, counts = np.unique(np.asarray(score, dtype=np.float64), return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]  # average 1-based rank of each value
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def auc(probs: np.ndarray, y_true: np.ndarray, label_names: Sequence[str]) -> float | None:
    """Threshold-free separation: ROC AUC of P(entailment) (two-way) or macro one-vs-rest.

    For two classes the positive class is 'entailment' when present, else column 0.
    ``None`` when the gold labels hold a single class.
    """
    probs = np.asarray(probs, dtype=np.float64)
    y_true = np.asarray(y_true)
    names = list(label_names)
    if len(names) == 2:
        pos = names.index(ENTAILMENT) if ENTAILMENT in names else 0
        return _binary_auc((y_true == pos).astype(int), probs[:, pos])
    scores = [_binary_auc((y_true == k).astype(int), probs[:, k]) for k in range(len(names)) if (y_true == k).any()]
    scores = [s for s in scores if s is not None]
    return float(np.mean(scores)) if len(scores) >= 2 else None


def balanced_threshold_accuracy(p_positive: np.ndarray, y_positive: np.ndarray) -> float | None:
    """Accuracy when the top-k scores are called positive, k = number of gold positives.

    The threshold that makes the predicted label balance equal the gold balance: a model
    cannot gain here by merely shifting its threshold. Ties at the threshold are broken
    at random in expectation (fractional credit), so the result is deterministic.
    """
    p = np.asarray(p_positive, dtype=np.float64)
    y = np.asarray(y_positive).astype(bool)
    n, k = len(p), int(y.sum())
    if n == 0 or k in (0, n):
        return None
    v = np.sort(p)[::-1][k - 1]
    above, tied = p > v, p == v
    r = k - int(above.sum())  # tied items called positive
    m = int(tied.sum())
    correct = float((y & above).sum() + (~y & ~above & ~tied).sum())
    correct += r / m * float((y & tied).sum()) + (m - r) / m * float((~y & tied).sum())
    return correct / n


def majority_class_rate(y_true: np.ndarray) -> float | None:
    """Share of the most frequent gold label: the accuracy of always predicting it (``None`` when empty)."""
    y_true = np.asarray(y_true)
    if len(y_true) == 0:
        return None
    _, counts = np.unique(y_true, return_counts=True)
    return float(counts.max() / len(y_true))


def kappa(y_true: np.ndarray, y_pred: np.ndarray) -> float | None:
    """Cohen's kappa (``sklearn.metrics.cohen_kappa_score``): agreement with the gold labels beyond what
    the label frequencies give by chance; 0 for any constant predictor. Where it is undefined (one gold
    class predicted everywhere) it is 0: no skill beyond chance was shown. ``None`` when empty."""
    from sklearn.metrics import cohen_kappa_score  # scikit-learn: slow (~2.5 s), only kappa needs it

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if len(y_true) == 0:
        return None
    with warnings.catch_warnings():  # the undefined case is expected here and answered below
        warnings.simplefilter("ignore")
        value = float(cohen_kappa_score(y_true, y_pred, replace_undefined_by=0.0))
    return value if math.isfinite(value) else 0.0


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean recall over the gold classes present."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    recalls = [float(np.mean(y_pred[y_true == k] == k)) for k in np.unique(y_true)]
    return float(np.mean(recalls)) if recalls else float("nan")


# ----------------------------------------------------------- disaggregation
def accuracy_by(keys: pd.Series | np.ndarray, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, dict[str, Any]]:
    """``{key: {"n": int, "accuracy": float}}``, keys (as strings) sorted."""
    keys = np.asarray(keys, dtype=object).astype(str)
    if len(keys) == 0:
        return {}
    names, codes = np.unique(keys, return_inverse=True)
    hits = (np.asarray(y_true) == np.asarray(y_pred)).astype(np.float64)
    n = np.bincount(codes, minlength=len(names))
    right = np.bincount(codes, weights=hits, minlength=len(names))
    return {str(g): {"n": int(k), "accuracy": float(r / k)} for g, k, r in zip(names, n, right, strict=True)}


def _is_hans_format(frame: pd.DataFrame, two_way: bool) -> bool:
    return two_way and {"heuristic", "subcase"} <= set(frame.columns)


def heuristic_reliance(frame: pd.DataFrame, correct: np.ndarray) -> float | None:
    """Accuracy where the shortcut gives the right answer minus where it gives the wrong one.

    Uses ``bias_aligned`` (rows whose heuristic is 'none' are left out); without that
    column, the entailment half against the non-entailment half (the HANS reading).
    ``None`` when either half is empty.
    """
    correct = np.asarray(correct, dtype=bool)
    keep = np.ones(len(frame), dtype=bool)
    if "heuristic" in frame.columns:
        keep = frame["heuristic"].astype(str).to_numpy() != NO_HEURISTIC
    if "bias_aligned" in frame.columns:
        aligned = frame["bias_aligned"].fillna(False).astype(bool).to_numpy()
    else:
        aligned = np.array([to_two_way(str(v)) == ENTAILMENT for v in frame["label"]], dtype=bool)
    a, b = correct[keep & aligned], correct[keep & ~aligned]
    if len(a) == 0 or len(b) == 0:
        return None
    return float(a.mean() - b.mean())


SEEN_COLUMN = "construction_seen"


def construction_seen(frame: pd.DataFrame) -> np.ndarray | None:
    """Per row: does its construction occur in training or augmentation (``construction_seen``)?

    ``None`` when the frame carries no construction marks (HANS, MultiNLI, vision …): the whole
    split then counts as held out. Rows without a mark count as held out.
    """
    if SEEN_COLUMN not in frame.columns or len(frame) == 0:
        return None
    col = frame[SEEN_COLUMN]
    if not col.notna().any():
        return None
    return np.array([isinstance(v, bool | np.bool_) and bool(v) for v in col], dtype=bool)


def stratified_metrics(
    frame: pd.DataFrame,
    probs: np.ndarray,
    label_names: Sequence[str],
    two_way: bool,
    ece_bins: int = 10,
) -> dict[str, Any]:
    """Overall and per-group metrics of one split.

    ``two_way``: collapse the model's classes to entailment / non-entailment (HANS rule) and
    read gold labels two-way. Groups come from the frame's ``group`` column (NLI
    ``<heuristic>/<label>``, vision ``<label>/<colour>``). HANS-format frames (``heuristic``
    and ``subcase`` columns, two-way labels) also get ``by_heuristic`` and ``by_subcase``.

    Construction marks (:func:`construction_seen`): when some rows are seen constructions,
    every metric of the split is computed on the held-out rows, the same metrics of the seen
    rows go under ``"seen"``, ``n_total`` counts both and ``by_subcase`` keeps every subcase;
    ``constructions`` gives the two counts. Without marks the whole split is used, as before.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if len(probs) != len(frame):
        raise ValueError(f"{len(probs)} predictions for {len(frame)} rows")
    seen = construction_seen(frame)
    if seen is None:
        return _stratified(frame, probs, label_names, two_way, ece_bins)
    held = ~seen
    out = _stratified(frame[held].reset_index(drop=True), probs[held], label_names, two_way, ece_bins)
    out["n_total"] = len(frame)
    out["constructions"] = {"held_out": int(held.sum()), "seen": int(seen.sum())}
    if seen.any():
        out["seen"] = _stratified(frame[seen].reset_index(drop=True), probs[seen], label_names, two_way, ece_bins)
        out["seen"].pop("by_subcase", None)
        if "by_subcase" in out:  # every subcase, seen or not (names are unambiguous)
            out["by_subcase"] = _stratified(frame, probs, label_names, two_way, ece_bins)["by_subcase"]
    return out


def _stratified(frame: pd.DataFrame, probs: np.ndarray, label_names: Sequence[str], two_way: bool,
                ece_bins: int = 10) -> dict[str, Any]:
    """:func:`stratified_metrics` of one set of rows (no construction split)."""
    names = [str(n) for n in label_names]
    if two_way:
        probs = collapse_two_way(probs, names)
        names = list(TWO_WAY_LABELS)
    y_true = gold_indices(frame["label"].tolist(), names, two_way=two_way)
    y_pred = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=np.int64)
    correct = y_true == y_pred
    groups = frame["group"] if "group" in frame.columns else pd.Series(["all"] * len(frame))
    by_group = accuracy_by(groups.to_numpy(), y_true, y_pred)
    group_acc = [v["accuracy"] for v in by_group.values()]
    out: dict[str, Any] = {
        "n": len(frame),
        "accuracy": _accuracy(y_true, y_pred),
        "by_group": by_group,
        "worst_group_accuracy": float(min(group_acc)) if group_acc else float("nan"),
        "average_group_accuracy": float(np.mean(group_acc)) if group_acc else float("nan"),
        "ece": expected_calibration_error(probs, y_true, ece_bins),
        "auc": auc(probs, y_true, names),
        "balanced_accuracy": balanced_accuracy(y_true, y_pred),
        "majority_class_rate": majority_class_rate(y_true),
        "kappa": kappa(y_true, y_pred),
        "heuristic_reliance": heuristic_reliance(frame, correct) if len(frame) else None,
        "label_names": names,
    }
    if HARD_COLUMN in frame.columns:  # MNLI with the count of 100 BERT runs that got each pair right
        hard = frame[HARD_COLUMN].to_numpy(dtype=np.float64) < HARD_BELOW
        out["hard_n"] = int(hard.sum())
        out["hard_accuracy"] = _accuracy(y_true[hard], y_pred[hard]) if hard.any() else None
    if two_way:
        pos = names.index(ENTAILMENT)
        out["balanced_threshold_accuracy"] = balanced_threshold_accuracy(probs[:, pos], y_true == pos)
    if _is_hans_format(frame, two_way):
        heur = frame["heuristic"].astype(str).to_numpy()
        gold = np.array([names[i] for i in y_true], dtype=object)
        by_heuristic: dict[str, dict[str, float]] = {}
        for h in sorted(set(heur) - {NO_HEURISTIC}):
            sel = heur == h
            cells = accuracy_by(gold[sel], y_true[sel], y_pred[sel])
            by_heuristic[h] = {label: cells[label]["accuracy"] for label in names if label in cells}
        out["by_heuristic"] = by_heuristic
        sub = frame["subcase"].fillna("").astype(str).to_numpy()
        has = sub != ""
        out["by_subcase"] = {k: v["accuracy"] for k, v in accuracy_by(sub[has], y_true[has], y_pred[has]).items()}
    return out


# --------------------------------------------------------- uncertainty / tests
def bootstrap_ci(
    correct: np.ndarray, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of a mean (e.g. accuracy from per-example correctness)."""
    values = np.asarray(correct, dtype=np.float64)
    n = len(values)
    if n == 0:
        return (float("nan"), float("nan"))
    if n_boot <= 0:
        m = float(values.mean())
        return (m, m)
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    chunk = max(1, 2_000_000 // n)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        means[start:stop] = values[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    return (float(np.quantile(means, alpha)), float(np.quantile(means, 1.0 - alpha)))


def bootstrap_balanced_ci(
    correct: np.ndarray, gold: np.ndarray, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of balanced accuracy (mean over gold classes of the class's
    accuracy), resampling within each gold class."""
    return bootstrap_worst_group_ci(correct, gold, n_boot, confidence, seed, statistic="mean")


def bootstrap_worst_group_ci(
    correct: np.ndarray, groups: np.ndarray, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0,
    statistic: str = "min",
) -> tuple[float, float]:
    """Bootstrap interval of worst-group accuracy, resampling within each group
    (``statistic="mean"``: of the mean group accuracy instead)."""
    correct = np.asarray(correct, dtype=np.float64)
    groups = np.asarray(groups, dtype=object).astype(str)
    if len(correct) == 0:
        return (float("nan"), float("nan"))
    names = sorted(set(groups))
    reduce = min if statistic == "min" else (lambda vals: float(np.mean(list(vals))))
    if n_boot <= 0:
        m = reduce(float(correct[groups == g].mean()) for g in names)
        return (m, m)
    rng = np.random.default_rng(seed)
    per_group = np.empty((len(names), n_boot))
    for i, g in enumerate(names):
        vals = correct[groups == g]
        per_group[i] = vals[rng.integers(0, len(vals), size=(n_boot, len(vals)))].mean(axis=1)
    worst = per_group.min(axis=0) if statistic == "min" else per_group.mean(axis=0)
    alpha = (1.0 - confidence) / 2.0
    return (float(np.quantile(worst, alpha)), float(np.quantile(worst, 1.0 - alpha)))


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray, exact_below: int = 25) -> dict[str, Any]:
    """Paired test of two models on the same examples.

    ``b01``: A wrong and B right; ``b10``: A right and B wrong. Exact two-sided binomial
    test when ``b01 + b10 < exact_below``, else χ² with continuity correction. For one seed's
    predictions only: summing discordant pairs over seeds counts the same examples again and
    understates seed variance; across seeds use :func:`seed_t_interval` and
    :func:`hierarchical_bootstrap_ci`.
    """
    from scipy import stats  # SciPy: slow (~1.5 s), only the statistical tests need it

    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError("McNemar needs paired predictions of the same length")
    b01, b10 = int((~a & b).sum()), int((a & ~b).sum())
    n = b01 + b10
    if n == 0:
        return {"b01": 0, "b10": 0, "statistic": 0.0, "p_value": 1.0, "exact": True}
    if n < exact_below:
        stat = float(min(b01, b10))
        p = min(1.0, 2.0 * float(stats.binom.cdf(min(b01, b10), n, 0.5)))
        return {"b01": b01, "b10": b10, "statistic": stat, "p_value": p, "exact": True}
    stat = (abs(b01 - b10) - 1.0) ** 2 / n
    return {"b01": b01, "b10": b10, "statistic": float(stat), "p_value": float(stats.chi2.sf(stat, 1)),
            "exact": False}


def mean_std_ci(values: Sequence[float | None], confidence: float = 0.95) -> dict[str, Any]:
    """Across seeds: mean, sample std, n and a Student-t interval (``None`` entries are skipped)."""
    from scipy import stats  # SciPy: slow (~1.5 s), only the statistical tests need it

    vals = np.array([v for v in values if v is not None and not _isnan(v)], dtype=np.float64)
    n = len(vals)
    if n == 0:
        return {"mean": None, "std": None, "n": 0, "ci_low": None, "ci_high": None}
    mean = float(vals.mean())
    std = float(vals.std(ddof=1)) if n > 1 else 0.0
    half = float(stats.t.ppf(0.5 + confidence / 2.0, n - 1)) * std / math.sqrt(n) if n > 1 else 0.0
    return {"mean": mean, "std": std, "n": n, "ci_low": mean - half, "ci_high": mean + half}


def seed_t_interval(differences: Sequence[float], confidence: float = 0.95) -> dict[str, Any]:
    """One-sample Student-t interval and two-sided p-value of per-seed paired differences.

    The seed is the unit of replication: each entry is one seed's difference (e.g. challenge
    accuracy of model a minus model b on that seed). Computed with ``scipy.stats.ttest_1samp``.
    With fewer than two seeds there is no interval over seeds: ``ci_low``, ``ci_high``,
    ``p_value`` and ``std`` are ``None``. When every seed gives the same difference the
    interval collapses to that value (p = 1 if it is 0, else 0, as the t-statistic is 0 or infinite).
    """
    from scipy import stats  # SciPy: slow (~1.5 s), only the statistical tests need it

    d = np.array([v for v in differences if v is not None and not _isnan(v)], dtype=np.float64)
    n = len(d)
    out: dict[str, Any] = {"mean": float(d.mean()) if n else None, "n": n, "std": None,
                           "ci_low": None, "ci_high": None, "p_value": None}
    if n < 2:
        return out
    mean = float(d.mean())
    out["std"] = float(d.std(ddof=1))
    if np.ptp(d) == 0.0:  # zero spread: scipy warns and returns nan; the limit is a point interval
        out.update(ci_low=mean, ci_high=mean, p_value=1.0 if mean == 0.0 else 0.0)
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.ttest_1samp(d, 0.0)
        ci = res.confidence_interval(confidence_level=confidence)
    out.update(ci_low=float(ci.low), ci_high=float(ci.high), p_value=float(res.pvalue))
    return out


def hierarchical_bootstrap_ci(
    values_a: np.ndarray, values_b: np.ndarray, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0,
    resample_seeds: bool = True,
) -> dict[str, Any]:
    """Two-level percentile bootstrap of the mean paired difference ``a − b`` over seeds and examples.

    ``values_a`` and ``values_b`` are ``(n_seeds, n_examples)`` arrays (e.g. per-example correctness
    of two models, one row per seed, the same examples in the same order in both). Each resample
    draws seeds with replacement and then, within each drawn seed, examples with replacement,
    the same example indices for ``a`` and ``b`` (paired); its statistic is the mean over the
    drawn seeds of the within-seed mean difference. ``resample_seeds=False`` keeps every seed
    once and resamples only examples (a bootstrap that ignores seed variance, for comparison).
    Seeded (``numpy.random.Generator``) and vectorised in chunks: 2000 resamples of 5 × 1500
    take a fraction of a second. Returns ``mean`` (the observed statistic), ``ci_low``, ``ci_high``,
    ``n_seeds``, ``n_boot``. With few seeds the seed level has few distinct draws (10 multisets of
    3 seeds) and a percentile interval tends to be too narrow: read it beside the t-interval.
    """
    a = np.asarray(values_a, dtype=np.float64)
    b = np.asarray(values_b, dtype=np.float64)
    if a.ndim == 1:
        a, b = a[None, :], b[None, :]
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"paired arrays of one shape (n_seeds, n_examples) needed, got {a.shape} and {b.shape}")
    diff = a - b
    n_seeds, n_ex = diff.shape
    out: dict[str, Any] = {"mean": float(diff.mean()) if diff.size else None, "ci_low": None, "ci_high": None,
                           "n_seeds": int(n_seeds), "n_boot": int(n_boot)}
    if diff.size == 0 or n_boot <= 0:
        return out
    rng = np.random.default_rng(seed)
    stats_ = np.empty(n_boot)
    chunk = max(1, 2_000_000 // (n_seeds * n_ex))
    for start in range(0, n_boot, chunk):
        size = min(n_boot, start + chunk) - start
        if resample_seeds:
            rows = rng.integers(0, n_seeds, size=(size, n_seeds, 1))
        else:
            rows = np.broadcast_to(np.arange(n_seeds)[None, :, None], (size, n_seeds, 1))
        cols = rng.integers(0, n_ex, size=(size, n_seeds, n_ex))
        stats_[start:start + size] = diff[rows, cols].mean(axis=(1, 2))
    alpha = (1.0 - confidence) / 2.0
    out["ci_low"], out["ci_high"] = float(np.quantile(stats_, alpha)), float(np.quantile(stats_, 1.0 - alpha))
    return out


def hierarchical_bootstrap_ci_ragged(
    values_a: Sequence[np.ndarray], values_b: Sequence[np.ndarray], n_boot: int = 1000, confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """:func:`hierarchical_bootstrap_ci` for seeds with different numbers of examples.

    When each seed draws its own data, its challenge split may hold another number of examples (the
    vision challenge is the colour-conflicting part of each seed's test split). ``values_a[s]`` and
    ``values_b[s]`` are seed ``s``'s paired per-example values (same length within a seed). The
    statistic is the same: the mean over seeds of each seed's mean paired difference. Each resample
    draws ``n_seeds`` seeds with replacement and, for every drawn slot (a seed drawn twice counts as
    two independent slots), resamples that seed's examples with replacement.
    """
    diffs = []
    for a, b in zip(values_a, values_b, strict=True):
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        if a.shape != b.shape or a.ndim != 1:
            raise ValueError(f"each seed needs paired 1-D arrays of one length, got {a.shape} and {b.shape}")
        diffs.append(a - b)
    n_seeds = len(diffs)
    out: dict[str, Any] = {"mean": float(np.mean([d.mean() for d in diffs])) if n_seeds and all(len(d) for d in diffs)
                           else None, "ci_low": None, "ci_high": None, "n_seeds": n_seeds, "n_boot": int(n_boot)}
    if out["mean"] is None or n_boot <= 0:
        return out
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, n_seeds, size=(n_boot, n_seeds))  # which seed fills each slot of each resample
    slot_means = np.empty((n_boot, n_seeds))
    for s, d in enumerate(diffs):  # every slot that drew seed s resamples s's examples afresh
        where = np.nonzero(drawn == s)
        k = len(where[0])
        chunk = max(1, 2_000_000 // len(d))
        means = np.empty(k)
        for start in range(0, k, chunk):
            size = min(k, start + chunk) - start
            means[start:start + size] = d[rng.integers(0, len(d), size=(size, len(d)))].mean(axis=1)
        slot_means[where] = means
    stats_ = slot_means.mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    out["ci_low"], out["ci_high"] = float(np.quantile(stats_, alpha)), float(np.quantile(stats_, 1.0 - alpha))
    return out


def _isnan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


# ------------------------------------------------------ teacher vs student
def _ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or _isnan(num) or _isnan(den) or den == 0:
        return None
    return float(num) / float(den)


def _group_accuracy(entry: Any) -> float | None:
    return entry.get("accuracy") if isinstance(entry, Mapping) else entry


def retention(student: Mapping[str, Any], teacher: Mapping[str, Any]) -> dict[str, Any]:
    """Student / teacher challenge accuracy, overall, per group and for the worst group.

    Both arguments are evaluation summaries (``challenge_accuracy``, ``worst_group_accuracy``,
    ``by_group`` as ``{group: accuracy}`` or ``{group: {"accuracy": …}}``). ``None`` where the
    teacher's accuracy is 0 or missing.
    """
    t_groups = teacher.get("by_group", {}) or {}
    s_groups = student.get("by_group", {}) or {}
    return {
        "robustness_retention": _ratio(student.get("challenge_accuracy"), teacher.get("challenge_accuracy")),
        "worst_group_retention": _ratio(student.get("worst_group_accuracy"), teacher.get("worst_group_accuracy")),
        "by_group_retention": {
            g: _ratio(_group_accuracy(s_groups.get(g)), _group_accuracy(t_groups[g])) for g in sorted(t_groups)
        },
    }


def agreement(pred_a: np.ndarray, pred_b: np.ndarray, groups: np.ndarray | None = None) -> dict[str, Any]:
    """Share of examples where two models predict the same label, overall and per group."""
    a, b = np.asarray(pred_a), np.asarray(pred_b)
    same = a == b
    out: dict[str, Any] = {"overall": float(same.mean()) if len(same) else float("nan")}
    if groups is not None:
        g = np.asarray(groups, dtype=object).astype(str)
        out["by_group"] = {k: float(same[g == k].mean()) for k in sorted(set(g))}
    return out


def error_concentration(frame: pd.DataFrame, correct: np.ndarray) -> dict[str, Any]:
    """Where the errors fall: per group, its share of all errors vs its share of examples.

    ``lift`` > 1 means the group holds more than its share of the errors.
    """
    correct = np.asarray(correct, dtype=bool)
    groups = frame["group"].astype(str).to_numpy() if "group" in frame.columns else np.array(["all"] * len(frame))
    n, n_err = len(correct), int((~correct).sum())
    by_group = {}
    for g in sorted(set(groups)):
        sel = groups == g
        errors = int((~correct[sel]).sum())
        share_err = errors / n_err if n_err else 0.0
        share_ex = sel.sum() / n if n else 0.0
        by_group[g] = {
            "n": int(sel.sum()), "errors": errors, "error_rate": errors / int(sel.sum()),
            "share_of_errors": share_err, "share_of_examples": float(share_ex),
            "lift": share_err / share_ex if share_ex else None,
        }
    return {"n": n, "n_errors": n_err, "by_group": by_group}


def stratified_sample_index(groups: Sequence[Any], n: int, seed: int = 0) -> np.ndarray:
    """Seeded sample of ``n`` row positions stratified by group (largest remainder), sorted.

    Every group keeps its share of the rows (rounded); groups that would round to zero
    still get one row while ``n`` allows, so no group silently disappears.
    """
    g = np.asarray(groups, dtype=object).astype(str)
    total = len(g)
    if n >= total:
        return np.arange(total)
    names, counts = np.unique(g, return_counts=True)
    quota = counts * n / total
    alloc = np.floor(quota).astype(int)
    order = np.argsort(-(quota - alloc), kind="stable")
    for i in order[: n - alloc.sum()]:
        alloc[i] += 1
    for i in np.where((alloc == 0) & (counts > 0))[0]:
        donor = int(np.argmax(alloc))
        if alloc[donor] > 1:
            alloc[donor] -= 1
            alloc[i] = 1
    rng = np.random.default_rng(seed)
    picked = [rng.choice(np.where(g == name)[0], size=k, replace=False) for name, k in zip(names, alloc, strict=True)]
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)
