"""How one variant is trained, read from the study config once: the :class:`Recipe`.

:meth:`Recipe.build` turns a :class:`~debiaskd.core.study.VariantSpec` and the
:class:`~debiaskd.core.config.StudyConfig` into typed settings (the optimiser and loop settings of
the variant's role, how reference/teacher logits are computed, the model builders' settings, the
distillation rounds) and the objectives with their parameters. The loop
(:func:`debiaskd.training.loop.fit`), the objectives and the distillation rounds read the recipe and
never the config: ``distill.temperature`` travels config → recipe → :class:`LogitKD` → ``kd_loss``.

An objective's parameters are the keys of its config section (``debias`` or ``distill``) that its
constructor names (``GroupDRO(group_dro_step)``, ``LogitKD(alpha, temperature)``).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from debiaskd.core.config import NLIModelConfig, StudyConfig, TrainConfig, VisionModelConfig
from debiaskd.core.study import VariantSpec
from debiaskd.core.sweep import DISTILL
from debiaskd.core.task import Task
from debiaskd.tasks import get_task
from debiaskd.training.objectives import Need, declared, implementation
from debiaskd.training.objectives.base import DebiasObjective, DistillObjective


@dataclass(frozen=True)
class TrainSettings:
    """The optimiser and loop settings of one role (``*_train`` of the config) plus the eval batch size."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup_ratio: float
    grad_accum: int
    max_steps: int | None
    early_stopping_patience: int | None
    eval_every_epochs: int
    checkpoint_every: int | None
    device: str
    bf16: bool
    num_threads: int | None
    processes: int  # how many launch it (debiaskd.training.launch); the loop asks torch.distributed who it is
    eval_batch_size: int

    @classmethod
    def of(cls, train: TrainConfig, eval_batch_size: int) -> TrainSettings:
        return cls(**train.model_dump(), eval_batch_size=eval_batch_size)


@dataclass(frozen=True)
class LogitSettings:
    """How a model's logits on a split are computed (KD targets, the ERM reference): inference settings."""

    max_length: int
    batch_size: int
    device: str
    bf16: bool

    @classmethod
    def of(cls, cfg: StudyConfig) -> LogitSettings:
        return cls(cfg.nli_model.max_length, cfg.eval.batch_size, cfg.train_config("teacher").device,
                   cfg.teacher_train.bf16)


@dataclass(frozen=True)
class ModelSettings:
    """What builds the model and encodes the data: the task, the variant's role, the task's model section."""

    task: Task
    role: str
    section: NLIModelConfig | VisionModelConfig
    max_length: int = 64  # text inputs' token limit (the NLI model section's; images have none)


@dataclass(frozen=True)
class Rounds:
    """Iterative distillation: how many rounds, through which depths, from which teacher layers."""

    count: int = 1
    teacher_init: bool = False  # each round's student starts from teacher weights
    assistant_layers: int | None = None  # teacher-assistant depth of the rounds before the last (NLI)
    student_layers: int | None = None
    init_layers: tuple[int, ...] | None = None
    cache_teacher: bool = True


@dataclass(frozen=True)
class Choice:
    """An objective chosen by name with its parameters; :meth:`make` gives a fresh instance per run."""

    name: str
    params: tuple[tuple[str, Any], ...] = ()

    def make(self) -> Any:
        return implementation(self.name)(**dict(self.params))

    def param(self, key: str) -> Any:
        return dict(self.params)[key]


def sized(model: NLIModelConfig | VisionModelConfig, spec: VariantSpec) -> NLIModelConfig | VisionModelConfig:
    """The model section with a matrix cell's student size (depth, width) in place of the section's own."""
    if spec.role != "student":
        return model
    update: dict[str, Any] = {}
    if spec.student_layers is not None:
        update["student_layers"] = spec.student_layers
    if spec.student_width is not None:
        update["student_hidden" if isinstance(model, NLIModelConfig) else "student_width"] = spec.student_width
    return model.model_copy(update=update) if update else model


def choose(name: str, section: BaseModel) -> Choice:
    """Objective ``name`` with the keys of ``section`` that its constructor names."""
    wanted = inspect.signature(implementation(name)).parameters
    return Choice(name, tuple((k, getattr(section, k)) for k in type(section).model_fields if k in wanted))


@dataclass(frozen=True)
class Recipe:
    """Everything that decides how one variant trains, apart from the data, the seed and the models it reads."""

    variant: str
    role: str
    method: str
    teacher: str | None
    train: TrainSettings
    logits: LogitSettings
    model: ModelSettings
    debias: Choice
    distill: tuple[Choice, ...] = ()
    bias_temperature: float = 1.0
    rounds: Rounds = field(default_factory=Rounds)
    config_hash: str = ""
    spec: dict[str, Any] = field(default_factory=dict)  # the variant's spec, for checkpoints and metadata

    @classmethod
    def build(cls, spec: VariantSpec, cfg: StudyConfig) -> Recipe:
        distill: list[Choice] = []
        if spec.uses_kd and spec.distill is not None:  # a matrix cell: its distillation choice, at the matrix's weights
            section = cfg.distill.model_copy(update={"hidden_weight": cfg.matrix.hidden_weight,
                                                     "attention_weight": cfg.matrix.attention_weight})
            distill.append(choose("logit_kd", section))
            distill += [choose(name, section) for name in DISTILL[spec.distill]]
        elif spec.uses_kd:
            distill.append(choose("logit_kd", cfg.distill))
            transfer = {"hidden_mse": cfg.distill.hidden_weight, "attention_kl": cfg.distill.attention_weight}
            distill += [choose(name, cfg.distill) for name, weight in transfer.items()
                        if weight > 0 and cfg.task in declared(name).tasks]
        task = get_task(cfg.task)
        model = sized(task.sections(cfg).model, spec)
        # teacher-assistants vary a transformer's depth: only a model section with layers to vary has them
        assistant = getattr(model, "assistant_layers", None) if spec.rounds > 1 else None
        return cls(
            variant=spec.name, role=spec.role, method=spec.method, teacher=spec.teacher,
            train=TrainSettings.of(cfg.train_config(spec.role), cfg.eval.batch_size),
            logits=LogitSettings.of(cfg),
            model=ModelSettings(task, spec.role, model, cfg.nli_model.max_length),
            debias=choose(spec.method, cfg.debias), distill=tuple(distill),
            bias_temperature=cfg.debias.bias_temperature,
            rounds=Rounds(spec.rounds, spec.teacher_init, assistant, getattr(model, "student_layers", None),
                          tuple(cfg.distill.init_layers) if cfg.distill.init_layers else None,
                          cfg.distill.cache_teacher),
            config_hash=cfg.config_hash(), spec=spec.to_dict(),
        )

    # -- what the objectives imply -------------------------------------------
    @property
    def uses_kd(self) -> bool:
        return bool(self.distill)

    def objectives(self) -> tuple[DebiasObjective, list[DistillObjective]]:
        """Fresh instances of the debiasing objective and the distillation objectives (in loss order)."""
        return self.debias.make(), [c.make() for c in self.distill]

    def needs(self, need: Need) -> bool:
        return any(declared(c.name).uses(need) for c in (self.debias, *self.distill))

    @property
    def online(self) -> bool:
        """Whether KD runs the teacher on every batch (layer transfer, or caching turned off)."""
        return self.uses_kd and (self.needs(Need.TEACHER_LAYERS) or not self.rounds.cache_teacher)

    @property
    def attn_implementation(self) -> str | None:
        """The attention implementation the distillation objectives need of the models (None: any)."""
        return next((impl for c in self.distill if (impl := implementation(c.name).attn_implementation)), None)

    @property
    def kd_meta(self) -> dict[str, Any] | None:
        if not self.uses_kd:
            return None
        kd = self.distill[0]
        return {"alpha": kd.param("alpha"), "temperature": kd.param("temperature")}
