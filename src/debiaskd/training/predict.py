"""Devices, autocast and inference over :class:`~debiaskd.training.inputs.Inputs` (logits, accuracy)."""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn

from debiaskd.core.errors import DebiaskdError
from debiaskd.training.inputs import Inputs, model_logits


def resolve_device(setting: str = "auto") -> torch.device:
    if setting == "cuda" and not torch.cuda.is_available():
        raise DebiaskdError("train.device is 'cuda' but no CUDA device is available", rule="device")
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA when ``enabled``; nothing elsewhere."""
    if device.type == "cuda" and enabled:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def predict_logits(model: nn.Module, inputs: Inputs, batch_size: int, device: torch.device | None = None,
                   bf16: bool = True) -> np.ndarray:
    """Logits for every row of ``inputs`` in order (inference mode, length-sorted batches)."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    out: np.ndarray | None = None
    with torch.inference_mode(), autocast(device, bf16):
        for idx in inputs.batches(batch_size, 0, shuffle=False):
            logits = model_logits(model, to_device(inputs.collate(idx), device)).float().cpu().numpy()
            if out is None:
                out = np.zeros((inputs.n, logits.shape[1]), dtype=np.float32)
            out[idx] = logits
    model.train(was_training)
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def accuracy(model: nn.Module, inputs: Inputs, batch_size: int, device: torch.device, bf16: bool = True) -> float:
    if inputs.n == 0:
        return float("nan")
    logits = predict_logits(model, inputs, batch_size, device, bf16)
    labels = inputs.labels.numpy()
    known = labels >= 0
    return float((logits.argmax(1)[known] == labels[known]).mean()) if known.any() else float("nan")
