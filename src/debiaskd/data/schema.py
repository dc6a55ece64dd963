"""Typed records shared by every loader, generator, validator and model.

A split is a :class:`pandas.DataFrame` with the columns below (NLI) or an
:class:`ImageSplit` (vision: a uint8 image array plus a frame of the same columns).
Group names read ``<bias type>/<gold label>`` for NLI (``lexical_overlap/non-entailment``)
and ``<label>/<colour>`` for vision (``3/red``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

SCHEMA_VERSION = 1

NLI_LABELS: tuple[str, ...] = ("entailment", "neutral", "contradiction")
TWO_WAY_LABELS: tuple[str, ...] = ("entailment", "non-entailment")
HANS_HEURISTICS: tuple[str, ...] = ("lexical_overlap", "subsequence", "constituent")
#: bias types of the embedded benchmark: the three HANS heuristics plus the negation cue
BIAS_TYPES: tuple[str, ...] = (*HANS_HEURISTICS, "negation")
NO_HEURISTIC = "none"

#: columns every NLI split carries, in this order
NLI_COLUMNS: tuple[str, ...] = (
    "pair_id",      # str, unique within a data set
    "premise",      # str
    "hypothesis",   # str
    "label",        # one of NLI_LABELS, or of TWO_WAY_LABELS for challenge data
    "heuristic",    # one of BIAS_TYPES or "none": which shortcut the pair exhibits
    "subcase",      # str, HANS subcase name or "" when none
    "template",     # str, generator template or "" when none
    "bias_aligned",  # bool: does the shortcut predict the gold label?
    "group",        # str: "<heuristic>/<label>"
)

#: optional columns only the embedded benchmark carries: ``construction`` (str, the template
#: family of a pair: the challenge subcase, the training recipe ``template/kind``, or the
#: augmentation recipe) and, in challenge splits, ``construction_seen`` (bool: a family of the
#: same shape may occur in training or augmentation). Data without them (HANS, MultiNLI …)
#: counts as wholly held out / unmarked.
CONSTRUCTION_COLUMNS: tuple[str, ...] = ("construction", "construction_seen")

#: the HANS tab-separated layout (the challenge split is written in it)
HANS_COLUMNS: tuple[str, ...] = (
    "gold_label", "sentence1_binary_parse", "sentence2_binary_parse", "sentence1_parse",
    "sentence2_parse", "sentence1", "sentence2", "pairID", "heuristic", "subcase", "template",
)

VISION_COLUMNS: tuple[str, ...] = ("image_id", "label", "color", "bias_aligned", "group")
COLOR_NAMES: tuple[str, ...] = (
    "red", "green", "blue", "yellow", "magenta", "cyan", "orange", "purple", "lime", "pink",
)
#: RGB of each colour, in [0, 1]
COLOR_RGB: tuple[tuple[float, float, float], ...] = (
    (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (1.0, 1.0, 0.0), (1.0, 0.0, 1.0),
    (0.0, 1.0, 1.0), (1.0, 0.5, 0.0), (0.5, 0.0, 1.0), (0.5, 1.0, 0.0), (1.0, 0.5, 0.75),
)
WATERBIRDS_PLACES: tuple[str, ...] = ("land", "water")

SPLITS: tuple[str, ...] = ("train", "validation", "test", "challenge")
#: splits a dataset folder may hold beyond :data:`SPLITS` (the embedded benchmark's
#: ``challenge_dev``: for choices and early stopping, disjoint in constructions from ``challenge``)
EXTRA_SPLITS: tuple[str, ...] = ("challenge_dev",)


def nli_group(heuristic: str, label: str) -> str:
    return f"{heuristic}/{label}"


def to_two_way(label: str) -> str:
    """MultiNLI's neutral and contradiction both count as non-entailment (HANS)."""
    return "entailment" if label == "entailment" else "non-entailment"


@dataclass
class ImageSplit:
    """Images ``(N, C, H, W)`` uint8 plus a frame with :data:`VISION_COLUMNS`."""

    images: np.ndarray
    frame: pd.DataFrame
    class_names: tuple[str, ...] = tuple(str(i) for i in range(10))
    group_names: tuple[str, ...] = COLOR_NAMES

    def __len__(self) -> int:
        return len(self.frame)

    def subset(self, index: np.ndarray) -> ImageSplit:
        return ImageSplit(
            self.images[index], self.frame.iloc[index].reset_index(drop=True),
            self.class_names, self.group_names,
        )


def empty_nli_frame() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in NLI_COLUMNS})
