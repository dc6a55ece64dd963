"""Train one variant of the study: the single entry point the jobs call.

Given the variant's :class:`~debiaskd.core.study.VariantSpec` and the dataset, it reads the config
once into a :class:`~debiaskd.training.recipe.Recipe`, reads the reference model's logits when the
objective needs them, trains a teacher (or a student without a teacher) or distils a student over
all its rounds, and leaves the logits its readers need beside the trained model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from debiaskd.core.config import StudyConfig
from debiaskd.core.study import VariantSpec
from debiaskd.training import bias
from debiaskd.training.distill import (
    cached_teacher_logits,
    distill_student,
    precompute_teacher_logits,
    teacher_cache_dir,
)
from debiaskd.training.distributed import main_first
from debiaskd.training.loop import TrainResult
from debiaskd.training.recipe import LogitSettings, Recipe


def train_split_name(spec: VariantSpec, splits: dict[str, Any]) -> str:
    """The training split of a variant: the augmented one when its recipe augments (and one exists)."""
    return "train_augmented" if spec.augment and "train_augmented" in splits else "train"


def bias_probs_of(split: Any) -> np.ndarray | None:
    """The bias-only model's probabilities stored with a split (its frame's ``bias_probs``), as float32."""
    probs = bias.bias_probs_of(getattr(split, "frame", split))
    return None if probs is None else probs.astype("float32")


def train_variant_model(
    spec: VariantSpec, cfg: StudyConfig, splits: dict[str, Any], seed: int, out_dir: str | Path, *,
    teacher_dir: str | Path | None = None, reference_dir: str | Path | None = None, progress: bool = True,
) -> TrainResult:
    """Train ``spec`` on ``splits`` (a dataset's splits) into ``out_dir/model``."""
    out_dir = Path(out_dir)
    recipe = Recipe.build(spec, cfg)
    train, validation = splits[train_split_name(spec, splits)], splits["validation"]
    reference = None
    if spec.reference:
        with main_first():  # distributed: rank 0 fills the cache on a miss, the other ranks then read it
            reference = cached_teacher_logits(reference_dir, train, out_dir / "reference_cache", recipe.logits,
                                              shared=[teacher_cache_dir(reference_dir)])
    return distill_student(recipe, train, validation, seed, out_dir / "model", teacher_dir,
                           bias_probs=bias_probs_of(train), progress=progress, reference_logits=reference)


def share_logits(spec: VariantSpec, specs: dict[str, VariantSpec], cfg: StudyConfig, splits: dict[str, Any],
                 model_dir: str | Path) -> None:
    """A teacher that students distil from (or whose logits an objective reads: ``spec.reference``)
    computes its logits on their training splits once, beside its model, so the tasks that need them
    (separate processes) read them instead of each recomputing."""
    readers = [s for s in specs.values()
               if s.reference == spec.name or (s.teacher == spec.name and not Recipe.build(s, cfg).online)]
    if readers:
        names = {train_split_name(s, splits) for s in readers}
        precompute_teacher_logits(model_dir, [splits[n] for n in sorted(names)], LogitSettings.of(cfg))
