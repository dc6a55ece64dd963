"""Encoded splits for training and inference: text pairs (NLI) or images (vision), one interface.

:class:`TextPairInputs` tokenises a split once and cuts length-grouped batches; :class:`ImageInputs`
stacks the images once. Each task (:mod:`debiaskd.tasks`) makes the one it needs
(``task.make_inputs``) and builds its models (``task.build_model``); the loop only batches, collates
and calls :func:`model_logits`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pandas as pd
import torch
from torch import nn

from debiaskd.core.errors import DebiaskdError
from debiaskd.data.schema import ImageSplit
from debiaskd.training.batching import (
    collate_images,
    collate_nli,
    encode_nli,
    image_batches,
    images_to_tensor,
    length_grouped_batches,
)


class Inputs:
    """A split ready for batching: encoded once, labels as indices (−1 where unknown)."""

    frame: pd.DataFrame
    n: int
    labels: torch.Tensor

    def batches(self, batch_size: int, seed: int, shuffle: bool = True) -> list[list[int]]:
        raise NotImplementedError

    def collate(self, idx: list[int]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _content(self) -> bytes:
        raise NotImplementedError

    def digest(self) -> str:
        h = hashlib.sha256(self.labels.numpy().tobytes())
        h.update(self._content())
        return h.hexdigest()[:16]


class TextPairInputs(Inputs):
    """Premise/hypothesis pairs tokenised once; batches grouped by length (dynamic padding)."""

    def __init__(self, frame: pd.DataFrame, label_names: list[str], tokenizer: Any, max_length: int = 64) -> None:
        if tokenizer is None:
            raise DebiaskdError("NLI inputs need a tokenizer", rule="task")
        self.frame, self.n = frame, len(frame)
        self.encoded = encode_nli(tokenizer, frame, max_length)
        self.lengths = self.encoded.lengths
        self.pad_id = int(tokenizer.pad_token_id or 0)
        lookup = {name: i for i, name in enumerate(label_names)}
        labels = [lookup.get(str(v), -1) for v in frame["label"].tolist()] if "label" in frame else [-1] * self.n
        self.labels = torch.as_tensor(labels, dtype=torch.long)

    def batches(self, batch_size: int, seed: int, shuffle: bool = True) -> list[list[int]]:
        return length_grouped_batches(self.lengths, batch_size, seed, shuffle)

    def collate(self, idx: list[int]) -> dict[str, torch.Tensor]:
        return collate_nli(self.encoded, idx, self.pad_id)

    def _content(self) -> bytes:
        return self.lengths.tobytes()


class ImageInputs(Inputs):
    """An image split as one tensor; batches of consecutive (or shuffled) rows."""

    def __init__(self, data: ImageSplit) -> None:
        if not isinstance(data, ImageSplit):
            raise DebiaskdError("vision training needs ImageSplit inputs", rule="task")
        self.frame, self.n = data.frame, len(data.frame)
        self.images = images_to_tensor(data)
        self.labels = torch.tensor(self.frame["label"].astype(int).to_numpy(copy=True), dtype=torch.long)

    def batches(self, batch_size: int, seed: int, shuffle: bool = True) -> list[list[int]]:
        return image_batches(self.n, batch_size, seed, shuffle)

    def collate(self, idx: list[int]) -> dict[str, torch.Tensor]:
        return collate_images(self.images, idx)

    def _content(self) -> bytes:
        return self.images.numpy().tobytes()


def model_logits(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The logits of an HF classifier or a vision model on a collated batch."""
    if "pixel_values" in batch:
        return model(batch["pixel_values"])
    return model(**batch).logits


def iter_batches(inputs: Inputs, batch_size: int) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
    """Inference batches (length-sorted) with their row indices, for evaluation code."""
    for idx in inputs.batches(batch_size, 0, shuffle=False):
        yield idx, inputs.collate(idx)
