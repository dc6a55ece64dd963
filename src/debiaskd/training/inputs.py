"""The task-specific input side of training: encoded splits, the model a variant trains, its forward call.

:class:`Inputs` encodes a split once (NLI token ids, or images as one tensor) and cuts batches of it;
:func:`build_for` builds the model a variant trains; :func:`model_logits` calls a model on a collated
batch. These are the only places of the training package that tell NLI from vision.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pandas as pd
import torch
from torch import nn

from debiaskd.core.config import NLIModelConfig, VisionModelConfig
from debiaskd.core.errors import DebiaskdError
from debiaskd.data.schema import NLI_LABELS, ImageSplit
from debiaskd.training.batching import (
    collate_images,
    collate_nli,
    encode_nli,
    image_batches,
    images_to_tensor,
    length_grouped_batches,
)
from debiaskd.training.models import (
    LoadedModel,
    build_nli_student,
    build_nli_teacher,
    build_vision_model,
    init_from_teacher,
    init_vision_from_teacher,
    vision_arch,
)


class Inputs:
    """A split ready for batching: encoded once, labels as indices (−1 where unknown)."""

    def __init__(self, task: str, data: pd.DataFrame | ImageSplit, label_names: list[str],
                 tokenizer: Any = None, max_length: int = 64) -> None:
        self.task = task
        frame = data.frame if isinstance(data, ImageSplit) else data
        self.frame = frame
        self.n = len(frame)
        if task == "vision":
            if not isinstance(data, ImageSplit):
                raise DebiaskdError("vision training needs ImageSplit inputs", rule="task")
            self.images = images_to_tensor(data)
            self.labels = torch.tensor(frame["label"].astype(int).to_numpy(copy=True), dtype=torch.long)
            self.lengths = None
            self.pad_id = 0
        else:
            if tokenizer is None:
                raise DebiaskdError("NLI inputs need a tokenizer", rule="task")
            self.encoded = encode_nli(tokenizer, frame, max_length)
            self.lengths = self.encoded.lengths
            self.pad_id = int(tokenizer.pad_token_id or 0)
            lookup = {name: i for i, name in enumerate(label_names)}
            labels = [lookup.get(str(v), -1) for v in frame["label"].tolist()] if "label" in frame else [-1] * self.n
            self.labels = torch.as_tensor(labels, dtype=torch.long)

    def batches(self, batch_size: int, seed: int, shuffle: bool = True) -> list[list[int]]:
        if self.task == "vision":
            return image_batches(self.n, batch_size, seed, shuffle)
        return length_grouped_batches(self.lengths, batch_size, seed, shuffle)

    def collate(self, idx: list[int]) -> dict[str, torch.Tensor]:
        if self.task == "vision":
            return collate_images(self.images, idx)
        return collate_nli(self.encoded, idx, self.pad_id)

    def digest(self) -> str:
        h = hashlib.sha256(self.labels.numpy().tobytes())
        h.update(self.images.numpy().tobytes() if self.task == "vision" else self.lengths.tobytes())
        return h.hexdigest()[:16]


def label_names_of(data: pd.DataFrame | ImageSplit) -> list[str]:
    """The class names a model trained on ``data`` predicts (an image split's classes, else the NLI labels)."""
    return [str(c) for c in data.class_names] if isinstance(data, ImageSplit) else list(NLI_LABELS)


def model_logits(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The logits of an HF classifier or a vision model on a collated batch."""
    if "pixel_values" in batch:
        return model(batch["pixel_values"])
    return model(**batch).logits


def build_for(task: str, role: str, nli: NLIModelConfig, vision: VisionModelConfig, seed: int, *,
              init_from: LoadedModel | None = None, teacher_model: nn.Module | None = None,
              layers: int | None = None, layer_map: list[int] | None = None, num_classes: int = 10,
              tokenizer: Any = None):
    """The model a variant of ``role`` trains, its tokenizer (NLI) and metadata about how it was built."""
    meta: dict[str, Any] = {}
    if task == "vision":
        arch, width = vision_arch(vision, role)
        model = build_vision_model(arch, width, num_classes, seed)
        meta.update(arch=arch, width=width, num_classes=num_classes)
        if init_from is not None:
            meta["init_copied"] = init_vision_from_teacher(model, init_from.model)
        return model, None, meta
    tokenizer = getattr(init_from, "tokenizer", None) or tokenizer
    if role == "teacher":
        model, tokenizer = build_nli_teacher(nli, seed)
    else:
        base = init_from.model if init_from is not None else teacher_model
        if base is None or tokenizer is None:
            ref, ref_tok = build_nli_teacher(nli, seed)
            base = base or ref
            tokenizer = tokenizer or ref_tok
        model = build_nli_student(base.config, nli, seed, layers)
        if init_from is not None:
            meta["layer_map"] = init_from_teacher(model, init_from.model, layer_map)
    meta["layers"] = int(model.config.num_hidden_layers)
    meta["hidden_size"] = int(model.config.hidden_size)
    return model, tokenizer, meta


def iter_batches(inputs: Inputs, batch_size: int) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
    """Inference batches (length-sorted) with their row indices, for evaluation code."""
    for idx in inputs.batches(batch_size, 0, shuffle=False):
        yield idx, inputs.collate(idx)
