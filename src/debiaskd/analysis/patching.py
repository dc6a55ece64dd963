"""Activation patching on minimal pairs: which components carry the anti-bias decision?

A *minimal pair* is an anti-bias challenge pair and its bias-aligned twin (:func:`minimal_pairs`).
Both run through the model; one component's activation of the *source* run (the anti-bias pair)
replaces that component's activation in the *target* run (the twin), and the change in the
logit difference between the two gold labels (non-entailment minus entailment) is the
component's effect. A component that carries the anti-bias decision moves the twin's answer
towards non-entailment (a positive effect); the whole gap is ``ld(source) − ld(target)``.

Components, all patched with forward hooks (no model code is edited):

* ``head`` ``(layer, head)``: the head's context vectors (its slice of the attention output
  projection's input), at every position;
* ``mlp`` ``layer``: the feed-forward block's output before the residual sum, at every position;
* ``resid`` ``(layer, segment)``: the residual stream after ``layer`` at the positions of one
  segment (``cls``, ``premise``, ``hypothesis``: the union of both runs' positions).

Patching a component of a run into the same run changes nothing (a test checks it). Source and
target are padded to one length; a position that is padding in the target is masked out as a key,
so what a patch writes there reaches nothing.

:func:`transplant_map` patches across models: the teacher's head at the layer the student's layer
was copied from (the teacher-weight initialisation's layer map) into the student's head, on the
same pairs: how far the student's later layers can read the teacher's pathway.
:func:`path_patch` patches one head's output only into another head's input (path patching), for
a few head pairs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats
from torch import nn

from debiaskd.analysis.attention import PairBatch, eager_attention, encode_batch
from debiaskd.analysis.circuits import _encoder_layers, attention_heads
from debiaskd.core.mechanism import SEGMENTS, component_names
from debiaskd.core.metrics import stratified_sample_index
from debiaskd.data.generate_nli import full_overlap
from debiaskd.evaluation.inference import logits_of

#: heuristics whose anti-bias pairs (full overlap, not entailed) have a derivable twin
OVERLAP_HEURISTICS = ("lexical_overlap", "subsequence", "constituent")


# ------------------------------------------------------------------ the pairs
def minimal_pairs(frame: pd.DataFrame, n: int | None = None, seed: int = 0) -> pd.DataFrame:
    """Anti-bias pairs with their bias-aligned twin, a seeded sample of ``n`` stratified by subcase.

    The challenge does not link twins, so the link is derived: an anti-bias pair of an overlap
    heuristic (lexical overlap, subsequence, constituent; gold non-entailment; every hypothesis word
    occurs in the premise) has the twin ``(premise, premise)`` — the hypothesis restored to the
    sentence its words came from, which is entailed and fully overlapping, so the heuristic is
    right on it (bias-aligned). For ``ln_subject/object_swap`` the twin is exactly the unswapped
    original (the same words, hence the same word pieces, in the original order). Negation pairs
    get no twin (no derivable bias-aligned counterpart) and are left out.

    Returns the rows with ``twin_premise`` and ``twin_hypothesis`` beside ``premise`` and
    ``hypothesis``; the order is the frame's.
    """
    if frame.empty:
        return frame.assign(twin_premise=[], twin_hypothesis=[])
    heur = frame["heuristic"].astype(str) if "heuristic" in frame.columns else pd.Series("", index=frame.index)
    label = frame["label"].astype(str)
    keep = (heur.isin(OVERLAP_HEURISTICS) & (label != "entailment")).to_numpy().copy()
    keep &= np.array([full_overlap(str(p), str(h)) for p, h in zip(frame["premise"], frame["hypothesis"], strict=True)],
                     dtype=bool)
    pairs = frame[keep].reset_index(drop=True)
    if n is not None and len(pairs) > n:
        strata = pairs["subcase"] if "subcase" in pairs.columns else heur[keep]
        pairs = pairs.iloc[stratified_sample_index(strata.astype(str).tolist(), n, seed)].reset_index(drop=True)
    return pairs.assign(twin_premise=pairs["premise"], twin_hypothesis=pairs["premise"])


def encode_pairs(tokenizer: Any, pairs: pd.DataFrame, max_length: int) -> tuple[PairBatch, PairBatch]:
    """The anti-bias pairs (source) and their twins (target), padded to one length."""
    both = pd.concat([pairs[["premise", "hypothesis"]],
                      pairs[["twin_premise", "twin_hypothesis"]].set_axis(["premise", "hypothesis"], axis=1)],
                     ignore_index=True)
    batch = encode_batch(tokenizer, both, max_length)
    n = len(pairs)
    return batch.select(torch.arange(n)), batch.select(torch.arange(n, 2 * n))


# ------------------------------------------------------------------ the sites
def mlp_outputs(model: nn.Module) -> list[nn.Module]:
    """Each layer's feed-forward output before the residual sum (BERT ``output.dense``, DistilBERT
    ``ffn``, ``mlp``)."""
    found = []
    for i, layer in enumerate(_encoder_layers(model)):
        for path in ("output.dense", "ffn", "mlp"):
            node: Any = layer
            for part in path.split("."):
                node = getattr(node, part, None)
            if isinstance(node, nn.Module):
                found.append(node)
                break
        else:
            raise ValueError(f"cannot find the feed-forward output of layer {i}")
    return found


def _first(output: Any) -> torch.Tensor:
    return output if isinstance(output, torch.Tensor) else output[0]


def _replace_first(output: Any, value: torch.Tensor) -> Any:
    if isinstance(output, torch.Tensor):
        return value
    return (value, *output[1:])


class _Rows:
    """Which rows of the captured source the current mini-batch is (shared by the hooks)."""

    def __init__(self) -> None:
        self.rows = slice(0, 0)


def logit_difference(logits: torch.Tensor, label_names: Sequence[str]) -> np.ndarray:
    """Per row: the non-entailment score minus the entailment logit (non-entailment's score is the
    log-sum-exp of its labels' logits for a three-way model), the anti-bias gold minus the twin's."""
    logits = logits.float()
    names = [str(n) for n in label_names]
    ent = names.index("entailment")
    others = [i for i in range(len(names)) if i != ent]
    non = torch.logsumexp(logits[:, others], dim=-1)
    return (non - logits[:, ent]).numpy().astype(np.float64)


class Patcher:
    """Capture a source run's activations once, then re-run the target with one component patched."""

    def __init__(self, model: nn.Module, label_names: Sequence[str], batch_size: int = 64) -> None:
        self.model = model.eval()
        self.label_names = list(label_names)
        self.batch_size = batch_size
        self.heads = attention_heads(model)
        self.mlps = mlp_outputs(model)
        self.layers = list(_encoder_layers(model))
        self._rows = _Rows()

    def run(self, batch: PairBatch) -> np.ndarray:
        """The logit difference of every row of ``batch`` (under whatever hooks are registered)."""
        out = []
        with eager_attention(self.model), torch.inference_mode():
            for start in range(0, len(batch), self.batch_size):
                self._rows.rows = slice(start, start + self.batch_size)
                part = {k: v[self._rows.rows] for k, v in batch.inputs.items()}
                out.append(logit_difference(logits_of(self.model(**part)), self.label_names))
        return np.concatenate(out) if out else np.zeros(0)

    def capture(self, batch: PairBatch) -> dict[str, list[torch.Tensor]]:
        """Head inputs of each output projection, MLP outputs and layer outputs of a run of ``batch``."""
        store: dict[str, list[list[torch.Tensor]]] = {
            "head": [[] for _ in self.heads], "mlp": [[] for _ in self.mlps], "resid": [[] for _ in self.layers]}
        handles = []
        for i, site in enumerate(self.heads):
            handles.append(site.out_proj.register_forward_pre_hook(
                lambda _m, args, i=i: store["head"][i].append(args[0].detach().clone())))
        for i, mod in enumerate(self.mlps):
            handles.append(mod.register_forward_hook(
                lambda _m, _a, out, i=i: store["mlp"][i].append(_first(out).detach().clone())))
        for i, mod in enumerate(self.layers):
            handles.append(mod.register_forward_hook(
                lambda _m, _a, out, i=i: store["resid"][i].append(_first(out).detach().clone())))
        try:
            ld = self.run(batch)
        finally:
            for h in handles:
                h.remove()
        cache = {k: [torch.cat(chunks) for chunks in v] for k, v in store.items()}
        cache["logit_difference"] = [torch.as_tensor(ld)]
        return cache

    @contextlib.contextmanager
    def patch(self, kind: str, layer: int, source: torch.Tensor, head: int | None = None,
              positions: torch.Tensor | None = None) -> Iterator[None]:
        """Replace one component's activation with ``source`` (rows of the captured run) while open."""
        rows = self._rows
        if kind == "head":
            site = self.heads[layer]
            cols = slice(head * site.head_dim, (head + 1) * site.head_dim)

            def pre(_m: nn.Module, args: tuple) -> tuple:
                x = args[0].clone()
                x[..., cols] = source[rows.rows][..., cols].to(x.dtype)
                return (x, *args[1:])

            handle = site.out_proj.register_forward_pre_hook(pre)
        else:
            module = self.mlps[layer] if kind == "mlp" else self.layers[layer]

            def post(_m: nn.Module, _a: tuple, out: Any) -> Any:
                value = _first(out)
                src = source[rows.rows].to(value.dtype)
                if positions is None:
                    patched = src.clone()
                else:
                    where = positions[rows.rows].unsqueeze(-1)
                    patched = torch.where(where, src, value)
                return _replace_first(out, patched)

            handle = module.register_forward_hook(post)
        try:
            yield
        finally:
            handle.remove()


def segment_positions(source: PairBatch, target: PairBatch) -> dict[str, torch.Tensor]:
    """``(N, T)`` masks of each segment: the first token, and the union of both runs' premise or
    hypothesis word pieces (special tokens other than the first are in none)."""
    cls = torch.zeros_like(source.segment, dtype=torch.bool)
    cls[:, 0] = True
    return {"cls": cls, "premise": (source.segment == 0) | (target.segment == 0),
            "hypothesis": (source.segment == 1) | (target.segment == 1)}


def patching_map(
    model: nn.Module,
    source: PairBatch,
    target: PairBatch,
    label_names: Sequence[str],
    batch_size: int = 64,
    components: Sequence[str] = ("head", "mlp", "resid"),
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Patch every component of ``source``'s run into ``target``'s run, one at a time.

    Returns per-pair arrays: ``ld_source``, ``ld_target`` (``(N,)``), ``head`` ``(L, H, N)``,
    ``mlp`` ``(L, N)``, ``resid`` ``(L, len(SEGMENTS), N)``: each the patched logit difference minus
    ``ld_target`` (positive: the component moves the twin towards the anti-bias answer).
    """
    patcher = Patcher(model, label_names, batch_size)
    cache = patcher.capture(source)
    ld_target = patcher.run(target)
    n = len(target)
    out: dict[str, Any] = {"ld_source": cache["logit_difference"][0].numpy(), "ld_target": ld_target}
    if "head" in components:
        n_heads = max(s.num_heads for s in patcher.heads)
        effect = np.full((len(patcher.heads), n_heads, n), np.nan)
        for site in patcher.heads:
            for h in range(site.num_heads):
                with patcher.patch("head", site.layer, cache["head"][site.layer], head=h):
                    effect[site.layer, h] = patcher.run(target) - ld_target
            if progress:
                progress(f"heads of layer {site.layer}")
        out["head"] = effect
    if "mlp" in components:
        effect = np.full((len(patcher.mlps), n), np.nan)
        for layer in range(len(patcher.mlps)):
            with patcher.patch("mlp", layer, cache["mlp"][layer]):
                effect[layer] = patcher.run(target) - ld_target
        out["mlp"] = effect
    if "resid" in components:
        masks = segment_positions(source, target)
        effect = np.full((len(patcher.layers), len(SEGMENTS), n), np.nan)
        for layer in range(len(patcher.layers)):
            for s, name in enumerate(SEGMENTS):
                with patcher.patch("resid", layer, cache["resid"][layer], positions=masks[name]):
                    effect[layer, s] = patcher.run(target) - ld_target
        out["resid"] = effect
    return out


def transplant_map(
    teacher: nn.Module,
    student: nn.Module,
    layer_map: Sequence[int],
    source: PairBatch,
    target: PairBatch,
    label_names: Sequence[str],
    batch_size: int = 64,
) -> dict[str, Any] | None:
    """Patch the teacher's head ``(layer_map[l], h)`` of the anti-bias run into the student's head
    ``(l, h)`` of the twin run; ``(L_student, H, N)`` effects on the student's logit difference.

    None when the two models' heads differ in number or width (nothing to transplant)."""
    t_heads, s_heads = attention_heads(teacher), attention_heads(student)
    if any((t_heads[layer_map[s.layer]].num_heads, t_heads[layer_map[s.layer]].head_dim)
           != (s.num_heads, s.head_dim) for s in s_heads):
        return None
    t_cache = Patcher(teacher, label_names, batch_size).capture(source)
    patcher = Patcher(student, label_names, batch_size)
    ld_target = patcher.run(target)
    effect = np.full((len(s_heads), max(s.num_heads for s in s_heads), len(target)), np.nan)
    for site in s_heads:
        for h in range(site.num_heads):
            with patcher.patch("head", site.layer, t_cache["head"][layer_map[site.layer]], head=h):
                effect[site.layer, h] = patcher.run(target) - ld_target
    return {"layer_map": list(layer_map), "ld_target": ld_target, "head": effect}


def _attention_input(layer: nn.Module) -> nn.Module:
    """The module that computes a layer's queries, keys and values from the residual (BERT ``attention.self``)."""
    node = getattr(getattr(layer, "attention", None), "self", None)
    if not isinstance(node, nn.Module):
        raise ValueError(f"path patching needs a BERT-style layer (attention.self), got {type(layer).__name__}")
    return node


def path_patch(
    model: nn.Module,
    source: PairBatch,
    target: PairBatch,
    label_names: Sequence[str],
    sender: tuple[int, int],
    receiver: tuple[int, int],
    batch_size: int = 64,
) -> np.ndarray:
    """Path patching from a sender head to a receiver head of a later layer.

    1. the target run with the sender head's context vectors taken from the source: record the
       residual the receiver layer's attention reads;
    2. the target run with only the receiver layer's attention reading that residual: record the
       receiver head's context vectors;
    3. the target run with only the receiver head's context vectors replaced by those.

    So the source's difference reaches the classifier only through the sender → receiver path
    (directly, and through the layers between them, which are not frozen). Returns the per-pair
    change in the logit difference (as :func:`patching_map`); four runs, cheap for a few head pairs.
    """
    (s_layer, s_head), (r_layer, r_head) = sender, receiver
    if r_layer <= s_layer:
        raise ValueError("the receiver head must sit in a later layer than the sender head")
    patcher = Patcher(model, label_names, batch_size)
    src = patcher.capture(source)["head"][s_layer]
    ld_target = patcher.run(target)
    attn_in = _attention_input(patcher.layers[r_layer])
    rows = patcher._rows
    seen: list[torch.Tensor] = []

    def record(_m: nn.Module, args: tuple, kwargs: dict) -> None:
        seen.append((args[0] if args else kwargs["hidden_states"]).detach().clone())

    handle = attn_in.register_forward_pre_hook(record, with_kwargs=True)
    try:
        with patcher.patch("head", s_layer, src, head=s_head):
            patcher.run(target)
    finally:
        handle.remove()
    receiver_in = torch.cat(seen)

    def replace_input(_m: nn.Module, args: tuple, kwargs: dict) -> tuple:
        value = receiver_in[rows.rows]
        if args:
            return (value, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": value}

    handle = attn_in.register_forward_pre_hook(replace_input, with_kwargs=True)
    try:
        context = patcher.capture(target)["head"][r_layer]
    finally:
        handle.remove()
    with patcher.patch("head", r_layer, context, head=r_head):
        return patcher.run(target) - ld_target


# ---------------------------------------------------------------- intervals
def effect_intervals(effects: np.ndarray, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0
                     ) -> dict[str, np.ndarray]:
    """Mean and percentile bootstrap interval (pairs resampled, ``scipy.stats.bootstrap``) of the last
    axis of ``effects`` for every component at once."""
    arr = np.asarray(effects, dtype=np.float64)
    mean = arr.mean(axis=-1) if arr.shape[-1] else np.full(arr.shape[:-1], np.nan)
    if arr.shape[-1] < 2 or n_boot <= 0:
        return {"mean": mean, "ci_low": mean.copy(), "ci_high": mean.copy()}
    flat = arr.reshape(-1, arr.shape[-1])
    ok = np.isfinite(flat).all(axis=1)
    low, high = np.full(len(flat), np.nan), np.full(len(flat), np.nan)
    if ok.any():
        res = stats.bootstrap((flat[ok],), np.mean, axis=-1, vectorized=True, n_resamples=n_boot,
                              confidence_level=confidence, method="percentile", random_state=seed)
        low[ok], high[ok] = res.confidence_interval.low, res.confidence_interval.high
        # a component whose effect is the same on every pair has a degenerate interval: the mean itself
        flat_mean = flat[ok].mean(axis=-1)
        low[ok] = np.where(np.isfinite(low[ok]), low[ok], flat_mean)
        high[ok] = np.where(np.isfinite(high[ok]), high[ok], flat_mean)
    shape = arr.shape[:-1]
    return {"mean": mean, "ci_low": low.reshape(shape), "ci_high": high.reshape(shape)}


def summarize(result: dict[str, Any], n_boot: int = 1000, confidence: float = 0.95, top: int = 5
              ) -> dict[str, Any]:
    """Means and bootstrap intervals of every component, the gap, and the ``top`` components by mean
    effect (residual-stream sites left out of the ranking: patching a whole segment moves everything)."""
    gap = np.asarray(result["ld_source"]) - np.asarray(result["ld_target"])
    out: dict[str, Any] = {"n_pairs": len(gap)}
    g = effect_intervals(gap[None, :], n_boot, confidence)
    out["gap"] = {k: float(v[0]) for k, v in g.items()}
    out["ld_source"] = float(np.mean(result["ld_source"])) if len(gap) else None
    out["ld_target"] = float(np.mean(result["ld_target"])) if len(gap) else None
    comps = []
    for kind in ("head", "mlp", "resid"):
        if kind not in result:
            continue
        iv = effect_intervals(np.asarray(result[kind]), n_boot, confidence)
        out[kind] = {k: v.tolist() for k, v in iv.items()}
    for name, kind, index in component_names(result):
        iv = out[kind]
        m, lo, hi = (float(np.asarray(iv[k])[index]) for k in ("mean", "ci_low", "ci_high"))
        comps.append({"component": name, "kind": kind, "mean": m, "ci_low": lo, "ci_high": hi,
                      "share_of_gap": m / out["gap"]["mean"] if out["gap"]["mean"] else None})
    ranked = sorted((c for c in comps if c["kind"] != "resid"), key=lambda c: -c["mean"])
    out["top"] = ranked[:top]
    return out


def per_pair(result: dict[str, Any], digits: int = 5) -> dict[str, Any]:
    """The per-pair arrays as JSON-ready lists (rounded), for intervals over seeds later."""
    return {k: np.round(np.asarray(v, dtype=np.float64), digits).tolist() for k, v in result.items()
            if isinstance(v, np.ndarray)}
