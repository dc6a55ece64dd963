"""The registry of training objectives: names, families, needs and tasks (torch-free).

Every objective is declared here once, in :data:`CATALOG`; its implementation (a torch class in
the module the declaration names) registers against the name with :func:`register`, which refuses a
name that is not declared. The config's method choices (``debias.nli_method`` …) and the study's
"needs the ERM reference" rule are read from these declarations, so neither imports torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, TypeVar

#: the package whose modules (named by each declaration) hold the implementations
IMPLEMENTATIONS = "debiaskd.training.objectives"

Family = Literal["debias", "distill"]


class Need(StrEnum):
    """What an objective reads besides the model's own outputs and the labels."""

    BIAS_PROBS = "bias_probs"  # the bias-only model's probabilities on each training row
    GROUP_CODES = "group_codes"  # each training row's group (the ``group`` column) as an integer code
    REFERENCE_LOGITS = "reference_logits"  # an ERM-trained reference model's logits on each row
    TEACHER_LOGITS = "teacher_logits"  # the KD teacher's logits on each row: cached, or its forward pass
    TEACHER_LAYERS = "teacher_layers"  # the teacher's forward pass on the batch, read through forward hooks


@dataclass(frozen=True)
class Declared:
    """One objective as the rest of the study sees it."""

    name: str
    family: Family
    module: str  # the module of :mod:`debiaskd.training.objectives` that registers the implementation
    #: each entry is one requirement given as alternatives in order of preference: the first available one
    #: is prepared (``(BIAS_PROBS, GROUP_CODES)``: the bias model's predictions, else group codes)
    needs: tuple[tuple[Need, ...], ...] = ()
    #: debiasing: the tasks whose config may choose it (``debias.<task>_method``); distillation: the tasks it
    #: applies to
    tasks: tuple[str, ...] = ()
    summary: str = ""

    def uses(self, need: Need) -> bool:
        return any(need in alternatives for alternatives in self.needs)


def first_of(*alternatives: Need) -> tuple[Need, ...]:
    """One requirement: the first of ``alternatives`` that is available."""
    return alternatives


CATALOG: dict[str, Declared] = {d.name: d for d in (
    Declared("erm", "debias", "debias", summary="cross-entropy (the baseline; not a debias.*_method choice)"),
    Declared("product_of_experts", "debias", "debias", (first_of(Need.BIAS_PROBS),), ("nli", "vision"),
             "CE of softmax(log p_model + log p_bias) (Clark et al. 2019; He et al. 2019)"),
    Declared("reweight", "debias", "debias", (first_of(Need.BIAS_PROBS, Need.GROUP_CODES),), ("nli", "vision"),
             "CE weighted by 1 − p_bias(gold), or by inverse group frequency without a bias model"),
    Declared("conf_reg", "debias", "debias", (first_of(Need.BIAS_PROBS), first_of(Need.REFERENCE_LOGITS)), ("nli",),
             "confidence regularisation against the ERM reference scaled by the bias (Utama et al. 2020)"),
    Declared("group_dro", "debias", "debias", (first_of(Need.GROUP_CODES),), ("vision",),
             "online GroupDRO (Sagawa et al. 2020)"),
    Declared("logit_kd", "distill", "distillation", (first_of(Need.TEACHER_LOGITS),), ("nli", "vision"),
             "α·T²·KL(teacher ‖ student at temperature T) + (1 − α)·task loss (Hinton et al. 2015)"),
    Declared("hidden_mse", "distill", "distillation", (first_of(Need.TEACHER_LAYERS),), ("nli",),
             "MSE between mapped student and teacher layer outputs"),
    Declared("attention_kl", "distill", "distillation", (first_of(Need.TEACHER_LAYERS),), ("nli",),
             "KL between mapped teacher and student attention maps"),
)}

_IMPLEMENTATIONS: dict[str, type] = {}
T = TypeVar("T", bound=type)


def declared(name: str) -> Declared:
    if name not in CATALOG:
        raise KeyError(f"unknown objective '{name}'; known: {list(CATALOG)}")
    return CATALOG[name]


def choices(family: Family, task: str) -> tuple[str, ...]:
    """The objectives of ``family`` that ``task`` may use, in declaration order."""
    return tuple(d.name for d in CATALOG.values() if d.family == family and task in d.tasks)


def needs(name: str, need: Need) -> bool:
    """Whether objective ``name`` reads ``need`` (``needs("conf_reg", Need.REFERENCE_LOGITS)``)."""
    return declared(name).uses(need)


def register(name: str) -> Callable[[T], T]:
    """Class decorator: the implementation of the declared objective ``name`` (``cls.declared`` is set)."""
    spec = declared(name)

    def decorate(cls: T) -> T:
        if name in _IMPLEMENTATIONS and _IMPLEMENTATIONS[name] is not cls:
            raise ValueError(f"objective '{name}' is registered twice")
        cls.declared = spec  # type: ignore[attr-defined]
        _IMPLEMENTATIONS[name] = cls
        return cls

    return decorate


def implementation(name: str) -> Any:
    """The registered class of objective ``name`` (its module is imported on first use)."""
    spec = declared(name)
    if name not in _IMPLEMENTATIONS:
        importlib.import_module(f"{IMPLEMENTATIONS}.{spec.module}")
    if name not in _IMPLEMENTATIONS:
        raise LookupError(f"objective '{name}' is declared but {spec.module}.py registers no implementation")
    return _IMPLEMENTATIONS[name]
