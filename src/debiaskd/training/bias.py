"""Bias-only models: what a shortcut alone predicts, for PoE, reweighting and conf-reg.

* ``features``: logistic regression on hand-crafted HANS/negation features of a pair
  (:func:`nli_bias_features`).
* ``hypothesis_only``: logistic regression on a bag of hypothesis words (and bigrams).
* vision ``color``: logistic regression on the mean RGB of the foreground pixels.

**Which predictions training uses.** The pipeline's ``augment_data`` step fits the bias model
(``debias.bias_model``; the colour model for vision) on the whole training split and stores its
in-sample predictions on every split, the augmented training split included, as the ``bias_probs``
column; training reads that column (softened by ``debias.bias_temperature``), as Clark et al. 2019
and Utama et al. 2020 used in-sample predictions. :func:`cross_fit_bias_probs` (out-of-fold, ``K``
folds, seeded) is available for experiments; the pipeline does not call it.

A bias model is saved as JSON (coefficients, vocabulary, scaling), never pickled, and predicts with
numpy alone.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from debiaskd.core.errors import DebiaskdError
from debiaskd.data.schema import NLI_LABELS, ImageSplit

NEGATION_WORDS = frozenset(
    {"not", "no", "never", "nobody", "nothing", "none", "neither", "nor", "cannot", "n't", "nowhere", "without"}
)
CLAUSE_MARKERS = frozenset(
    {"that", "if", "whether", "because", "since", "although", "though", "while", "unless", "when", "after",
     "before", "and", "or", "but", "so"}
)
FEATURE_NAMES: tuple[str, ...] = (
    "overlap_rate", "all_overlap", "subsequence", "constituent", "hyp_negation", "prem_negation",
    "hyp_length", "length_ratio", "premise_overlap_rate",
)
_TOKEN = re.compile(r"n't|[a-z0-9]+(?:'[a-z]+)?")


def _words(text: str) -> list[str]:
    text = str(text).lower().replace("n't", " n't")
    return _TOKEN.findall(text)


def _contains(seq: list[str], sub: list[str]) -> int:
    """Start index of ``sub`` as a contiguous run in ``seq``, or −1."""
    n, m = len(seq), len(sub)
    if m == 0 or m > n:
        return -1
    for i in range(n - m + 1):
        if seq[i:i + m] == sub:
            return i
    return -1


def _pair_features(premise: str, hypothesis: str) -> list[float]:
    p, h = _words(premise), _words(hypothesis)
    p_set, h_set = set(p), set(h)
    overlap = sum(w in p_set for w in h) / max(len(h), 1)
    start = _contains(p, h)
    subsequence = float(start >= 0)
    # constituent (approximation without a parser): the hypothesis is a contiguous run that is a
    # whole clause of the premise: at its end, or right after a clause marker, or the full premise.
    constituent = 0.0
    if start >= 0 and len(h) < len(p):
        end = start + len(h)
        constituent = float(end == len(p) or (start > 0 and p[start - 1] in CLAUSE_MARKERS)
                            or (end < len(p) and p[end] in CLAUSE_MARKERS))
    return [
        overlap, float(h_set <= p_set and bool(h)), subsequence, constituent,
        float(bool(h_set & NEGATION_WORDS)), float(bool(p_set & NEGATION_WORDS)),
        float(len(h)), len(h) / max(len(p), 1), sum(w in h_set for w in p) / max(len(p), 1),
    ]


def nli_bias_features(df: pd.DataFrame) -> np.ndarray:
    """``(N, len(FEATURE_NAMES))`` features of each pair (see :data:`FEATURE_NAMES`)."""
    rows = [_pair_features(p, h) for p, h in zip(df["premise"].tolist(), df["hypothesis"].tolist(), strict=True)]
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(FEATURE_NAMES))


def _hyp_vocabulary(texts: list[str], min_count: int = 2, max_size: int = 5000) -> dict[str, int]:
    counts: dict[str, int] = {}
    for text in texts:
        for tok in set(_hyp_tokens(text)):
            counts[tok] = counts.get(tok, 0) + 1
    kept = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))[:max_size]
    return {t: i for i, t in enumerate(sorted(kept))}


def _hyp_tokens(text: str) -> list[str]:
    w = _words(text)
    return w + [f"{a} {b}" for a, b in pairwise(w)]


def _bag(texts: list[str], vocab: dict[str, int]) -> np.ndarray:
    x = np.zeros((len(texts), len(vocab)), dtype=np.float64)
    for row, text in enumerate(texts):
        for tok in _hyp_tokens(text):
            j = vocab.get(tok)
            if j is not None:
                x[row, j] = 1.0
    return x


def _foreground_color(images: np.ndarray) -> np.ndarray:
    """Mean RGB (in [0, 1]) of each image's foreground (pixels brighter than a quarter of its max)."""
    x = images.astype(np.float32) / 255.0
    intensity = x.max(axis=1)  # (N, H, W)
    threshold = 0.25 * intensity.reshape(len(x), -1).max(axis=1).clip(min=1e-6)
    fg = (intensity >= threshold[:, None, None]).astype(np.float32)[:, None]  # (N,1,H,W)
    return (x * fg).sum(axis=(2, 3)) / fg.sum(axis=(2, 3)).clip(min=1.0)


@dataclass
class BiasModel:
    """A fitted bias-only logistic regression; predicts with numpy from stored coefficients."""

    kind: str  # "features" | "hypothesis_only" | "color"
    label_names: list[str]
    classes: list[int]  # indices into label_names the regression saw
    coef: np.ndarray
    intercept: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    vocabulary: dict[str, int] = field(default_factory=dict)

    # -- inputs
    def _inputs(self, data: pd.DataFrame | ImageSplit) -> np.ndarray:
        if self.kind == "features":
            x = nli_bias_features(data)
        elif self.kind == "hypothesis_only":
            x = _bag([str(t) for t in data["hypothesis"].tolist()], self.vocabulary)
        elif self.kind == "color":
            if not isinstance(data, ImageSplit):
                raise DebiaskdError("the colour bias model needs an ImageSplit", rule="bias model")
            x = _foreground_color(data.images)
        else:
            raise DebiaskdError(f"unknown bias model kind '{self.kind}'", rule="bias model")
        return (x - self.mean) / self.scale

    def predict_proba(self, data: pd.DataFrame | ImageSplit) -> np.ndarray:
        """``(N, len(label_names))`` probabilities; classes unseen in training get a tiny mass."""
        x = self._inputs(data)
        scores = x @ self.coef.T + self.intercept
        if len(self.classes) == 2 and scores.shape[1] == 1:
            scores = np.concatenate([-scores, scores], axis=1) / 2.0
        scores = scores - scores.max(axis=1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(axis=1, keepdims=True)
        out = np.full((len(x), len(self.label_names)), 1e-6)
        out[:, self.classes] = probs
        return out / out.sum(axis=1, keepdims=True)

    # -- persistence
    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "label_names": self.label_names, "classes": self.classes,
            "coef": self.coef.tolist(), "intercept": self.intercept.tolist(), "mean": self.mean.tolist(),
            "scale": self.scale.tolist(), "vocabulary": self.vocabulary,
        }

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict()), encoding="utf-8")
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BiasModel:
        return cls(
            kind=data["kind"], label_names=list(data["label_names"]), classes=[int(c) for c in data["classes"]],
            coef=np.asarray(data["coef"], dtype=np.float64), intercept=np.asarray(data["intercept"], dtype=np.float64),
            mean=np.asarray(data["mean"], dtype=np.float64), scale=np.asarray(data["scale"], dtype=np.float64),
            vocabulary={str(k): int(v) for k, v in data.get("vocabulary", {}).items()},
        )


def load_bias_model(path: str | Path) -> BiasModel:
    path = Path(path)
    try:
        return BiasModel.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError) as exc:
        raise DebiaskdError(f"cannot read bias model: {exc}", file=str(path), rule="bias model") from exc


def _fit(kind: str, x: np.ndarray, y: np.ndarray, label_names: list[str], seed: int, c: float,
         vocabulary: dict[str, int] | None = None) -> BiasModel:
    from sklearn.linear_model import LogisticRegression  # scikit-learn: slow (~2.5 s), only fitting needs it

    classes = sorted(set(int(v) for v in y))
    if len(classes) < 2:
        raise DebiaskdError("a bias model needs at least two labels in the training data", rule="bias model")
    mean = x.mean(axis=0) if kind != "hypothesis_only" else np.zeros(x.shape[1])
    scale = x.std(axis=0) if kind != "hypothesis_only" else np.ones(x.shape[1])
    scale = np.where(scale > 1e-9, scale, 1.0)
    clf = LogisticRegression(C=c, max_iter=2000, random_state=seed)
    clf.fit((x - mean) / scale, y)
    return BiasModel(kind, label_names, [int(k) for k in clf.classes_], clf.coef_.astype(np.float64),
                     clf.intercept_.astype(np.float64), mean, scale, vocabulary or {})


def _label_index(df: pd.DataFrame, label_names: list[str]) -> np.ndarray:
    lookup = {name: i for i, name in enumerate(label_names)}
    unknown = sorted(set(df["label"].astype(str)) - set(lookup))
    if unknown:
        raise DebiaskdError(f"labels {unknown} are not among {label_names}", rule="bias model")
    return df["label"].astype(str).map(lookup).to_numpy(dtype=np.int64)


def fit_bias_model(train_df: pd.DataFrame, kind: str = "features", seed: int = 0) -> BiasModel:
    """Fit the NLI bias-only model (``features`` or ``hypothesis_only``) on ``train_df``."""
    labels = list(NLI_LABELS)
    y = _label_index(train_df, labels)
    if kind == "features":
        return _fit(kind, nli_bias_features(train_df), y, labels, seed, c=1.0)
    if kind == "hypothesis_only":
        texts = [str(t) for t in train_df["hypothesis"].tolist()]
        vocab = _hyp_vocabulary(texts)
        return _fit(kind, _bag(texts, vocab), y, labels, seed, c=0.5, vocabulary=vocab)
    raise DebiaskdError(f"unknown bias model '{kind}'; choose features or hypothesis_only",
                        file="debias.bias_model", rule="bias model")


def fit_color_bias_model(split: ImageSplit, seed: int = 0) -> BiasModel:
    """Colour-only bias model: foreground mean colour → label (the Colored-MNIST shortcut)."""
    labels = [str(c) for c in split.class_names]
    y = split.frame["label"].astype(int).to_numpy()
    return _fit("color", _foreground_color(split.images), y, labels, seed, c=1.0)


def cross_fit_bias_probs(train_df: pd.DataFrame, kind: str = "features", seed: int = 0, folds: int = 5) -> np.ndarray:
    """Out-of-fold bias probabilities for ``train_df`` (each row predicted by a model not fitted on it)."""
    n = len(train_df)
    fold_of = np.random.default_rng(seed).permutation(n) % folds
    out = np.zeros((n, len(NLI_LABELS)))
    for k in range(folds):
        held = fold_of == k
        model = fit_bias_model(train_df.iloc[~held], kind, seed)
        out[held] = model.predict_proba(train_df.iloc[held])
    return out


def add_bias_probs(frame: pd.DataFrame, probs: np.ndarray) -> pd.DataFrame:
    """A copy of ``frame`` with column ``bias_probs`` (a list of floats per row)."""
    probs = np.asarray(probs, dtype=np.float64)
    if len(probs) != len(frame):
        raise DebiaskdError(f"{len(probs)} bias predictions for {len(frame)} rows", rule="bias model")
    out = frame.copy()
    out["bias_probs"] = [row.tolist() for row in probs]
    return out


def bias_probs_of(frame: pd.DataFrame) -> np.ndarray | None:
    """The ``bias_probs`` column as an ``(N, C)`` array, or None when the frame has none."""
    if "bias_probs" not in frame.columns:
        return None
    return np.asarray([list(v) for v in frame["bias_probs"].tolist()], dtype=np.float64)
