"""What an objective sees: the rows prepared for it, one micro-batch (:class:`Step`), its setup.

A debiasing objective turns a step into the task loss (:meth:`DebiasObjective.task_loss`); each
distillation objective then adds its term to the running loss (:meth:`DistillObjective.add`).
The teacher's forward pass on a batch runs at most once, when the first objective asks for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from debiaskd.core.objectives import Declared
from debiaskd.training.inputs import model_logits


@dataclass
class Rows:
    """Per-training-row data the objectives declared they need (device tensors indexed by row)."""

    bias_probs: Tensor | None = None  # the bias-only model's probabilities, softened by the bias temperature
    group_codes: Tensor | None = None
    n_groups: int = 0
    reference_probs: Tensor | None = None  # softmax of the ERM reference's logits
    teacher_logits: Tensor | None = None  # cached KD targets
    teacher: nn.Module | None = None  # the teacher for online passes (eval mode, on the device)


class Step:
    """One micro-batch: the student's logits, the labels, and the rows' prepared data by index."""

    def __init__(self, logits: Tensor, labels: Tensor, idx: Tensor, batch: dict[str, Tensor], rows: Rows) -> None:
        self.logits, self.labels, self.idx, self.batch, self.rows = logits, labels, idx, batch, rows
        self._teacher_logits: Tensor | None = None

    @property
    def mask(self) -> Tensor | None:
        return self.batch.get("attention_mask")

    def bias_probs(self) -> Tensor:
        return self.rows.bias_probs[self.idx]

    def group_codes(self) -> Tensor:
        return self.rows.group_codes[self.idx]

    def reference_probs(self) -> Tensor:
        return self.rows.reference_probs[self.idx]

    def teacher_pass(self) -> Tensor:
        """The teacher's logits on this batch (one forward pass, without gradients; hooks on it fire)."""
        if self._teacher_logits is None:
            with torch.no_grad():
                self._teacher_logits = model_logits(self.rows.teacher, self.batch)
        return self._teacher_logits

    def teacher_logits(self) -> Tensor:
        """KD targets: the cached logits of these rows, else the teacher's pass on the batch."""
        if self.rows.teacher_logits is not None:
            return self.rows.teacher_logits[self.idx]
        return self.teacher_pass()


@dataclass
class Setup:
    """What an objective may bind to before training: the models, the device, the seed, the rows."""

    student: nn.Module
    teacher: nn.Module | None
    device: torch.device
    seed: int
    rows: Rows
    layer_map: Callable[[], list[int]]  # student layer i ↔ teacher layer layer_map()[i]


class Objective:
    """Lifecycle shared by all objectives (each hook a no-op unless the objective needs it)."""

    declared: ClassVar[Declared]  # set by ``@register``

    def setup(self, ctx: Setup) -> None:
        """Bind to the models and rows of one training run (hooks, extra parameters, running state)."""

    def parameters(self) -> list[tuple[str, nn.Parameter]]:
        """Trainable parameters besides the student's (optimised with it)."""
        return []

    def state(self) -> dict[str, Any]:
        """Checkpoint entries that, with the model's, decide the rest of the run."""
        return {}

    def load_state(self, state: Mapping[str, Any], device: torch.device) -> None:
        """Restore what :meth:`state` saved (from a whole checkpoint's entries)."""

    def close(self) -> None:
        """Release what :meth:`setup` attached (forward hooks)."""


class DebiasObjective(Objective):
    def task_loss(self, step: Step) -> Tensor:
        raise NotImplementedError


class DistillObjective(Objective):
    #: the attention implementation the models need for this objective (None: any)
    attn_implementation: ClassVar[str | None] = None

    def add(self, loss: Tensor, step: Step) -> Tensor:
        """The running loss with this objective's term."""
        raise NotImplementedError
