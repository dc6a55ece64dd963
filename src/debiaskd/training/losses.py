"""The math of the training objectives as small pure functions of tensors.

Debiasing: ERM, product-of-experts (Clark et al. 2019; He et al. 2019), example reweighting
(1 − p_bias(gold)), confidence regularisation (Utama et al. 2020), GroupDRO (Sagawa et al.
2020, online group weights). Distillation: logit KD (Hinton et al. 2015), hidden-state MSE and
attention-map KL between mapped layers. The objectives that use them, and what each needs, are
registered in :mod:`debiaskd.training.objectives`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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
    student: Sequence[Tensor], teacher: Sequence[Tensor], proj: nn.Module | None = None, mask: Tensor | None = None,
) -> Tensor:
    """MSE between paired layer outputs ``student[i]`` and ``teacher[i]`` (mean over pairs).

    ``proj`` maps the student width onto the teacher's when they differ.
    """
    total = student[0].new_zeros((), dtype=torch.float32)
    for s, t in zip(student, teacher, strict=True):
        s = s.float()
        if proj is not None:
            s = proj(s)
        total = total + _masked_mean(((s - t.float()) ** 2).mean(-1), mask)
    return total / max(len(student), 1)


def attention_loss(student: Sequence[Tensor], teacher: Sequence[Tensor], mask: Tensor | None = None) -> Tensor:
    """KL(teacher ‖ student) between paired attention distributions ``student[i]`` and ``teacher[i]``.

    Maps are ``(B, H, S, S)``; with different head counts both are averaged over heads.
    The KL is summed over keys and averaged over batch, heads and (unpadded) query positions.
    """
    total = student[0].new_zeros((), dtype=torch.float32)
    for s, t in zip(student, teacher, strict=True):
        s, t = s.float(), t.float()
        if s.shape[1] != t.shape[1]:
            s, t = s.mean(1, keepdim=True), t.mean(1, keepdim=True)
        kl = (t * (t.clamp_min(EPS).log() - s.clamp_min(EPS).log())).sum(-1).mean(1)  # (B, S)
        total = total + _masked_mean(kl, mask)
    return total / max(len(student), 1)
