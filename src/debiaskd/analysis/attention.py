"""Attention patterns per layer × head, read with ``output_attentions`` (eager attention).

* overlap share: attention mass that hypothesis tokens put on premise tokens with the same
  word piece — the lexical-overlap shortcut made visible;
* entropy of each head's attention rows;
* head similarity between two models on the same inputs (teacher vs student).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from debiaskd.evaluation.inference import logits_of


@dataclass
class PairBatch:
    """Padded model inputs of a few pairs plus each token's segment (0 premise, 1 hypothesis, -1 other)."""

    inputs: dict[str, torch.Tensor]
    segment: torch.Tensor
    content: torch.Tensor  # bool (N, T): a word piece with a letter or digit (not special, not punctuation)

    @property
    def attention_mask(self) -> torch.Tensor:
        return self.inputs["attention_mask"]

    def __len__(self) -> int:
        return int(self.inputs["input_ids"].shape[0])

    def select(self, rows: torch.Tensor) -> PairBatch:
        """The examples ``rows`` (bool mask or index tensor)."""
        return PairBatch({k: v[rows] for k, v in self.inputs.items()}, self.segment[rows], self.content[rows])


def encode_batch(tokenizer: Any, frame: pd.DataFrame, max_length: int) -> PairBatch:
    """Tokenise pairs, padded to the longest, and mark premise / hypothesis tokens."""
    enc = tokenizer(
        frame["premise"].astype(str).tolist(), frame["hypothesis"].astype(str).tolist(),
        truncation=True, max_length=max_length, padding=True, return_tensors="pt",
    )
    ids = enc["input_ids"]
    segment = torch.full_like(ids, -1)
    for i in range(ids.shape[0]):
        try:
            seq = enc.sequence_ids(i)
        except (ValueError, AttributeError):  # slow tokenizer: fall back to segment ids
            seq = None
        if seq is None:
            types = enc["token_type_ids"][i]
            special = torch.tensor(
                tokenizer.get_special_tokens_mask(ids[i].tolist(), already_has_special_tokens=True), dtype=torch.bool
            )
            row = torch.where(special | (enc["attention_mask"][i] == 0), torch.tensor(-1), types)
        else:
            row = torch.tensor([-1 if s is None else int(s) for s in seq])
        segment[i] = row
    vocab_tokens = tokenizer.convert_ids_to_tokens(ids.reshape(-1).tolist())
    content = torch.tensor([any(ch.isalnum() for ch in str(t)) for t in vocab_tokens]).reshape(ids.shape)
    inputs = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    return PairBatch(inputs, segment, content & (segment >= 0))


@contextlib.contextmanager
def eager_attention(model: nn.Module) -> Iterator[nn.Module]:
    """Switch an HF model to eager attention (so attention weights are returned), then restore."""
    config = getattr(model, "config", None)
    previous = getattr(config, "_attn_implementation", None)
    switch = previous not in (None, "eager") and hasattr(model, "set_attn_implementation")
    if switch:
        model.set_attn_implementation("eager")
    try:
        yield model
    finally:
        if switch:
            model.set_attn_implementation(previous)


@dataclass
class Internals:
    logits: torch.Tensor  # (N, C)
    attentions: list[torch.Tensor]  # per layer (N, H, T, T)
    hidden_states: list[torch.Tensor]  # embeddings + per layer (N, T, D)


def forward_internals(model: nn.Module, batch: PairBatch, batch_size: int = 32) -> Internals:
    """One pass returning logits, attention maps and hidden states, in mini-batches."""
    model.eval()
    logits, attn, hidden = [], [], []
    with eager_attention(model), torch.inference_mode():
        for start in range(0, len(batch), batch_size):
            part = {k: v[start: start + batch_size] for k, v in batch.inputs.items()}
            out = model(**part, output_attentions=True, output_hidden_states=True)
            logits.append(logits_of(out).float())
            attn.append([a.float() for a in (out.attentions or ())])
            hidden.append([h.float() for h in (out.hidden_states or ())])
    n_layers = len(attn[0]) if attn else 0
    return Internals(
        torch.cat(logits),
        [torch.cat([a[layer] for a in attn]) for layer in range(n_layers)],
        [torch.cat([h[layer] for h in hidden]) for layer in range(len(hidden[0]) if hidden else 0)],
    )


def overlap_mask(batch: PairBatch) -> torch.Tensor:
    """``(N, T, T)`` bool: query is a hypothesis word piece, key a premise word piece with the same id."""
    ids = batch.inputs["input_ids"]
    hyp = (batch.segment == 1) & batch.content
    prem = (batch.segment == 0) & batch.content
    same = ids[:, :, None] == ids[:, None, :]
    return same & hyp[:, :, None] & prem[:, None, :]


def overlap_share(attentions: list[torch.Tensor], mask: torch.Tensor) -> np.ndarray:
    """``(L, H)``: mean attention mass from overlapping hypothesis tokens onto their premise matches.

    Averaged over the hypothesis tokens that have a match, then over examples with any match.
    NaN where no example has an overlapping token.
    """
    m = mask.float()
    rows = mask.any(dim=-1)  # (N, T)
    n_rows = rows.sum(dim=-1)  # (N,)
    keep = n_rows > 0
    out = np.full((len(attentions), attentions[0].shape[1] if attentions else 0), np.nan)
    if not keep.any():
        return out
    for layer, a in enumerate(attentions):
        mass = (a * m[:, None]).sum(dim=-1)  # (N, H, T)
        per_example = (mass * rows[:, None].float()).sum(dim=-1) / n_rows.clamp(min=1)[:, None]
        out[layer] = per_example[keep].mean(dim=0).numpy()
    return out


def uniform_overlap_share(batch: PairBatch, mask: torch.Tensor) -> float:
    """The overlap share a head attending uniformly would have (a reference level)."""
    rows = mask.any(dim=-1)
    if not rows.any():
        return float("nan")
    keys = batch.attention_mask.sum(dim=-1, keepdim=True).float()  # (N, 1)
    share = mask.sum(dim=-1).float() / keys
    return float(share[rows].mean())


def attention_entropy(attentions: list[torch.Tensor], attention_mask: torch.Tensor) -> np.ndarray:
    """``(L, H)`` mean entropy (nats) of attention rows over real (non-padding) query tokens."""
    valid = attention_mask.bool()
    out = np.zeros((len(attentions), attentions[0].shape[1] if attentions else 0))
    for layer, a in enumerate(attentions):
        ent = -(a * torch.log(a.clamp(min=1e-12))).sum(dim=-1)  # (N, H, T)
        out[layer] = (ent * valid[:, None]).sum(dim=(0, 2)).numpy() / float(valid.sum())
    return out


def attention_profile(attentions: list[torch.Tensor], batch: PairBatch, select: torch.Tensor) -> dict[str, Any]:
    """Overlap share and entropy per layer × head on the examples ``select`` (bool ``(N,)``)."""
    sub = batch.select(select)
    if len(sub) == 0:
        return {"n": 0, "overlap_share": None, "entropy": None, "uniform_overlap_share": None}
    maps = [a[select] for a in attentions]
    mask = overlap_mask(sub)
    return {
        "n": len(sub),
        "overlap_share": _nan_to_none(overlap_share(maps, mask)),
        "entropy": attention_entropy(maps, sub.attention_mask).tolist(),
        "uniform_overlap_share": _finite(uniform_overlap_share(sub, mask)),
    }


def _finite(x: float) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


def _nan_to_none(matrix: np.ndarray) -> list[list[float | None]]:
    return [[_finite(float(v)) for v in row] for row in matrix]


def head_names(attentions: list[torch.Tensor]) -> list[str]:
    return [f"L{layer}H{head}" for layer, a in enumerate(attentions) for head in range(a.shape[1])]


def head_similarity(
    teacher_maps: list[torch.Tensor], student_maps: list[torch.Tensor], attention_mask: torch.Tensor
) -> dict[str, Any]:
    """Similarity of every student head to every teacher head on the same inputs.

    ``1 − JS(p, q) / ln 2`` between attention rows (query tokens that are not padding),
    averaged: 1 = identical maps, 0 = disjoint. Returns the (student heads × teacher heads)
    matrix, the names of both axes and each student head's best teacher match.
    """
    t_all = torch.cat(teacher_maps, dim=1)  # (N, Ht, T, T)
    s_all = torch.cat(student_maps, dim=1)  # (N, Hs, T, T)
    if t_all.shape[-1] != s_all.shape[-1] or t_all.shape[0] != s_all.shape[0]:
        raise ValueError("head similarity needs attention maps of the same inputs")
    valid = attention_mask.bool()
    n_rows = float(valid.sum())
    sim = torch.zeros(s_all.shape[1], t_all.shape[1])
    t_log = torch.log(t_all.clamp(min=1e-12))
    for s in range(s_all.shape[1]):
        p = s_all[:, s: s + 1]  # (N, 1, T, T)
        mix = 0.5 * (p + t_all)
        log_mix = torch.log(mix.clamp(min=1e-12))
        js = 0.5 * (p * (torch.log(p.clamp(min=1e-12)) - log_mix)).sum(-1)
        js = js + 0.5 * (t_all * (t_log - log_mix)).sum(-1)  # (N, Ht, T)
        js = (js * valid[:, None]).sum(dim=(0, 2)) / n_rows
        sim[s] = 1.0 - js / math.log(2.0)
    s_names, t_names = head_names(student_maps), head_names(teacher_maps)
    best = sim.argmax(dim=1)
    return {
        "student_heads": s_names,
        "teacher_heads": t_names,
        "similarity": sim.clamp(0.0, 1.0).tolist(),
        "best_match": {
            s_names[i]: {"teacher_head": t_names[int(best[i])], "similarity": float(sim[i, best[i]])}
            for i in range(len(s_names))
        },
    }
