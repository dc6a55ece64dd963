"""Batched prediction: tokenise once, sort by length, pad each batch to its own longest row.

``predict_proba`` is what evaluation and analysis call. ``fixed_padding=True`` pads every
batch to ``max_length`` in the data's order — the naive baseline the benchmark compares to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from debiaskd.data.schema import ImageSplit
from debiaskd.tasks import task_of
from debiaskd.training.models import LoadedModel


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass
class EncodedPairs:
    """Token ids per example (unpadded), with segment ids and, where known, sequence ids."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    pad_id: int

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.input_ids), dtype=np.int64, count=len(self.input_ids))


def encode_pairs(tokenizer: Any, frame: pd.DataFrame, max_length: int) -> EncodedPairs:
    """Tokenise premise/hypothesis pairs once, truncated to ``max_length``, without padding."""
    enc = tokenizer(
        frame["premise"].astype(str).tolist(), frame["hypothesis"].astype(str).tolist(),
        truncation=True, max_length=max_length, padding=False,
    )
    types = enc.get("token_type_ids")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return EncodedPairs(list(enc["input_ids"]), list(types) if types is not None else None, int(pad_id))


def collate(encoded: EncodedPairs, index: np.ndarray, pad_to: int | None = None) -> dict[str, torch.Tensor]:
    """Pad the rows ``index`` to their longest length (or ``pad_to``) → model inputs."""
    rows = [encoded.input_ids[i] for i in index]
    width = pad_to or max(len(r) for r in rows)
    ids = torch.full((len(rows), width), encoded.pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    types = torch.zeros((len(rows), width), dtype=torch.long) if encoded.token_type_ids is not None else None
    for j, i in enumerate(index):
        row = encoded.input_ids[i]
        ids[j, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[j, : len(row)] = 1
        if types is not None:
            types[j, : len(row)] = torch.tensor(encoded.token_type_ids[i], dtype=torch.long)
    batch = {"input_ids": ids, "attention_mask": mask}
    if types is not None:
        batch["token_type_ids"] = types
    return batch


def length_sorted_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Batches of row positions sorted by length (longest first), so padding is minimal."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i: i + batch_size] for i in range(0, len(order), batch_size)]


def logits_of(output: Any) -> torch.Tensor:
    """Logits from an HF output, a tuple or a plain tensor."""
    if isinstance(output, torch.Tensor):
        return output
    if hasattr(output, "logits"):
        return output.logits
    return output[0]


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 ``(N, C, H, W)`` → float in [0, 1] (the vision models' input scale)."""
    return torch.as_tensor(np.ascontiguousarray(images)).float().div_(255.0)


def predict_logits_encoded(
    model: nn.Module,
    encoded: EncodedPairs,
    batch_size: int = 128,
    device: str | torch.device = "auto",
    fixed_padding: int | None = None,
) -> np.ndarray:
    """Logits for pre-encoded pairs, in the original order.

    ``fixed_padding``: pad every batch to this width in data order (benchmark baseline).
    """
    dev = resolve_device(device) if isinstance(device, str) else device
    model.eval()
    n = len(encoded)
    if fixed_padding:
        batches = [np.arange(i, min(n, i + batch_size)) for i in range(0, n, batch_size)]
    else:
        batches = length_sorted_batches(encoded.lengths, batch_size)
    out: np.ndarray | None = None
    with torch.inference_mode():
        for index in batches:
            batch = {k: v.to(dev) for k, v in collate(encoded, index, fixed_padding).items()}
            logits = logits_of(model(**batch)).float().cpu().numpy()
            if out is None:
                out = np.zeros((n, logits.shape[1]), dtype=np.float32)
            out[index] = logits
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def predict_logits_images(
    model: nn.Module, images: np.ndarray, batch_size: int = 128, device: str | torch.device = "auto"
) -> np.ndarray:
    dev = resolve_device(device) if isinstance(device, str) else device
    model.eval()
    chunks = []
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            chunks.append(logits_of(model(images_to_tensor(images[i: i + batch_size]).to(dev))).float().cpu().numpy())
    return np.concatenate(chunks) if chunks else np.zeros((0, 0), dtype=np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def predict_proba(
    loaded: LoadedModel,
    data: pd.DataFrame | ImageSplit,
    batch_size: int = 128,
    max_length: int = 64,
    device: str = "auto",
    fixed_padding: bool = False,
) -> np.ndarray:
    """Class probabilities ``(N, num_labels)`` in the data's row order: images scaled to [0, 1] for an
    image split, text pairs tokenised once with dynamic padding for an NLI frame."""
    return PREDICTORS[task_of(data).name](loaded, data, batch_size, max_length, device, fixed_padding)


def predict_image_proba(loaded: LoadedModel, data: ImageSplit, batch_size: int = 128, max_length: int = 64,
                        device: str = "auto", fixed_padding: bool = False) -> np.ndarray:
    """Vision: images scaled to [0, 1], in batches (``max_length`` and ``fixed_padding`` concern text only)."""
    dev = resolve_device(device)
    model = loaded.model.to(dev)
    return softmax(predict_logits_images(model, data.images, batch_size, dev))


def predict_pair_proba(loaded: LoadedModel, data: pd.DataFrame, batch_size: int = 128, max_length: int = 64,
                       device: str = "auto", fixed_padding: bool = False) -> np.ndarray:
    """NLI: tokenise once, length-sorted batches, dynamic padding, ``torch.inference_mode``.
    ``fixed_padding=True`` pads every batch to ``max_length`` in data order (baseline only)."""
    dev = resolve_device(device)
    model = loaded.model.to(dev)
    if len(data) == 0:
        return np.zeros((0, len(loaded.label_names)))
    if loaded.tokenizer is None:
        raise ValueError("an NLI model needs a tokenizer")
    encoded = encode_pairs(loaded.tokenizer, data, max_length)
    logits = predict_logits_encoded(model, encoded, batch_size, dev, max_length if fixed_padding else None)
    return softmax(logits)


#: how each task's model predicts a split, by task name (a registry: a new task adds its predictor here)
PREDICTORS = {"nli": predict_pair_proba, "vision": predict_image_proba}
