"""Kubeflow components: thin wrappers that run one job each.

Each function here is a plain Python function; :func:`make_components` turns them into kfp
components for a given image at compile time (the image comes from the config), so the same
code runs in the local SubprocessRunner and on a cluster. A component builds its job's fields
from plain JSON values (artifact paths as strings), runs it with
:func:`debiaskd.runtime.dispatch.execute` and writes its kfp outputs from the job's JSON result;
it imports nothing heavy itself. All logic lives in :mod:`debiaskd.jobs` and below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kfp import dsl

from debiaskd.components.data import augment_data, prepare_data, validate_data
from debiaskd.components.evaluate import analyze_model, collect_evaluations
from debiaskd.components.register import end_study, promote_champion, start_study, summarize_study, summarize_sweep
from debiaskd.components.train import train_model, train_student


@dataclass(frozen=True)
class Components:
    start_study: Any
    end_study: Any
    prepare_data: Any
    validate_data: Any
    augment_data: Any
    train_model: Any
    train_student: Any
    collect_evaluations: Any
    analyze_model: Any
    summarize_study: Any
    summarize_sweep: Any
    promote_champion: Any


TRAINING = ("train_model", "train_student")


def make_components(image: str, gpu_image: str | None = None) -> Components:
    """kfp components for ``image`` (training components on ``gpu_image`` when given)."""
    funcs = {
        "start_study": start_study, "end_study": end_study, "prepare_data": prepare_data,
        "validate_data": validate_data, "augment_data": augment_data, "train_model": train_model,
        "train_student": train_student, "collect_evaluations": collect_evaluations,
        "analyze_model": analyze_model, "summarize_study": summarize_study,
        "summarize_sweep": summarize_sweep, "promote_champion": promote_champion,
    }
    built = {
        name: dsl.component(func, base_image=(gpu_image or image) if name in TRAINING else image,
                            install_kfp_package=False)
        for name, func in funcs.items()
    }
    return Components(**built)
