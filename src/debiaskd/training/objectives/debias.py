"""The debiasing objectives: each turns a step into the task loss (math in :mod:`debiaskd.training.losses`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from debiaskd.core.objectives import register
from debiaskd.training import losses
from debiaskd.training.objectives.base import DebiasObjective, Setup, Step


@register("erm")
class ERM(DebiasObjective):
    def task_loss(self, step: Step) -> Tensor:
        return losses.erm_loss(step.logits, step.labels)


@register("product_of_experts")
class ProductOfExperts(DebiasObjective):
    def task_loss(self, step: Step) -> Tensor:
        return losses.poe_loss(step.logits, step.labels, step.bias_probs().clamp_min(losses.EPS).log())


@register("reweight")
class Reweight(DebiasObjective):
    """Weights ``1 − p_bias(gold)``; without bias-model predictions, inverse group frequencies."""

    def __init__(self) -> None:
        self.group_weights: Tensor | None = None

    def setup(self, ctx: Setup) -> None:
        if ctx.rows.bias_probs is None:
            codes = ctx.rows.group_codes.cpu().numpy()
            counts = np.bincount(codes)
            self.group_weights = torch.as_tensor(1.0 / counts[codes], dtype=torch.float32, device=ctx.device)

    def task_loss(self, step: Step) -> Tensor:
        if self.group_weights is not None:
            return losses.erm_loss(step.logits, step.labels, self.group_weights[step.idx])
        return losses.erm_loss(step.logits, step.labels, losses.reweight_weights(step.bias_probs(), step.labels))


@register("conf_reg")
class ConfReg(DebiasObjective):
    def task_loss(self, step: Step) -> Tensor:
        return losses.conf_reg_loss(step.logits, step.labels, step.reference_probs(), step.bias_probs())


@register("group_dro")
class GroupDRO(DebiasObjective):
    """Online GroupDRO; the running group weights are kept across steps and in checkpoints."""

    def __init__(self, group_dro_step: float = 0.01) -> None:
        self.step_size = group_dro_step
        self.weights: Tensor | None = None

    def setup(self, ctx: Setup) -> None:
        self.weights = torch.full((ctx.rows.n_groups,), 1.0 / ctx.rows.n_groups)

    def task_loss(self, step: Step) -> Tensor:
        loss, self.weights = losses.group_dro_loss(step.logits, step.labels, step.group_codes(), self.weights,
                                                   self.step_size)
        return loss

    def state(self) -> dict[str, Any]:
        return {"group_weights": self.weights.cpu()}

    def load_state(self, state: Mapping[str, Any], device: torch.device) -> None:
        if state.get("group_weights") is not None:
            self.weights = state["group_weights"].to(device)
