"""Prepare, per training row, exactly what the objectives of a run declare they need.

:class:`Sources` is what a caller may hand to a run (bias-model predictions, the ERM reference's
logits, cached teacher logits, the teacher model); :func:`prepare_rows` turns the parts the
objectives' :class:`~debiaskd.training.objectives.Need` declarations ask for into device tensors
indexed by row, and refuses a run whose objectives need something missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from debiaskd.core.errors import DebiaskdError
from debiaskd.training.models import LoadedModel
from debiaskd.training.objectives import Declared, Need
from debiaskd.training.objectives.base import Rows


@dataclass
class Sources:
    """What a run may read besides the training split; each part is used only if an objective needs it."""

    bias_probs: np.ndarray | None = None  # the bias-only model's probabilities (else the split's column)
    reference_logits: np.ndarray | None = None  # an ERM-trained model's logits on the training rows
    teacher_logits: np.ndarray | None = None  # cached KD targets, rows aligned with the training split
    teacher: LoadedModel | nn.Module | None = None  # the teacher for online KD and layer transfer

    @property
    def teacher_net(self) -> nn.Module | None:
        return self.teacher.model if isinstance(self.teacher, LoadedModel) else self.teacher


def soften(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``p^(1/T)`` renormalised per row (T = 1 returns ``probs`` unchanged)."""
    if temperature == 1.0:
        return probs
    soft = np.power(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, None), 1.0 / temperature)
    return (soft / soft.sum(axis=1, keepdims=True)).astype(np.float32)


def bias_array(bias_probs: np.ndarray | None, frame: pd.DataFrame, n: int) -> np.ndarray | None:
    """The bias-model predictions given, else the frame's ``bias_probs`` column, else None."""
    if bias_probs is None and "bias_probs" in frame.columns:
        bias_probs = np.asarray([list(v) for v in frame["bias_probs"].tolist()], dtype=np.float32)
    if bias_probs is not None and len(bias_probs) != n:
        raise DebiaskdError(f"{len(bias_probs)} bias predictions for {n} training rows", rule="bias model")
    return bias_probs


def group_codes(frame: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    if "group" not in frame.columns:
        raise DebiaskdError("group-based debiasing needs a 'group' column", rule="training data")
    names = sorted(set(frame["group"].astype(str)))
    lookup = {g: i for i, g in enumerate(names)}
    return np.array(frame["group"].astype(str).map(lookup).to_numpy(), dtype=np.int64), names


class _Preparer:
    """Resolves each declared need once, in the order the objectives declare them."""

    def __init__(self, sources: Sources, frame: pd.DataFrame, n: int, device: torch.device,
                 bias_temperature: float, variant: str, teacher: str | None) -> None:
        self.sources, self.frame, self.n, self.device = sources, frame, n, device
        self.bias_temperature, self.variant, self.teacher = bias_temperature, variant, teacher
        self.rows = Rows()
        self._bias: tuple[np.ndarray | None] | None = None  # looked up once

    def bias(self) -> np.ndarray | None:
        if self._bias is None:
            self._bias = (bias_array(self.sources.bias_probs, self.frame, self.n),)
        return self._bias[0]

    def available(self, need: Need) -> bool:
        if need is Need.BIAS_PROBS:
            return self.bias() is not None
        if need is Need.REFERENCE_LOGITS:
            return self.sources.reference_logits is not None
        if need is Need.TEACHER_LOGITS:
            return self.sources.teacher_logits is not None or self.sources.teacher is not None
        if need is Need.TEACHER_LAYERS:
            return self.sources.teacher is not None
        return True  # group codes: a missing column is refused when they are prepared

    def missing(self, need: Need, objective: Declared) -> DebiaskdError:
        if need is Need.BIAS_PROBS:
            return DebiaskdError(f"method '{objective.name}' needs bias-model predictions for the training rows",
                                 rule="bias model")
        if need is Need.REFERENCE_LOGITS:
            return DebiaskdError(f"{objective.name} needs the logits of an ERM-trained model (the study's "
                                 "teacher_erm) on the training rows", rule=objective.name)
        if need is Need.TEACHER_LOGITS:
            return DebiaskdError(f"variant '{self.variant}' distils from '{self.teacher}': pass teacher logits or "
                                 "model", rule="distillation")
        return DebiaskdError("hidden/attention transfer needs the teacher model (online KD)", rule="distillation")

    def prepare(self, need: Need, objective: Declared) -> None:
        rows, device, n = self.rows, self.device, self.n
        if need is Need.BIAS_PROBS and rows.bias_probs is None:
            soft = soften(self.bias(), self.bias_temperature)
            rows.bias_probs = torch.as_tensor(soft, dtype=torch.float32, device=device)
        elif need is Need.GROUP_CODES and rows.group_codes is None:
            codes, names = group_codes(self.frame)
            rows.group_codes, rows.n_groups = torch.as_tensor(codes, dtype=torch.long, device=device), len(names)
        elif need is Need.REFERENCE_LOGITS and rows.reference_probs is None:
            reference = self.sources.reference_logits
            if len(reference) != n:
                raise DebiaskdError(f"{len(reference)} ERM reference logits for {n} training rows",
                                    rule=objective.name)
            logits = torch.as_tensor(np.asarray(reference), dtype=torch.float32, device=device)
            rows.reference_probs = torch.softmax(logits, -1)
        elif need is Need.TEACHER_LOGITS and rows.teacher_logits is None and self.sources.teacher_logits is not None:
            cached = self.sources.teacher_logits
            if len(cached) != n:
                raise DebiaskdError(f"{len(cached)} teacher logits for {n} training rows", rule="distillation")
            rows.teacher_logits = torch.as_tensor(np.asarray(cached), dtype=torch.float32, device=device)


def prepare_rows(objectives: Sequence[Declared], sources: Sources, frame: pd.DataFrame, n: int,
                 device: torch.device, *, bias_temperature: float = 1.0, variant: str = "",
                 teacher: str | None = None) -> Rows:
    """The :class:`Rows` that ``objectives`` (distillation first, then debiasing) declare they need.

    Each requirement is met by its first available alternative (``reweight``: the bias model's
    predictions, else group codes); a requirement with none is refused naming the objective.
    ``variant``/``teacher`` name the run in those messages. The teacher, when given to a run with
    distillation objectives, is moved to ``device`` in eval mode for online passes.
    """
    prep = _Preparer(sources, frame, n, device, bias_temperature, variant, teacher)
    for objective in objectives:
        for alternatives in objective.needs:
            chosen = next((need for need in alternatives if prep.available(need)), None)
            if chosen is None:
                raise prep.missing(alternatives[0], objective)
            prep.prepare(chosen, objective)
    if sources.teacher_net is not None and any(o.family == "distill" for o in objectives):
        prep.rows.teacher = sources.teacher_net.to(device).eval()
    return prep.rows

