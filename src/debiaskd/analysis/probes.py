"""Linear probes on each layer's representation: is the bias feature (or the label) linearly readable?

Cross-validated logistic regression on the [CLS] (or mean-pooled) vector of every layer,
against the majority-class rate, for: high word overlap (overlap rate above its median),
negation present in the hypothesis, and the gold label. Vision: colour and label per stage.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from debiaskd.evaluation.inference import images_to_tensor

NEGATION_WORDS = frozenset({"not", "no", "never", "nobody", "nothing", "none", "neither", "nor", "nowhere", "n't"})
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|n't")


def words(text: str) -> list[str]:
    return _WORD.findall(str(text).lower().replace("n't", " n't"))


def overlap_rate(premise: str, hypothesis: str) -> float:
    """Share of hypothesis words that also occur in the premise."""
    hyp, prem = words(hypothesis), set(words(premise))
    return sum(w in prem for w in hyp) / len(hyp) if hyp else 0.0


def negation_present(text: str) -> bool:
    return any(w in NEGATION_WORDS for w in words(text))


def bias_features(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Probe targets: ``high_overlap`` (overlap rate > its median, or = 1 when the median is 1), ``negation``."""
    rates = np.array([overlap_rate(p, h) for p, h in zip(frame["premise"], frame["hypothesis"], strict=True)])
    median = float(np.median(rates)) if len(rates) else 0.0
    high = rates >= 1.0 if median >= 1.0 else rates > median
    negation = np.array([negation_present(h) for h in frame["hypothesis"]], dtype=bool)
    return {"high_overlap": high.astype(int), "negation": negation.astype(int), "overlap_rate": rates}


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, how: str = "cls") -> np.ndarray:
    """``(N, T, D)`` → ``(N, D)``: the first token, or the mean over real tokens."""
    if how == "cls":
        return hidden[:, 0].numpy()
    m = attention_mask.float()[..., None]
    return ((hidden * m).sum(1) / m.sum(1).clamp(min=1.0)).numpy()


def probe_accuracy(x: np.ndarray, y: Sequence[Any], folds: int = 5, seed: int = 0) -> float | None:
    """Stratified k-fold accuracy of a standardised logistic regression; ``None`` if a class is too rare."""
    # scikit-learn: slow (~2.5 s) and only the layer probes need it (analysis.probes)
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y)
    x = np.asarray(x, dtype=np.float64)
    _, counts = np.unique(y, return_counts=True)
    if len(counts) < 2 or counts.min() < 2:
        return None
    cv = StratifiedKFold(n_splits=int(min(folds, counts.min())), shuffle=True, random_state=seed)
    scores = []
    for train, test in cv.split(x, y):
        mu, sd = x[train].mean(axis=0), x[train].std(axis=0) + 1e-6
        clf = LogisticRegression(C=0.1, max_iter=300).fit((x[train] - mu) / sd, y[train])
        scores.append(float(np.mean(clf.predict((x[test] - mu) / sd) == y[test])))
    return float(np.mean(scores))


def majority_rate(y: Sequence[Any]) -> float | None:
    y = np.asarray(y)
    if len(y) == 0:
        return None
    _, counts = np.unique(y, return_counts=True)
    return float(counts.max() / len(y))


def probe_layers(reps: list[np.ndarray], targets: dict[str, Sequence[Any]], seed: int = 0) -> dict[str, Any]:
    """Probe accuracy per layer for each target, with each target's majority-class rate."""
    return {
        "layers": list(range(len(reps))),
        "accuracy": {name: [probe_accuracy(r, y, seed=seed) for r in reps] for name, y in targets.items()},
        "majority": {name: majority_rate(y) for name, y in targets.items()},
    }


def nli_probes(hidden_states: list[torch.Tensor], attention_mask: torch.Tensor, frame: pd.DataFrame,
               how: str = "cls", seed: int = 0) -> dict[str, Any]:
    """Probes on every hidden state (layer 0 = embeddings) for overlap, negation and the label."""
    feats = bias_features(frame)
    reps = [pool(h, attention_mask, how) for h in hidden_states]
    targets = {"high_overlap": feats["high_overlap"], "negation": feats["negation"],
               "label": frame["label"].astype(str).to_numpy()}
    out = probe_layers(reps, targets, seed)
    out["pool"] = how
    return out


def vision_representations(model: nn.Module, images: np.ndarray, batch_size: int = 256) -> dict[str, np.ndarray]:
    """Spatially pooled outputs of the stem and every stage/body block, via forward hooks."""
    sites: list[tuple[str, nn.Module]] = []
    for name, module in model.named_children():
        if name == "head":
            continue
        if isinstance(module, nn.Sequential) and name != "stem":
            sites += [(f"{name}.{i}", m) for i, m in enumerate(module) if not isinstance(m, nn.Conv2d)]
        else:
            sites.append((name, module))
    store: dict[str, list[np.ndarray]] = {n: [] for n, _ in sites}
    handles = [m.register_forward_hook(lambda _m, _a, out, n=n: store[n].append(out.float().mean(dim=(2, 3)).numpy()))
               for n, m in sites]
    model.eval()
    try:
        with torch.inference_mode():
            x = images_to_tensor(images)
            for i in range(0, len(x), batch_size):
                model(x[i: i + batch_size])
    finally:
        for h in handles:
            h.remove()
    return {n: np.concatenate(v) for n, v in store.items() if v}


def vision_probes(model: nn.Module, images: np.ndarray, frame: pd.DataFrame, seed: int = 0) -> dict[str, Any]:
    """Probe accuracy for colour and label on each stage's pooled features."""
    reps = vision_representations(model, images)
    names = list(reps)
    out = probe_layers([reps[n] for n in names], {"color": frame["color"].astype(str).to_numpy(),
                                                   "label": frame["label"].astype(str).to_numpy()}, seed)
    out["layer_names"] = names
    return out
