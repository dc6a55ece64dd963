"""The distillation objectives: logit KD, and hidden-state / attention transfer through forward hooks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from debiaskd.core.objectives import register
from debiaskd.training import losses
from debiaskd.training.models import encoder_layers
from debiaskd.training.objectives.base import DistillObjective, Setup, Step
from debiaskd.training.objectives.taps import LayerTaps


@register("logit_kd")
class LogitKD(DistillObjective):
    """``α·T²·KL(teacher ‖ student)`` at temperature ``T`` ``+ (1 − α)·`` the task loss."""

    def __init__(self, alpha: float = 0.5, temperature: float = 2.0) -> None:
        self.alpha, self.temperature = alpha, temperature

    def add(self, loss: Tensor, step: Step) -> Tensor:
        return losses.kd_loss(step.logits, step.teacher_logits().float(), step.labels, self.alpha, self.temperature,
                              task_loss=loss)


class _LayerTransfer(DistillObjective):
    """Taps student layer ``i`` and teacher layer ``layer_map[i]`` (transformer encoder layers)."""

    def __init__(self, weight: float) -> None:
        self.weight = weight
        self.taps = LayerTaps()
        self.keys: list[tuple[str, int]] = []

    def module(self, layer: nn.Module) -> nn.Module:
        return layer

    def pick(self, output: Any) -> Tensor:
        return output

    def setup(self, ctx: Setup) -> None:
        student, teacher = encoder_layers(ctx.student, "distillation"), encoder_layers(ctx.teacher, "distillation")
        for i, t in enumerate(ctx.layer_map()):
            self.taps.add(("student", i), self.module(student[i]), self.pick)
            self.taps.add(("teacher", i), self.module(teacher[t]), self.pick)
            self.keys.append(("student", i))

    def layers(self, step: Step) -> tuple[list[Tensor], list[Tensor]]:
        """The tapped (student, teacher) outputs of this step, paired by the layer map."""
        step.teacher_pass()
        return self.taps.take(self.keys), self.taps.take([("teacher", i) for _, i in self.keys])

    def close(self) -> None:
        self.taps.remove()


@register("hidden_mse")
class HiddenMSE(_LayerTransfer):
    """MSE between mapped layer outputs (a seeded linear map when the student is narrower)."""

    def __init__(self, hidden_weight: float) -> None:
        super().__init__(hidden_weight)
        self.proj: nn.Linear | None = None

    def setup(self, ctx: Setup) -> None:
        super().setup(ctx)
        s_w, t_w = ctx.student.config.hidden_size, ctx.teacher.config.hidden_size
        if s_w != t_w:
            torch.manual_seed(ctx.seed)
            self.proj = nn.Linear(s_w, t_w).to(ctx.device)

    def parameters(self) -> list[tuple[str, nn.Parameter]]:
        return list(self.proj.named_parameters(prefix="proj")) if self.proj is not None else []

    def add(self, loss: Tensor, step: Step) -> Tensor:
        student, teacher = self.layers(step)
        return loss + self.weight * losses.hidden_loss(student, teacher, self.proj, step.mask)

    def state(self) -> dict[str, Any]:
        if self.proj is None:
            return {}
        return {"proj": {k: v.detach().to("cpu", copy=True) for k, v in self.proj.state_dict().items()}}

    def load_state(self, state: Mapping[str, Any], device: torch.device) -> None:
        if self.proj is not None and state.get("proj") is not None:
            self.proj.load_state_dict(state["proj"])


@register("attention_kl")
class AttentionKL(_LayerTransfer):
    """KL(teacher ‖ student) between mapped attention maps (eager attention, so the maps exist)."""

    attn_implementation: ClassVar[str | None] = "eager"

    def __init__(self, attention_weight: float) -> None:
        super().__init__(attention_weight)

    def module(self, layer: nn.Module) -> nn.Module:
        return layer.attention.self  # the self-attention block, whose output is (context, attention probs)

    def pick(self, output: Any) -> Tensor:
        return output[1]

    def setup(self, ctx: Setup) -> None:
        for model in (ctx.teacher, ctx.student):
            model.set_attn_implementation(self.attn_implementation)
        super().setup(ctx)

    def add(self, loss: Tensor, step: Step) -> Tensor:
        student, teacher = self.layers(step)
        return loss + self.weight * losses.attention_loss(student, teacher, step.mask)
