"""The distillability matrix's axes and cells (torch-free): which cells a sweep has, their names, their cost
and the content key that lets a later sweep reuse a finished cell.

A cell is one combination of the ``matrix`` section's axes: debiasing method of the teacher × distillation
objective × student depth × student width × intervention. :func:`debiaskd.core.study.variant_specs` turns
the cells into variants (one teacher per debiasing method, shared by its cells); the pipeline, the jobs and
the report read them from there.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from itertools import product
from typing import Any

from debiaskd.core.config import StudyConfig
from debiaskd.core.errors import DebiaskdError
from debiaskd.core.objectives import choices, declared

#: each distillation choice of the ``distill`` axis → the distillation objectives it adds to logit KD
DISTILL: dict[str, tuple[str, ...]] = {
    "logits": (),
    "logits+hidden": ("hidden_mse",),
    "logits+attention": ("attention_kl",),
}
#: each intervention of the ``interventions`` axis → (augment, iterative, teacher_init)
INTERVENTIONS: dict[str, tuple[bool, bool, bool]] = {
    "none": (False, False, False),
    "aug": (True, False, False),
    "iterative": (False, True, False),
    "teacher_init": (False, False, True),
    "all": (True, True, True),
}
#: the debiasing methods of a task's matrix when the config names none
DEFAULT_METHODS: dict[str, tuple[str, ...]] = {
    "nli": ("product_of_experts", "reweight", "conf_reg"),
    "vision": ("group_dro", "reweight"),
}
#: config sections that do not change what a cell learns (where it runs, where it is logged, how it is shown)
NOT_TRAINED = ("matrix", "tracking", "cluster", "student_parallelism", "preset", "seeds", "variants", "gate",
               "analysis")
TEACHER_PREFIX, CELL_PREFIX = "teacher.", "cell."


@dataclass(frozen=True)
class Cell:
    """One cell of the matrix: a student distilled from the teacher of ``method``."""

    method: str
    distill: str
    layers: int | None
    width: int | None
    intervention: str

    @property
    def name(self) -> str:
        """``cell.<method>.<distill, + as _>[.L<layers>][.W<width>].<intervention>`` (a size part only where the cell
        sets it; otherwise the model section's size applies)."""
        size = "".join(f".{p}{v}" for p, v in (("L", self.layers), ("W", self.width)) if v is not None)
        # "+" is no character of an MLflow metric key (the parent run logs ``<cell>/retention``)
        return f"{CELL_PREFIX}{self.method}.{self.distill.replace('+', '_')}{size}.{self.intervention}"

    @property
    def teacher(self) -> str:
        return teacher_name(self.method)

    def axes(self) -> dict[str, Any]:
        """The cell's axis values (MLflow params ``axis.*``)."""
        return {"debias": self.method, "distill": self.distill, "student_layers": self.layers,
                "student_width": self.width, "intervention": self.intervention}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def teacher_name(method: str) -> str:
    return f"{TEACHER_PREFIX}{method}"


def methods(cfg: StudyConfig) -> list[str]:
    return list(cfg.matrix.debias) if cfg.matrix.debias is not None else list(DEFAULT_METHODS[cfg.task])


def check_axes(cfg: StudyConfig) -> None:
    """Refuse an axis value the task cannot run, naming the axis, the value and the choices (exit 2)."""
    m = cfg.matrix

    def refuse(axis: str, value: Any, known: Any) -> None:
        raise DebiaskdError(f"matrix.{axis}: unknown or unsupported value {value!r} for the {cfg.task} task; "
                            f"choose from {list(known)}", rule="matrix axes")

    allowed = choices("debias", cfg.task)
    for method in methods(cfg):
        if method not in allowed:
            refuse("debias", method, allowed)
    distill_ok = [d for d, extra in DISTILL.items() if all(cfg.task in declared(o).tasks for o in extra)]
    for value in m.distill:
        if value not in distill_ok:
            refuse("distill", value, distill_ok)
    for value in m.interventions:
        if value not in INTERVENTIONS:
            refuse("interventions", value, INTERVENTIONS)
    if cfg.task == "vision" and any(v is not None for v in m.student_layers):
        raise DebiaskdError("matrix.student_layers: the vision student has no depth to vary (its size is "
                            "matrix.student_width); leave student_layers at [null]", rule="matrix axes")
    for axis in ("debias", "distill", "student_layers", "student_width", "interventions"):
        values = methods(cfg) if axis == "debias" else getattr(m, axis)
        if len(set(values)) != len(values):
            raise DebiaskdError(f"matrix.{axis}: a value appears twice ({values})", rule="matrix axes")
    for axis in ("student_layers", "student_width"):
        for value in getattr(m, axis):
            if value is not None and value < 1:
                refuse(axis, value, ["a positive integer", None])


def cells(cfg: StudyConfig) -> list[Cell]:
    """Every cell of the matrix, in axis order (method slowest)."""
    check_axes(cfg)
    m = cfg.matrix
    return [Cell(*combo) for combo in product(methods(cfg), m.distill, m.student_layers, m.student_width,
                                              m.interventions)]


def cell_cost(cfg: StudyConfig, cell: Cell) -> float:
    """A student's relative size, to find "the cheapest student that passes the gate": depth × width²
    (a transformer block's parameters grow with the square of its width), with the model section's
    values where the cell keeps them."""
    if cfg.task == "vision":
        width = cell.width or cfg.vision_model.student_width
        return float(width * width)
    layers = cell.layers or cfg.nli_model.student_layers
    width = cell.width or cfg.nli_model.student_hidden or cfg.nli_model.tiny_hidden
    return float(layers * width * width)


def trained_config(cfg: StudyConfig) -> dict[str, Any]:
    """The part of the config that decides what any model of the sweep learns (not the axes' other values)."""
    return {k: v for k, v in cfg.to_dict().items() if k not in NOT_TRAINED}


def content_key(cfg: StudyConfig, spec: dict[str, Any], seed: int, data_hash: str,
                upstream: dict[str, dict[str, Any]] | None = None) -> str:
    """The key of one trained model of the sweep: what it learns from (the trained part of the config, its
    variant spec, the seed, the data's content hash, and the specs of the models it reads). Adding a value to
    an axis leaves every existing cell's key as it was, so that cell is reused, not retrained."""
    blob = json.dumps({"config": trained_config(cfg), "spec": spec, "seed": seed, "data": data_hash,
                       "upstream": upstream or {}, "matrix_weights": {
                           "hidden": cfg.matrix.hidden_weight, "attention": cfg.matrix.attention_weight}},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]
