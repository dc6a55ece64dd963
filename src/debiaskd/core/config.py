"""One typed configuration for a study, with the presets ``smoke``, ``default`` and ``paper``.

A config is resolved in this order: preset → YAML file (``--config``) → ``--set key=value``
overrides. Unknown keys and out-of-range values are refused with a :class:`DebiaskdError`
naming the key. The resolved config is saved with every run (``resolved_config.yaml``).
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from debiaskd.core.errors import DebiaskdError, short_repr
from debiaskd.core.objectives import choices
from debiaskd.core.paths import require_file

Task = Literal["nli", "vision"]  # the names of debiaskd.tasks (TASK_NAMES below)
PresetName = Literal["smoke", "default", "paper", "matrix"]
PRESETS: tuple[str, ...] = ("smoke", "default", "paper", "matrix")


class _Strict(BaseModel):
    # no float field of a study may be infinite or NaN (a learning rate of .inf passes ``gt=0``)
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


SEED_MAX = 2**32 - 1  # numpy's and most libraries' seed range
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]


# ----------------------------------------------------------------------------- data
class NLIDataConfig(_Strict):
    """The NLI data: the embedded generator's sizes, or specs of real files."""

    train: str = Field("generated:train", description="SPEC of the training split")
    validation: str = Field("generated:validation", description="SPEC of the early-stopping split")
    test: str = Field("generated:test", description="SPEC of the in-distribution test split")
    challenge: str = Field("generated:challenge", description="SPEC of the HANS-layout challenge split")
    n_train: int = Field(2000, ge=30)
    n_validation: int = Field(300, ge=10)
    n_test: int = Field(600, ge=10)
    n_challenge_per_subcase: int = Field(40, ge=2)
    bias_strength: float = Field(0.9, ge=0.0, le=1.0, description="share of bias-aligned training pairs")
    holdout_fraction: float = Field(
        0.2, gt=0.0, lt=1.0, description="share of a real training file held out when no test spec is given"
    )
    seed: Seed = 0


class VisionDataConfig(_Strict):
    """Colored digits (sklearn digits by default; MNIST IDX or Waterbirds by spec)."""

    train: str = "generated:train"
    validation: str = "generated:validation"
    test: str = "generated:test"
    challenge: str = "generated:challenge"
    color_strength: float = Field(0.9, ge=0.0, le=1.0, description="P(colour = label's colour) in train")
    image_size: int = Field(16, ge=8, le=224)
    max_train: int | None = Field(None, ge=10)
    seed: Seed = 0


class ValidationConfig(_Strict):
    """Thresholds of the Great Expectations suites."""

    min_group_count: int = Field(5, ge=1)
    max_text_chars: int = Field(2000, ge=10)
    max_label_share: float = Field(0.8, gt=0.0, le=1.0)


# ---------------------------------------------------------------------------- models
class NLIModelConfig(_Strict):
    teacher: str = Field(
        "minilm",
        description="'minilm' (the packaged all-MiniLM-L6-v2), 'tiny' (random, for tests), "
        "a Hugging Face model id or a local path",
    )
    tiny_layers: int = Field(4, ge=1)
    tiny_hidden: int = Field(64, ge=8)
    tiny_heads: int = Field(4, ge=1)
    student_layers: int = Field(2, ge=1)
    student_hidden: int | None = Field(None, ge=8, description="None: the teacher's width")
    student_heads: int | None = Field(None, ge=1)
    assistant_layers: int | None = Field(
        None, ge=1, description="teacher-assistant depth for iterative KD (None: students teach students)"
    )
    max_length: int = Field(64, ge=8, le=512)


class VisionModelConfig(_Strict):
    teacher: Literal["resnet_small", "resnet18", "resnet50"] = "resnet_small"
    student: Literal["cnn_small"] = "cnn_small"
    teacher_width: int = Field(32, ge=4)
    student_width: int = Field(8, ge=2)
    pretrained_path: str | None = Field(
        None, description="start the teacher from these weights instead of a random initialisation: a "
        ".safetensors state dict or a debiaskd vision model folder of the same architecture and width")


# --------------------------------------------------------------------- methods
# the debiasing methods each task may choose: those the objective registry declares for it (torch-free)
NLIMethod = Literal[choices("debias", "nli")]  # type: ignore[valid-type]
VisionMethod = Literal[choices("debias", "vision")]  # type: ignore[valid-type]


class DebiasConfig(_Strict):
    nli_method: NLIMethod = "product_of_experts"
    vision_method: VisionMethod = "group_dro"
    bias_model: Literal["features", "hypothesis_only"] = "features"
    bias_temperature: float = Field(
        1.0, gt=0.0, description="soften the bias-only model's predictions to p^(1/T), renormalised, before the "
        "debiasing loss uses them (T > 1 keeps more of the bias-aligned signal; 1 = as fitted)",
    )
    group_dro_step: float = Field(0.01, gt=0.0)


class DistillConfig(_Strict):
    alpha: float = Field(0.5, ge=0.0, le=1.0, description="weight of the KD term")
    temperature: float = Field(2.0, gt=0.0)
    hidden_weight: float = Field(0.0, ge=0.0)
    attention_weight: float = Field(0.0, ge=0.0)
    rounds: int = Field(2, ge=1, description="rounds of iterative distillation")
    init_layers: list[int] | None = Field(
        None, description="teacher layers copied into the student (None: evenly spaced)"
    )
    cache_teacher: bool = True


class AugmentConfig(_Strict):
    ratio: float = Field(0.3, ge=0.0, le=2.0, description="counter-examples added, as a share of train")
    min_quality: float = Field(0.5, ge=0.0, le=1.0, description="quality filter threshold")
    seed: Seed = 0


class TrainConfig(_Strict):
    epochs: int = Field(2, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(5e-5, gt=0.0)
    weight_decay: float = Field(0.01, ge=0.0)
    warmup_ratio: float = Field(0.1, ge=0.0, le=1.0)
    grad_accum: int = Field(1, ge=1)
    max_steps: int | None = Field(None, ge=1)
    early_stopping_patience: int | None = Field(None, ge=1)
    eval_every_epochs: int = Field(1, ge=1)
    checkpoint_every: int | None = Field(None, ge=1, description="steps between checkpoints")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    bf16: bool = True
    num_threads: int | None = Field(None, ge=1)
    processes: int = Field(
        1, ge=1, description="data-parallel processes training each model of this role (torchrun; 1: this "
        "process). The global batch stays batch_size × grad_accum: make grad_accum a multiple of it",
    )


class EvalConfig(_Strict):
    batch_size: int = Field(128, ge=1)
    bootstrap: int = Field(1000, ge=0)
    confidence: float = Field(0.95, gt=0.0, lt=1.0)
    ece_bins: int = Field(10, ge=2)


class AnalysisConfig(_Strict):
    enabled: bool = True
    n_examples: int = Field(32, ge=4)
    ablation: bool = True
    probes: bool = True
    patching: bool = Field(
        True, description="activation patching on minimal pairs (each anti-bias overlap pair and its bias-aligned "
        "twin): every head, MLP and residual segment of the analysed models, with bootstrap intervals")
    patching_pairs: int = Field(
        32, ge=2, description="minimal pairs patched per analysed model and seed (a seeded sample of the whole "
        "challenge split, stratified by subcase; its cost grows linearly)")


class GateConfig(_Strict):
    """The robustness gate a student must pass to become ``champion``."""

    min_in_distribution_accuracy: float = Field(
        0.5, ge=0.0, le=1.0, description="competence first: absolute floor on ID accuracy"
    )
    min_accuracy_above_majority: float = Field(
        0.05, ge=0.0, le=1.0, description="competence: student ID accuracy > the test split's majority-class rate "
        "+ this margin (strictly: a constant predictor fails even at 0)",
    )
    min_kappa: float = Field(
        0.1, ge=0.0, le=1.0, description="competence: Cohen's kappa on the ID test split > this (strictly: a "
        "constant predictor's kappa is 0)",
    )
    id_tolerance: float = Field(0.10, ge=0.0, le=1.0, description="student ID ≥ teacher ID − tolerance")
    min_retention: float = Field(0.9, ge=0.0, description="student / teacher challenge accuracy")
    min_worst_group_ratio: float = Field(
        0.5, ge=0.0, description="student worst-group ≥ ratio × teacher worst-group"
    )
    auc_tolerance: float = Field(
        0.05, ge=0.0, le=1.0, description="student challenge AUC ≥ teacher challenge AUC − tolerance"
    )
    reliance_tolerance: float = Field(
        0.10, ge=0.0, le=2.0, description="student heuristic reliance ≤ teacher's + tolerance, and ≥ "
        "min(teacher's, 0) − tolerance (no over-correction into the opposite shortcut)",
    )
    require_not_worse_than_champion: bool = True


class TrackingConfig(_Strict):
    uri: str | None = Field(None, description="None: sqlite:///<out>/mlflow.db")
    experiment: str | None = Field(None, description="None: debiaskd-<task>")
    model_prefix: str | None = Field(None, description="registered names <prefix>-teacher / -student")
    system_metrics: bool = True
    register_models: bool = True


class TrainLaunchConfig(_Strict):
    """How the training tasks of one role run on a cluster (ignored by the local runner).

    With more than one node, or more than one GPU per node, each model of the role trains as a Kubeflow
    Trainer TrainJob (a torch runtime: ``nodes`` pods of ``gpus_per_node`` torchrun processes each),
    created, followed and waited for by its pipeline task; otherwise in the task's own pod.
    """

    nodes: int = Field(1, ge=1, le=256, description="training nodes (pods) of each model of this role")
    gpus_per_node: int | None = Field(
        None, ge=0, le=64, description="GPUs, and so torchrun processes, per node (None: gpu_per_training_task)")
    cpu: str = Field("8", description="CPU request and limit of each TrainJob node")
    memory: str = Field("32G", description="memory request and limit of each TrainJob node")


class ClusterConfig(_Strict):
    """Kubeflow settings written at compile time (ignored by the local runner)."""

    image: str = "ghcr.io/debiaskd/debiaskd:0.1.0-cpu"
    gpu_image: str = "ghcr.io/debiaskd/debiaskd:0.1.0-cuda"
    gpu_per_training_task: int = Field(0, ge=0)
    gpu_accelerator: str = "nvidia.com/gpu"
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, str]] = Field(default_factory=list)
    cpu_request: str = "1"
    memory_request: str = "4G"
    memory_limit: str = "8G"
    pvc_name: str = "debiaskd-cache"
    pvc_mount: str = "/mnt/debiaskd"
    mlflow_secret: str = "debiaskd-mlflow"
    mlflow_uri: str = "http://mlflow.debiaskd.svc.cluster.local:5000"
    #: retries of a failed training, evaluation or analysis task (a preempted or evicted pod), with
    #: exponential backoff from ``retry_backoff``
    retries: int = Field(2, ge=0, le=10)
    retry_backoff: str = "60s"
    #: the distributed launch of each role's training (Kubeflow Trainer TrainJobs), see TrainLaunchConfig
    teacher_launch: TrainLaunchConfig = Field(default_factory=TrainLaunchConfig)
    student_launch: TrainLaunchConfig = Field(default_factory=TrainLaunchConfig)
    trainer_runtime: str = Field(
        "debiaskd-torch", min_length=1,
        description="the torch runtime TrainJobs refer to (k8s/base/trainer-runtime.yaml)")
    trainer_runtime_kind: Literal["TrainingRuntime", "ClusterTrainingRuntime"] = "TrainingRuntime"
    namespace: str | None = Field(None, description="where TrainJobs are created (None: the task pod's namespace)")
    work_dir: str = Field(
        "work", min_length=1, description="folder under pvc_mount where training tasks keep their data, checkpoints "
        "and TrainJob files, one sub-folder per task (so a retried or preempted task resumes)")
    trainjob_poll_seconds: float = Field(15.0, gt=0.0, le=600.0)

    def launch(self, role: str) -> TrainLaunchConfig:
        """The launch settings of ``role`` ("teacher" or "student")."""
        return self.teacher_launch if role == "teacher" else self.student_launch

    def gpus_per_node(self, role: str) -> int:
        launch = self.launch(role)
        return self.gpu_per_training_task if launch.gpus_per_node is None else launch.gpus_per_node

    def uses_trainjob(self, role: str) -> bool:
        """True when ``role``'s models train as TrainJobs (more than one node or more than one GPU)."""
        return self.launch(role).nodes > 1 or self.gpus_per_node(role) > 1


class MatrixConfig(_Strict):
    """The distillability matrix (``debiaskd sweep``): every combination of the axes below is one cell, a
    student distilled from the teacher of its debiasing method (one teacher per method, shared by its
    cells). Each axis is a list; any axis may hold a single value. ``debiaskd run`` ignores this section."""

    enabled: bool = Field(False, description="set by `debiaskd sweep`: the study's variants are the matrix's")
    debias: list[str] | None = Field(
        None, min_length=1, description="debiasing methods of the teachers (None: the task's: product_of_experts, "
        "reweight, conf_reg for NLI; group_dro, reweight for vision)")
    distill: list[str] = Field(
        default_factory=lambda: ["logits", "logits+hidden", "logits+attention"], min_length=1,
        description="distillation objective of the students: logits | logits+hidden | logits+attention (NLI)")
    student_layers: list[int | None] = Field(
        default_factory=lambda: [None], min_length=1,
        description="student depth (NLI; None: the model section's student_layers)")
    student_width: list[int | None] = Field(
        default_factory=lambda: [None], min_length=1,
        description="student width: NLI hidden size, vision channels (None: the model section's)")
    interventions: list[str] = Field(
        default_factory=lambda: ["none"], min_length=1,
        description="none | aug | iterative | teacher_init | all (the three interventions together)")
    hidden_weight: float = Field(1.0, gt=0.0, description="weight of hidden-state transfer in logits+hidden cells")
    attention_weight: float = Field(1.0, gt=0.0, description="weight of attention transfer in logits+attention cells")


VARIANTS: tuple[str, ...] = (
    "teacher_erm",
    "teacher_debiased",
    "student_erm",
    "student_debiased",
    "student_kd",
    "student_kd_debiased",
    "student_kd_aug",
    "student_kd_iterative",
    "student_kd_teacher_init",
    "student_kd_all",
)


class StudyConfig(_Strict):
    """Everything one study needs; ``task`` picks which task sections apply."""

    preset: PresetName = "default"
    task: Task = "nli"
    seeds: list[Seed] = Field(default_factory=lambda: [0], min_length=1)
    variants: list[str] = Field(default_factory=lambda: list(VARIANTS))
    nli_data: NLIDataConfig = Field(default_factory=NLIDataConfig)
    vision_data: VisionDataConfig = Field(default_factory=VisionDataConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    nli_model: NLIModelConfig = Field(default_factory=NLIModelConfig)
    vision_model: VisionModelConfig = Field(default_factory=VisionModelConfig)
    debias: DebiasConfig = Field(default_factory=DebiasConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    teacher_train: TrainConfig = Field(default_factory=lambda: TrainConfig(epochs=2, lr=1e-4))
    student_train: TrainConfig = Field(default_factory=lambda: TrainConfig(epochs=2, lr=2e-4))
    vision_teacher_train: TrainConfig = Field(default_factory=lambda: TrainConfig(epochs=8, lr=2e-3))
    vision_student_train: TrainConfig = Field(default_factory=lambda: TrainConfig(epochs=15, lr=3e-3))
    eval: EvalConfig = Field(default_factory=EvalConfig)
    analysis: AnalysisConfig = Field(default_factory=AnalysisConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    matrix: MatrixConfig = Field(default_factory=MatrixConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    vary_data_with_seed: bool = Field(
        True, description="each seed draws its own data: the data and augmentation seeds are offset by the "
        "training seed (generated splits, held-out carves of real files, augmentation), so an interval over "
        "seeds covers data sampling as well as training randomness",
    )
    student_parallelism: int = Field(
        2, ge=1, description="students of one seed trained at once by the local runner (its ParallelFor runs "
        "at most 2), each on its share of the cores; on a cluster every student starts at once",
    )

    @model_validator(mode="after")
    def _known_variants(self) -> StudyConfig:
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise ValueError(f"unknown variants {unknown}; known: {list(VARIANTS)}")
        return self

    # -- views -------------------------------------------------------------
    def sections(self) -> TaskSections:
        """The sections ``task`` reads (``.data``, ``.model``, ``.train(role)``, ``.debias_method``)."""
        return task_sections(self)

    def train_config(self, role: Literal["teacher", "student"]) -> TrainConfig:
        return self.sections().train(role)

    @property
    def debias_method(self) -> str:
        return self.sections().debias_method

    @property
    def experiment_name(self) -> str:
        """``tracking.experiment``, else ``debiaskd-<task>`` (a sweep's: ``debiaskd-<task>-sweep``, so the
        matrix's runs are compared among themselves)."""
        return self.tracking.experiment or f"debiaskd-{self.task}" + ("-sweep" if self.matrix.enabled else "")

    @property
    def model_prefix(self) -> str:
        return self.tracking.model_prefix or f"debiaskd-{self.task}"

    def for_seed(self, seed: int) -> StudyConfig:
        """The config the data of training seed ``seed`` are built with.

        With ``vary_data_with_seed`` (the default) the data seeds (``nli_data.seed``,
        ``vision_data.seed``) and ``augment.seed`` are offset by ``seed`` (modulo the seed range), so
        each replicate of the study draws its own training, validation and challenge examples: seed 0
        keeps the configured data seeds, and a one-seed study builds exactly the data of
        ``debiaskd data generate``. Without it every seed shares seed 0's data.
        """
        if not self.vary_data_with_seed or seed == 0:
            return self

        def shifted(section: Any) -> Any:
            return section.model_copy(update={"seed": (section.seed + seed) % (SEED_MAX + 1)})

        return self.model_copy(update={"nli_data": shifted(self.nli_data), "vision_data": shifted(self.vision_data),
                                       "augment": shifted(self.augment)})

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def config_hash(self) -> str:
        """What is trained, not by how many processes: ``*_train.processes`` is left out (a checkpoint
        resumes under another count)."""
        data = self.to_dict()
        for section in data.values():
            if isinstance(section, dict) and "grad_accum" in section:
                section.pop("processes", None)
        blob = json.dumps(data, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


# ------------------------------------------------------------- task sections
TASK_NAMES: tuple[str, ...] = ("nli", "vision")


@dataclass(frozen=True)
class SectionNames:
    """Where a task's settings live in the config (the YAML keys, unchanged)."""

    data: str
    model: str
    teacher_train: str
    student_train: str
    debias_method: str  # a field of the ``debias`` section


TASK_SECTIONS: dict[str, SectionNames] = {
    "nli": SectionNames("nli_data", "nli_model", "teacher_train", "student_train", "nli_method"),
    "vision": SectionNames("vision_data", "vision_model", "vision_teacher_train", "vision_student_train",
                           "vision_method"),
}


@dataclass(frozen=True)
class TaskSections:
    """The config sections one task reads, typed: ``data``, ``model``, ``train(role)``, ``debias_method``."""

    task: str
    names: SectionNames
    data: Any  # NLIDataConfig | VisionDataConfig
    model: Any  # NLIModelConfig | VisionModelConfig
    teacher_train: TrainConfig
    student_train: TrainConfig
    debias_method: str

    def train(self, role: str) -> TrainConfig:
        return self.teacher_train if role == "teacher" else self.student_train


def section_names(task: str) -> SectionNames:
    if task not in TASK_SECTIONS:
        raise DebiaskdError(f"unknown task '{task}'", rule="task")
    return TASK_SECTIONS[task]


def task_sections(cfg: StudyConfig, task: str | None = None) -> TaskSections:
    """The sections of ``task`` (default ``cfg.task``) in ``cfg``."""
    name = task or cfg.task
    names = section_names(name)
    return TaskSections(
        task=name, names=names, data=getattr(cfg, names.data), model=getattr(cfg, names.model),
        teacher_train=getattr(cfg, names.teacher_train), student_train=getattr(cfg, names.student_train),
        debias_method=getattr(cfg.debias, names.debias_method),
    )


# --------------------------------------------------------------------- presets
_PRESET_OVERRIDES: dict[str, dict[str, Any]] = {
    # Tiny random models and a few hundred examples: the whole study in seconds (tests).
    "smoke": {
        "nli_data": {"n_train": 240, "n_validation": 40, "n_test": 60, "n_challenge_per_subcase": 4},
        "vision_data": {"max_train": 300, "image_size": 8},
        "validation": {"min_group_count": 2},
        "nli_model": {"teacher": "tiny", "tiny_layers": 2, "tiny_hidden": 32, "tiny_heads": 2,
                      "student_layers": 1, "max_length": 32},
        "vision_model": {"teacher_width": 8, "student_width": 4},
        "teacher_train": {"epochs": 1, "batch_size": 16, "lr": 3e-3},
        "student_train": {"epochs": 1, "batch_size": 16, "lr": 3e-3},
        "vision_teacher_train": {"epochs": 1, "batch_size": 32},
        "vision_student_train": {"epochs": 1, "batch_size": 32},
        "eval": {"batch_size": 64, "bootstrap": 50},
        "analysis": {"n_examples": 8, "patching_pairs": 8},
        # looser numbers, same structure: competence above the majority class and Cohen's kappa are strict
        # inequalities, so a constant predictor still fails (tiny smoke students usually are one)
        "gate": {"min_in_distribution_accuracy": 0.0, "min_accuracy_above_majority": 0.0, "min_kappa": 0.0,
                 "min_retention": 0.0, "min_worst_group_ratio": 0.0, "id_tolerance": 1.0, "auc_tolerance": 0.25,
                 "reliance_tolerance": 0.5},
        # `debiaskd sweep --preset smoke`: two teachers, two cells (the test adds an axis value to it)
        "matrix": {"debias": ["product_of_experts", "reweight"], "distill": ["logits"]},
    },
    # The CPU demo: the packaged MiniLM teacher, whole study in minutes on 2 cores. Its debiased
    # teacher is PoE with a hypothesis-only bias model (T = 1): the recipe benchmarks/select_recipe.py
    # chose on challenge_dev over three seeds, among six (benchmarks/RESULTS.md); the reporting
    # challenge split played no part in the choice.
    "default": {"debias": {"bias_model": "hypothesis_only", "bias_temperature": 1.0}},
    # `debiaskd sweep` on this 2-core machine in at most 20 minutes (benchmarks/RESULTS.md): the default
    # preset's data and MiniLM teachers, one per debiasing method (and the ERM reference conf_reg reads),
    # 3 methods × 3 distillation objectives × 2 student depths = 18 cells, one seed
    "matrix": {
        "debias": {"bias_model": "hypothesis_only", "bias_temperature": 1.0},
        "matrix": {"debias": ["product_of_experts", "reweight", "conf_reg"],
                   "distill": ["logits", "logits+hidden", "logits+attention"], "student_layers": [1, 2]},
    },
    # The study's scale on a GPU cluster: BERT-base-sized teacher, MNLI + HANS, several seeds.
    "paper": {
        "seeds": [0, 1, 2],
        "nli_data": {"train": "hf:nyu-mll/multi_nli::train", "validation": "hf:nyu-mll/multi_nli::validation_matched",
                     "test": "hf:nyu-mll/multi_nli::validation_matched", "challenge": "hf:hans::validation"},
        "nli_model": {"teacher": "bert-base-uncased", "student_layers": 4, "assistant_layers": 8,
                      "max_length": 128},
        "vision_model": {"teacher": "resnet50", "teacher_width": 64, "student_width": 32},
        # teachers: a TrainJob of 2 nodes × 2 GPUs (cluster.teacher_launch); the global batch stays 32
        # (batch_size × grad_accum), dealt 2 batches to each of the 4 processes per optimizer step
        "teacher_train": {"epochs": 3, "batch_size": 8, "grad_accum": 4, "lr": 2e-5, "checkpoint_every": 2000},
        "student_train": {"epochs": 3, "batch_size": 64, "lr": 5e-5, "checkpoint_every": 2000},
        "eval": {"batch_size": 256},
        "analysis": {"n_examples": 256, "patching_pairs": 512},
        "cluster": {"gpu_per_training_task": 1, "teacher_launch": {"nodes": 2, "gpus_per_node": 2},
                    "node_selector": {"cloud.google.com/gke-accelerator": "nvidia-tesla-a100"},
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
    },
}


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and value:
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def preset_dict(name: str) -> dict[str, Any]:
    if name not in _PRESET_OVERRIDES:
        raise DebiaskdError(f"unknown preset '{name}'; choose one of {list(PRESETS)}", rule="preset")
    return _deep_merge({"preset": name}, _PRESET_OVERRIDES[name])


MAX_YAML_DEPTH = 32
MAX_YAML_VALUES = 100_000


def safe_yaml(text: str, label: str, rule: str) -> Any:
    """``yaml.safe_load`` refusing documents too deep or (through aliases) too large to be a config."""
    try:
        data = yaml.safe_load(text)
    except RecursionError as exc:
        raise DebiaskdError(f"YAML nested too deeply (more than {MAX_YAML_DEPTH} levels)", file=label,
                            rule=rule) from exc
    except yaml.YAMLError as exc:
        raise DebiaskdError(f"not valid YAML: {exc}", file=label, rule=rule) from exc
    # walk every value as a reader of the config would (aliases counted each time they are used)
    stack: list[tuple[Any, int]] = [(data, 1)]
    seen = 0
    while stack:
        node, depth = stack.pop()
        seen += 1
        if seen > MAX_YAML_VALUES:
            raise DebiaskdError(f"YAML expands to more than {MAX_YAML_VALUES} values (nested aliases?); a study "
                                "config has a few hundred", file=label, rule=f"{rule}: size")
        if depth > MAX_YAML_DEPTH:
            raise DebiaskdError(f"YAML nested too deeply (more than {MAX_YAML_DEPTH} levels)", file=label,
                                rule=f"{rule}: depth")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
            stack.extend((k, depth + 1) for k in node if isinstance(k, (tuple, frozenset)))
        elif isinstance(node, (list, tuple, set, frozenset)):
            stack.extend((v, depth + 1) for v in node)
    return data


def parse_override(item: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` → (["a","b","c"], value parsed as YAML)."""
    if "=" not in item:
        raise DebiaskdError(f"override '{item}' is not of the form key.path=value", rule="--set")
    key, raw = item.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise DebiaskdError(f"override '{item}' has an empty key", rule="--set")
    value = safe_yaml(raw, f"--set {key.strip()}", "--set") if raw.strip() else ""
    return path, value


def _set_path(data: dict[str, Any], path: list[str], value: Any) -> None:
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise DebiaskdError(f"cannot set '{'.'.join(path)}': '{part}' is not a section", rule="--set")
    node[path[-1]] = value


def load_config(
    preset: str = "default",
    config_file: str | Path | None = None,
    overrides: list[str] | None = None,
    task: str | None = None,
) -> StudyConfig:
    """Resolve preset → YAML file → ``--set`` overrides (→ task) into a validated config."""
    # start from every default, so a preset or file that sets one key of a section keeps the
    # section's other defaults (vision training rates, say) instead of the bare class defaults
    data = _deep_merge(StudyConfig().to_dict(), preset_dict(preset))
    source = f"preset '{preset}'"
    if config_file is not None:
        path = Path(config_file)
        source = str(path)
        require_file(path, "a YAML config file", "config file")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise DebiaskdError(f"not UTF-8 text (byte {exc.start})", file=str(path), rule="config file") from exc
        except OSError as exc:
            raise DebiaskdError(f"cannot read the config file ({exc.strerror})", file=str(path),
                                rule="config file") from exc
        loaded = safe_yaml(text, str(path), "config file") or {}
        if not isinstance(loaded, dict):
            raise DebiaskdError("the top level must be a mapping", file=str(path), rule="config file")
        if "preset" in loaded and loaded["preset"] != preset:
            name = loaded["preset"]
            if not isinstance(name, str) or name not in _PRESET_OVERRIDES:
                raise DebiaskdError(f"preset: unknown preset {short_repr(name, 80)}; choose one of {list(PRESETS)}",
                                    file=str(path), rule="config file: preset")
            data = _deep_merge(StudyConfig().to_dict(), preset_dict(name))
        data = _deep_merge(data, loaded)
    for item in overrides or []:
        path_parts, value = parse_override(item)
        _set_path(data, path_parts, value)
        source = f"{source} with --set"
    if task is not None:
        data["task"] = task
    try:
        return StudyConfig.model_validate(data)
    except ValidationError as exc:
        found = exc.errors(include_url=False)
        errors = [
            f"{'.'.join(str(p) for p in err['loc'])[:120] or '<root>'}: {err['msg'][:200]}"
            + (f" (got {short_repr(err['input'], 80)})" if err.get("type") != "missing" and "input" in err
               and not isinstance(err["input"], dict) else "")
            for err in found[:5]
        ]
        more = f"; and {len(found) - 5} more" if len(found) > 5 else ""
        raise DebiaskdError(
            "invalid configuration: " + "; ".join(errors) + more, file=source, rule="config schema"
        ) from exc


def save_config(cfg: StudyConfig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(cfg.to_yaml(), encoding="utf-8")
    return path


def config_from_yaml_text(text: str) -> StudyConfig:
    """Rebuild a config saved by :func:`save_config` (used by pipeline components)."""
    return StudyConfig.model_validate(yaml.safe_load(text))
