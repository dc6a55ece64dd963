"""Training objectives as small pure functions of tensors.

Debiasing: ERM, product-of-experts (Clark et al. 2019; He et al. 2019), example reweighting
(1 − p_bias(gold)), confidence regularisation (Utama et al. 2020), GroupDRO (Sagawa et al.
2020, online group weights). Distillation: logit KD (Hinton et al. 2015), hidden-state MSE and
attention-map KL between mapped layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from debiaskd.core.errors import DebiaskdError

DEBIAS_METHODS: tuple[str, ...] = ("erm", "product_of_experts", "reweight", "conf_reg", "group_dro")
EPS = 1e-12


def erm_loss(logits: Tensor, labels: Tensor, weights: Tensor | None = None) -> Tensor:
    """Cross-entropy; with ``weights``, the weighted mean ``Σ wᵢ·ceᵢ / Σ wᵢ``."""
    if weights is None:
        return F.cross_entropy(logits.float(), labels)
    ce = F.cross_entropy(logits.float(), labels, reduction="none")
    weights = weights.to(ce.dtype)
    return (ce * weights).sum() / weights.sum().clamp_min(EPS)


def poe_loss(logits: Tensor, labels: Tensor, bias_log_probs: Tensor) -> Tensor:
    """Product of experts: CE of ``softmax(log_softmax(logits) + log p_bias)``."""
    combined = F.log_softmax(logits.float(), dim=-1) + bias_log_probs.to(torch.float32)
    return F.cross_entropy(combined, labels)


def reweight_weights(bias_probs: Tensor, labels: Tensor) -> Tensor:
    """Example weights ``1 − p_bias(gold)``: examples the bias gets right count less."""
    return 1.0 - bias_probs.gather(1, labels.view(-1, 1)).squeeze(1)


def conf_reg_loss(logits: Tensor, labels: Tensor, teacher_probs: Tensor, bias_probs: Tensor) -> Tensor:
    """Confidence regularisation: CE against the teacher's distribution scaled by the bias.

    ``s = teacher^(1 − p_bias(gold))`` renormalised, loss ``−Σ s·log softmax(logits)`` (mean over
    the batch). ``labels`` only pick ``p_bias(gold)``.
    """
    exponent = (1.0 - bias_probs.gather(1, labels.view(-1, 1))).to(torch.float32)
    scaled = teacher_probs.to(torch.float32).clamp_min(EPS) ** exponent
    scaled = scaled / scaled.sum(dim=-1, keepdim=True)
    return -(scaled * F.log_softmax(logits.float(), dim=-1)).sum(dim=-1).mean()


def group_dro_loss(
    logits: Tensor, labels: Tensor, groups: Tensor, group_weights: Tensor, step: float
) -> tuple[Tensor, Tensor]:
    """Online GroupDRO: ``qₘ ← qₘ·exp(step·Lₘ)`` for groups in the batch, renormalise, ``Σ qₘ·Lₘ``.

    ``groups`` are integer ids in ``[0, len(group_weights))``. Returns the loss and the new
    (detached) weights.
    """
    ce = F.cross_entropy(logits.float(), labels, reduction="none")
    n_groups = group_weights.numel()
    one_hot = F.one_hot(groups, n_groups).to(ce.dtype)  # (B, G)
    counts = one_hot.sum(0)
    group_losses = (one_hot * ce.unsqueeze(1)).sum(0) / counts.clamp_min(1.0)
    present = counts > 0
    weights = group_weights.to(ce.device, ce.dtype)
    weights = torch.where(present, weights * torch.exp(step * group_losses.detach()), weights)
    weights = weights / weights.sum()
    return (weights * group_losses).sum(), weights.detach()


def kd_loss(
    student_logits: Tensor, teacher_logits: Tensor, labels: Tensor, alpha: float, temperature: float,
    task_loss: Tensor | None = None,
) -> Tensor:
    """``α·T²·KL(softmax(t/T) ‖ softmax(s/T))`` (batchmean) ``+ (1−α)·task``.

    ``task`` is cross-entropy with ``labels`` unless ``task_loss`` (a debiasing loss) is given.
    """
    t = temperature
    log_p_s = F.log_softmax(student_logits.float() / t, dim=-1)
    log_p_t = F.log_softmax(teacher_logits.float() / t, dim=-1)
    kl = F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)
    task = F.cross_entropy(student_logits.float(), labels) if task_loss is None else task_loss
    return alpha * t * t * kl + (1.0 - alpha) * task


def _masked_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """Mean over (batch, position) of ``values`` of shape ``(B, S)``, ignoring padding."""
    if mask is None:
        return values.mean()
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def hidden_loss(
    student_hidden: Sequence[Tensor], teacher_hidden: Sequence[Tensor], layer_map: Sequence[int],
    proj: nn.Module | None = None, mask: Tensor | None = None,
) -> Tensor:
    """MSE between student layer ``i`` and teacher layer ``layer_map[i]`` (mean over layers).

    Both sequences are HF ``hidden_states`` (embeddings first, then one entry per layer);
    ``proj`` maps the student width onto the teacher's when they differ.
    """
    total = student_hidden[0].new_zeros((), dtype=torch.float32)
    for i, t_layer in enumerate(layer_map):
        s = student_hidden[i + 1].float()
        if proj is not None:
            s = proj(s)
        t = teacher_hidden[t_layer + 1].float()
        total = total + _masked_mean(((s - t) ** 2).mean(-1), mask)
    return total / max(len(layer_map), 1)


def attention_loss(
    student_attn: Sequence[Tensor], teacher_attn: Sequence[Tensor], layer_map: Sequence[int],
    mask: Tensor | None = None,
) -> Tensor:
    """KL(teacher ‖ student) between attention distributions of mapped layers.

    Maps are ``(B, H, S, S)``; with different head counts both are averaged over heads.
    The KL is summed over keys and averaged over batch, heads and (unpadded) query positions.
    """
    total = student_attn[0].new_zeros((), dtype=torch.float32)
    for i, t_layer in enumerate(layer_map):
        s, t = student_attn[i].float(), teacher_attn[t_layer].float()
        if s.shape[1] != t.shape[1]:
            s, t = s.mean(1, keepdim=True), t.mean(1, keepdim=True)
        kl = (t * (t.clamp_min(EPS).log() - s.clamp_min(EPS).log())).sum(-1).mean(1)  # (B, S)
        total = total + _masked_mean(kl, mask)
    return total / max(len(layer_map), 1)


class GroupDROState:
    """The running group weights of GroupDRO (kept across steps and saved in checkpoints)."""

    def __init__(self, n_groups: int, step: float) -> None:
        self.weights = torch.full((n_groups,), 1.0 / n_groups)
        self.step = step


def debias_loss(method: str, logits: Tensor, labels: Tensor, batch: dict[str, Any]) -> Tensor:
    """The task loss of ``method``.

    ``batch`` holds what the method needs: ``bias_probs`` (PoE, reweight, conf_reg),
    ``teacher_probs`` (conf_reg), ``groups`` and ``group_dro`` (a :class:`GroupDROState`,
    updated in place) for GroupDRO.
    """
    if method == "erm":
        return erm_loss(logits, labels)
    if method == "product_of_experts":
        return poe_loss(logits, labels, batch["bias_probs"].clamp_min(EPS).log())
    if method == "reweight":
        return erm_loss(logits, labels, reweight_weights(batch["bias_probs"], labels))
    if method == "conf_reg":
        return conf_reg_loss(logits, labels, batch["teacher_probs"], batch["bias_probs"])
    if method == "group_dro":
        state: GroupDROState = batch["group_dro"]
        loss, state.weights = group_dro_loss(logits, labels, batch["groups"], state.weights, state.step)
        return loss
    raise DebiaskdError(f"unknown debiasing method '{method}'; known: {list(DEBIAS_METHODS)}", rule="method")
