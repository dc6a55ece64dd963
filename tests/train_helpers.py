"""Train one spec the way the jobs do, minus the dataset folder: the recipe of (spec, cfg), then ``fit``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from debiaskd.core.config import StudyConfig
from debiaskd.core.study import VariantSpec
from debiaskd.training.loop import TrainResult, fit
from debiaskd.training.recipe import Recipe
from debiaskd.training.rows import Sources


def fit_spec(spec: VariantSpec, cfg: StudyConfig, train: Any, validation: Any, seed: int, out_dir: str | Path, *,
             bias_probs: Any = None, teacher_logits: Any = None, teacher: Any = None, reference_logits: Any = None,
             progress: bool = False, **kwargs: Any) -> TrainResult:
    sources = Sources(bias_probs=bias_probs, reference_logits=reference_logits, teacher_logits=teacher_logits,
                      teacher=teacher)
    return fit(Recipe.build(spec, cfg), train, validation, seed, out_dir, sources=sources, progress=progress, **kwargs)
