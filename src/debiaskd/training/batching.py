"""Tokenise once, batch by length, pad per batch: the input side of training and evaluation.

NLI pairs are tokenised a single time (no padding) into :class:`EncodedNLI`; every epoch then
draws *length-grouped* batches (sorted inside mega-chunks of ~50 batches, batch order
shuffled) and :func:`collate_nli` pads each batch only to its own longest pair. Images are
converted to one float tensor once and sliced per batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from debiaskd.data.schema import ImageSplit

MEGA_BATCHES = 50


@dataclass
class EncodedNLI:
    """Token ids of each pair (unpadded) and their lengths."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    lengths: np.ndarray

    def __len__(self) -> int:
        return len(self.input_ids)


def encode_nli(tokenizer, df: pd.DataFrame, max_length: int) -> EncodedNLI:
    """Tokenise ``premise``/``hypothesis`` pairs once (truncated to ``max_length``, unpadded)."""
    premises = [str(x) for x in df["premise"].tolist()]
    hypotheses = [str(x) for x in df["hypothesis"].tolist()]
    if not premises:
        return EncodedNLI([], [], np.zeros(0, dtype=np.int64))
    enc = tokenizer(
        premises, hypotheses, truncation=True, max_length=max_length, padding=False,
        return_attention_mask=False,
    )
    ids = [list(x) for x in enc["input_ids"]]
    types = enc.get("token_type_ids")
    types = [list(x) for x in types] if types is not None else None
    return EncodedNLI(ids, types, np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids)))


def length_grouped_batches(lengths: np.ndarray, batch_size: int, seed: int, shuffle: bool = True) -> list[list[int]]:
    """Index batches of similar length.

    ``shuffle=True`` (training): permute with ``seed``, sort by length inside mega-chunks of
    ``MEGA_BATCHES`` batches, cut into batches, shuffle the batch order. ``shuffle=False``
    (inference): sort everything by length (longest first) — callers scatter outputs back by index.
    """
    lengths = np.asarray(lengths)
    n = len(lengths)
    if n == 0:
        return []
    if not shuffle:
        order = np.argsort(-lengths, kind="stable")
        return [order[i:i + batch_size].tolist() for i in range(0, n, batch_size)]
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    mega = batch_size * MEGA_BATCHES
    batches: list[list[int]] = []
    for start in range(0, n, mega):
        chunk = perm[start:start + mega]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[i:i + batch_size].tolist() for i in range(0, len(chunk), batch_size))
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


def collate_nli(encoded: EncodedNLI, idx: list[int] | np.ndarray, pad_id: int) -> dict[str, torch.Tensor]:
    """Pad the pairs ``idx`` to the longest among them: ``input_ids``, ``attention_mask`` (+ types)."""
    idx = list(idx)
    width = int(max(encoded.lengths[i] for i in idx))
    ids = np.full((len(idx), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(idx), width), dtype=np.int64)
    types = np.zeros((len(idx), width), dtype=np.int64) if encoded.token_type_ids is not None else None
    for row, i in enumerate(idx):
        n = int(encoded.lengths[i])
        ids[row, :n] = encoded.input_ids[i]
        mask[row, :n] = 1
        if types is not None:
            types[row, :n] = encoded.token_type_ids[i]
    batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
    if types is not None:
        batch["token_type_ids"] = torch.from_numpy(types)
    return batch


# ------------------------------------------------------------------ vision
def images_to_tensor(split: ImageSplit) -> torch.Tensor:
    """uint8 ``(N, C, H, W)`` → float32 in [0, 1], once per split."""
    return torch.from_numpy(np.ascontiguousarray(split.images)).float().div_(255.0)


def image_batches(n: int, batch_size: int, seed: int, shuffle: bool = True) -> list[list[int]]:
    """Seeded random batches (images all have the same size, so no length grouping)."""
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    return [order[i:i + batch_size].tolist() for i in range(0, n, batch_size)]


def collate_images(images: torch.Tensor, idx: list[int] | np.ndarray) -> dict[str, torch.Tensor]:
    return {"pixel_values": images[torch.as_tensor(list(idx), dtype=torch.long)]}
