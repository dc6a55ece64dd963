"""The study's design: which variants exist and how each one is trained.

This is the single place that knows the study. The pipeline, the jobs, the CLI and the tests read
:func:`variant_specs` (and :func:`analysis_pairs`); training reads a :class:`VariantSpec` and nothing else
about variants.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from debiaskd.core.config import VARIANTS, StudyConfig
from debiaskd.core.objectives import Need, needs
from debiaskd.core.sweep import INTERVENTIONS, TEACHER_PREFIX, cells, methods, teacher_name

Role = Literal["teacher", "student"]
#: the variant whose logits an objective declaring :attr:`Need.REFERENCE_LOGITS` reads (conf_reg)
ERM_REFERENCE = "teacher_erm"


@dataclass(frozen=True)
class VariantSpec:
    """How one variant is trained (all flags explicit, so a spec reads like a table row)."""

    name: str
    role: Role
    method: str  # "erm" or the debiasing method applied to the task loss
    teacher: str | None = None  # variant that supplies soft targets (KD), if any
    augment: bool = False  # bias-aware counter-examples added to train
    rounds: int = 1  # rounds of (iterative) distillation
    teacher_init: bool = False  # student layers initialised from the teacher's
    #: variant whose logits the objective needs besides the labels: the ERM teacher's for confidence
    #: regularisation (Utama et al. 2020 scale the bias-weighted ERM predictions), else None
    reference: str | None = None
    #: a matrix cell's distillation choice (:data:`debiaskd.core.sweep.DISTILL`); None: the config's
    #: ``distill.hidden_weight`` / ``attention_weight`` decide
    distill: str | None = None
    #: a matrix cell's student size; None: the task's model section
    student_layers: int | None = None
    student_width: int | None = None
    #: a matrix cell's axis values, as (axis, value) pairs (MLflow params ``axis.*``); empty outside a sweep
    axes: tuple[tuple[str, object], ...] = ()

    @property
    def uses_kd(self) -> bool:
        return self.teacher is not None

    @property
    def init_from(self) -> str | None:
        """The variant whose weights initialise this one (teacher-weight initialisation)."""
        return self.teacher if self.teacher_init else None

    def to_dict(self) -> dict:
        return asdict(self)


def variant_specs(cfg: StudyConfig) -> dict[str, VariantSpec]:
    """All variants of the study, in training order (teachers first); for a sweep (``matrix.enabled``), the
    matrix's teachers and cells (:func:`matrix_specs`)."""
    if cfg.matrix.enabled:
        return matrix_specs(cfg)
    debias = cfg.debias_method
    teacher = "teacher_debiased"
    rounds = cfg.distill.rounds
    reference = ERM_REFERENCE if needs(debias, Need.REFERENCE_LOGITS) else None
    specs = [
        VariantSpec("teacher_erm", "teacher", "erm"),
        VariantSpec("teacher_debiased", "teacher", debias, reference=reference),
        VariantSpec("student_erm", "student", "erm"),
        VariantSpec("student_debiased", "student", debias, reference=reference),
        VariantSpec("student_kd", "student", "erm", teacher=teacher),
        VariantSpec("student_kd_debiased", "student", debias, teacher=teacher, reference=reference),
        VariantSpec("student_kd_aug", "student", "erm", teacher=teacher, augment=True),
        VariantSpec("student_kd_iterative", "student", "erm", teacher=teacher, rounds=rounds),
        VariantSpec("student_kd_teacher_init", "student", "erm", teacher=teacher, teacher_init=True),
        VariantSpec(
            "student_kd_all", "student", "erm", teacher=teacher, augment=True, rounds=rounds,
            teacher_init=True,
        ),
    ]
    assert tuple(s.name for s in specs) == VARIANTS
    wanted = set(cfg.variants)
    # a selected variant needs its teacher, and the reference its objective reads, trained too
    for spec in specs:
        if spec.name in wanted:
            wanted.update(v for v in (spec.teacher, spec.reference) if v)
    return {s.name: s for s in specs if s.name in wanted}


def matrix_specs(cfg: StudyConfig) -> dict[str, VariantSpec]:
    """The sweep's variants: one teacher per debiasing method (``teacher.<method>``; ``teacher.erm`` too
    when a method reads the ERM reference) and one student per cell (:func:`debiaskd.core.sweep.cells`),
    distilled from its method's teacher with the cell's objective, size and intervention."""
    grid = cells(cfg)
    erm = teacher_name("erm")
    specs: dict[str, VariantSpec] = {}
    wanted = methods(cfg)
    if any(needs(m, Need.REFERENCE_LOGITS) for m in wanted):
        specs[erm] = VariantSpec(erm, "teacher", "erm")
    for method in wanted:
        reference = erm if needs(method, Need.REFERENCE_LOGITS) else None
        specs[teacher_name(method)] = VariantSpec(teacher_name(method), "teacher", method, reference=reference)
    for cell in grid:
        augment, iterative, init = INTERVENTIONS[cell.intervention]
        specs[cell.name] = VariantSpec(
            cell.name, "student", "erm", teacher=cell.teacher, augment=augment,
            rounds=cfg.distill.rounds if iterative else 1, teacher_init=init, distill=cell.distill,
            student_layers=cell.layers, student_width=cell.width, axes=tuple(cell.axes().items()))
    return specs


def is_matrix_teacher(name: str) -> bool:
    return name.startswith(TEACHER_PREFIX)


def run_name(variant: str, seed: int) -> str:
    """The one name a variant's MLflow run, kfp task and output folder share."""
    return f"{variant}-s{seed}"


def analysis_pairs(cfg: StudyConfig) -> list[tuple[str, str | None]]:
    """Which models are analysed, each against which reference (the study's "why")."""
    pairs = [("teacher_debiased", "teacher_erm"), ("student_kd", "teacher_debiased"),
             ("student_kd_all", "teacher_debiased")]
    selected = variant_specs(cfg)
    return [(m, r) for m, r in pairs if m in selected and (r is None or r in selected)]


def analysed(cfg: StudyConfig, variant: str) -> str:
    """"yes" when the study analyses ``variant`` against a reference (:func:`analysis_pairs`), else "no"."""
    return "yes" if cfg.analysis.enabled and any(m == variant for m, _ in analysis_pairs(cfg)) else "no"
