"""Head-ablation importance: which attention heads does a model's (anti-bias) accuracy rest on?

A head is ablated by a forward pre-hook on the attention output projection that zeroes that
head's slice of its input (the per-head context vectors), so no model code is edited and it
works with any attention implementation. Vision models get the analogue on feature channels.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from debiaskd.analysis.attention import PairBatch
from debiaskd.core.metrics import collapse_two_way
from debiaskd.evaluation.inference import images_to_tensor, logits_of


@dataclass
class HeadSite:
    layer: int
    num_heads: int
    head_dim: int
    out_proj: nn.Module  # takes the concatenated heads (…, num_heads * head_dim)


def _encoder_layers(model: nn.Module) -> Sequence[nn.Module]:
    base = getattr(model, getattr(model, "base_model_prefix", ""), model)
    encoder = getattr(base, "encoder", None) or getattr(base, "transformer", None)
    for name in ("layer", "layers"):
        layers = getattr(encoder, name, None)
        if layers is not None:
            return layers
    raise ValueError(f"cannot find the encoder layers of {type(model).__name__}")


def attention_heads(model: nn.Module) -> list[HeadSite]:
    """Where each layer's heads meet the output projection (BERT/RoBERTa, DistilBERT, o_proj styles)."""
    config = getattr(model, "config", None)
    sites = []
    for i, layer in enumerate(_encoder_layers(model)):
        attn = getattr(layer, "attention", None) or getattr(layer, "self_attn", None)
        inner = getattr(attn, "self", attn)
        heads = getattr(inner, "num_attention_heads", None) or getattr(inner, "n_heads", None)
        heads = heads or getattr(config, "num_attention_heads", None)
        out = None
        for path in ("output.dense", "out_lin", "o_proj", "out_proj"):
            node: Any = attn
            for part in path.split("."):
                node = getattr(node, part, None)
            if isinstance(node, nn.Linear):
                out = node
                break
        if out is None or not heads:
            raise ValueError(f"cannot find the attention output projection of layer {i}")
        sites.append(HeadSite(i, int(heads), out.in_features // int(heads), out))
    return sites


@contextlib.contextmanager
def ablate_heads(model: nn.Module, heads: Sequence[tuple[int, int]]) -> Iterator[None]:
    """Zero the context vectors of ``(layer, head)`` pairs while the context is open."""
    sites = {s.layer: s for s in attention_heads(model)}
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        by_layer.setdefault(layer, []).append(head)
    handles = []
    for layer, hs in by_layer.items():
        site = sites[layer]

        def hook(_module: nn.Module, args: tuple, site: HeadSite = site, hs: list[int] = hs) -> tuple:
            x = args[0].clone()
            for h in hs:
                x[..., h * site.head_dim: (h + 1) * site.head_dim] = 0.0
            return (x, *args[1:])

        handles.append(site.out_proj.register_forward_pre_hook(hook))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _scores(model: nn.Module, batch: PairBatch, gold: np.ndarray, label_names: Sequence[str], two_way: bool,
            batch_size: int) -> tuple[float, float]:
    """(accuracy, mean log-prob of the gold label) of ``model`` on ``batch``."""
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(batch), batch_size):
            part = {k: v[start: start + batch_size] for k, v in batch.inputs.items()}
            chunks.append(torch.softmax(logits_of(model(**part)).float(), dim=-1).numpy())
    probs = np.concatenate(chunks).astype(np.float64)
    if two_way:
        probs = collapse_two_way(probs, label_names)
    p_gold = probs[np.arange(len(gold)), gold]
    return float(np.mean(probs.argmax(axis=1) == gold)), float(np.mean(np.log(np.clip(p_gold, 1e-12, None))))


def head_importance(
    model: nn.Module,
    batch: PairBatch,
    gold: np.ndarray,
    label_names: Sequence[str],
    two_way: bool = False,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Drop in accuracy and in gold-label log-probability when each head alone is ablated.

    ``gold`` indexes ``label_names`` (or the two-way labels when ``two_way``). Returns the
    baseline and ``(L, H)`` matrices ``accuracy_drop`` and ``logprob_drop`` (positive = the head helps).
    """
    model.eval()
    base_acc, base_lp = _scores(model, batch, gold, label_names, two_way, batch_size)
    sites = attention_heads(model)
    n_heads = max(s.num_heads for s in sites)
    acc_drop = np.full((len(sites), n_heads), np.nan)
    lp_drop = np.full((len(sites), n_heads), np.nan)
    for site in sites:
        for h in range(site.num_heads):
            with ablate_heads(model, [(site.layer, h)]):
                acc, lp = _scores(model, batch, gold, label_names, two_way, batch_size)
            acc_drop[site.layer, h] = base_acc - acc
            lp_drop[site.layer, h] = base_lp - lp
    return {"n": len(batch), "baseline_accuracy": base_acc, "baseline_logprob": base_lp,
            "accuracy_drop": acc_drop.tolist(), "logprob_drop": lp_drop.tolist()}


def top_heads(importance: dict[str, Any], k: int = 5) -> list[dict[str, Any]]:
    """The ``k`` most important heads: by accuracy drop, ties broken by log-prob drop."""
    acc = np.asarray(importance["accuracy_drop"], dtype=np.float64)
    lp = np.asarray(importance["logprob_drop"], dtype=np.float64)
    cells = [(layer, head) for layer in range(acc.shape[0]) for head in range(acc.shape[1])
             if not np.isnan(acc[layer, head])]
    cells.sort(key=lambda c: (-acc[c], -lp[c]))
    return [{"head": f"L{layer}H{head}", "layer": layer, "head_index": head,
             "accuracy_drop": float(acc[layer, head]), "logprob_drop": float(lp[layer, head])}
            for layer, head in cells[:k]]


def counterparts(teacher_top: list[dict[str, Any]], similarity: dict[str, Any]) -> list[dict[str, Any]]:
    """For each important teacher head, the most similar student head.

    ``mutual`` is true when that student head's own best match is this teacher head — a
    threshold-free reading of "the student has a counterpart".
    """
    t_names, s_names = similarity["teacher_heads"], similarity["student_heads"]
    sim = np.asarray(similarity["similarity"], dtype=np.float64)  # (S, T)
    out = []
    for entry in teacher_top:
        if entry["head"] not in t_names:
            continue
        col = t_names.index(entry["head"])
        s = int(sim[:, col].argmax())
        mutual = similarity["best_match"][s_names[s]]["teacher_head"] == entry["head"]
        out.append({"teacher_head": entry["head"], "student_head": s_names[s],
                    "similarity": float(sim[s, col]), "mutual": bool(mutual)})
    return out


# --------------------------------------------------------------------- vision
def channel_importance(
    model: nn.Module, images: np.ndarray, gold: np.ndarray, batch_size: int = 256, top: int | None = None
) -> dict[str, Any]:
    """Accuracy drop when each channel of the final features (input of ``model.head``) is zeroed."""
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Linear):
        raise ValueError("channel ablation needs a model with a linear `head`")
    model.eval()
    x = images_to_tensor(images)

    def accuracy() -> float:
        with torch.inference_mode():
            preds = [logits_of(model(x[i: i + batch_size])).argmax(-1) for i in range(0, len(x), batch_size)]
        return float((torch.cat(preds).numpy() == gold).mean())

    base = accuracy()
    drops = np.zeros(head.in_features)
    for c in range(head.in_features):
        def hook(_m: nn.Module, args: tuple, c: int = c) -> tuple:
            z = args[0].clone()
            z[..., c] = 0.0
            return (z,)

        handle = head.register_forward_pre_hook(hook)
        try:
            drops[c] = base - accuracy()
        finally:
            handle.remove()
    order = np.argsort(-drops, kind="stable")[: top or len(drops)]
    return {"n": len(gold), "baseline_accuracy": base, "accuracy_drop": drops.tolist(),
            "top_channels": [{"channel": int(c), "accuracy_drop": float(drops[c])} for c in order]}
