"""The task (NLI or vision) as a type: what a study asks of a task, whichever it is.

A study runs one task. Everything that differs between them — the config sections it reads,
the data formats it accepts, how a split is stored, validated, augmented and batched, how its
models are built and its groups named, which evaluation extras apply — is a method or an
attribute of :class:`Task`. The implementations live in :mod:`debiaskd.tasks` (``get_task(name)``);
this module is the torch-free interface.

The config YAML keeps its paired sections (``nli_data``/``vision_data``, ``nli_model``/
``vision_model``, ``teacher_train``/``vision_teacher_train`` …, ``debias.nli_method``/
``debias.vision_method``): :data:`TASK_SECTIONS` (in :mod:`debiaskd.core.config`, re-exported
here) says which of them a task reads and :meth:`Task.sections` returns them as one frozen
:class:`TaskSections`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from debiaskd.core.config import (
    TASK_NAMES,
    TASK_SECTIONS,
    SectionNames,
    StudyConfig,
    TaskSections,
    ValidationConfig,
    section_names,
    task_sections,
)

if TYPE_CHECKING:  # typing only
    import pandas as pd

__all__ = ["TASK_NAMES", "TASK_SECTIONS", "Loader", "SectionNames", "Task", "TaskSections", "section_names",
           "task_sections"]

# ------------------------------------------------------------------ the interface
#: ``load(spec, split)``: a split of the task's data (the builder hands the task its loader)
Loader = Callable[[str, str], Any]


class Task(ABC):
    """One task of the study. Splits are a ``pandas.DataFrame`` (NLI) or an ``ImageSplit`` (vision);
    models are ``LoadedModel``-like objects (``task``, ``label_names``, ``meta``, ``path``)."""

    #: the config's ``task`` value, the manifest's and the model metadata's
    name: ClassVar[str]
    #: how an error names a format of this task ("an NLI format")
    format_noun: ClassVar[str]
    #: loader schemes (``scheme:argument``) only this task reads; ``generated`` and ``dataset`` are shared
    schemes: ClassVar[tuple[str, ...]]
    #: the columns every split's frame carries, in order (what a stored split is read back as)
    columns: ClassVar[tuple[str, ...]]
    #: the column of unique example ids
    id_column: ClassVar[str]
    #: columns whose joint values must not be shared by train and an evaluation split (besides the id)
    leak_columns: ClassVar[tuple[str, ...]]
    #: frame columns shown with a validation failure's example rows
    example_columns: ClassVar[tuple[str, ...]]
    #: the rows may carry construction marks (``construction``/``construction_seen``) that must not leak
    marks_constructions: ClassVar[bool]
    #: ``(rule, message)`` of the failure for a split of the wrong type
    split_type_rule: ClassVar[tuple[str, str]]

    def __repr__(self) -> str:
        return f"<task {self.name}>"

    # -- config
    @property
    def section_names(self) -> SectionNames:
        return section_names(self.name)

    def sections(self, cfg: StudyConfig) -> TaskSections:
        return task_sections(cfg, self.name)

    # -- data: shape, groups, labels
    @abstractmethod
    def is_split(self, split: Any) -> bool:
        """Is ``split`` of this task's split type?"""

    @abstractmethod
    def frame(self, split: Any) -> pd.DataFrame:
        """The rows of a split (its frame)."""

    @abstractmethod
    def take(self, split: Any, index: Any) -> Any:
        """The rows ``index`` of a split, as a split of the same type (row order as given)."""

    @abstractmethod
    def input_digest(self, split: Any, max_length: int | None = None) -> str:
        """Content hash of what a model sees of a split (its cache key for computed logits)."""

    @abstractmethod
    def group_name(self, bias: Any, label: Any) -> str:
        """The bias group of a row (``lexical_overlap/non-entailment``, ``3/red``)."""

    @abstractmethod
    def label_names(self, split: Any) -> list[str]:
        """The class names a model of this task trained on ``split`` predicts."""

    # -- data: loading and storing
    @abstractmethod
    def generated(self, cfg: StudyConfig) -> dict[str, Any]:
        """The embedded benchmark's splits for the task's data section (cached; callers copy)."""

    @abstractmethod
    def encode_split(self, name: str, split: Any) -> dict[str, bytes]:
        """The files of one split in a dataset folder (file name → bytes; deterministic)."""

    @abstractmethod
    def decode_split(self, folder: Any, name: str, frame: pd.DataFrame) -> Any:
        """A split read back from a dataset folder, given its rows."""

    @abstractmethod
    def holdout_view(self, base: Any, load: Loader, spec: str, split: str) -> Any:
        """The rows a split carved out of the training file is taken from (``base``: train's load)."""

    @abstractmethod
    def derives_split(self, name: str, spec: str, train_is_real: bool) -> bool:
        """Does the builder derive split ``name`` from the others instead of loading ``spec``?"""

    @abstractmethod
    def finish_build(self, cfg: StudyConfig, splits: dict[str, Any], specs: dict[str, str],
                     meta: dict[str, Any], load: Loader) -> dict[str, Any]:
        """Task-specific last steps of building a dataset folder (extra splits, caps, dedup)."""

    @abstractmethod
    def spec_split_name(self, split: Any) -> str:
        """The role a single loaded spec is validated as (``challenge`` for HANS-layout data, else ``test``)."""

    # -- data: validation
    @abstractmethod
    def split_failures(self, split: Any, file_label: str) -> list[Any]:
        """Failures found on the split's arrays before the expectation suite (``Failure`` list)."""

    @abstractmethod
    def validation_rules(self, split: Any, cfg: ValidationConfig) -> tuple[pd.DataFrame, list[tuple[str, Any]]]:
        """The validation frame (rows plus derived check columns) and its (rule, GX expectation) list."""

    @abstractmethod
    def challenge_group_counts(self, split: Any) -> dict[str, int] | None:
        """Rows per bias group a challenge split must have (None: no group structure to check)."""

    # -- the augment step
    @abstractmethod
    def augment(self, cfg: StudyConfig, splits: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """Fit the bias-only model, add its predictions to every split and the augmented train split;
        returns the splits and the number of new rows."""

    # -- evaluation
    @abstractmethod
    def two_way(self, frame: pd.DataFrame) -> bool:
        """Score collapsed to entailment / non-entailment (HANS: ``by_heuristic``, ``by_subcase``)?"""

    @abstractmethod
    def check_model_labels(self, loaded: Any, data: Any, spec: str) -> None:
        """Refuse, before inference, data whose labels the model cannot predict."""

    @abstractmethod
    def serving_inputs(self) -> tuple[Any, Any]:
        """The MLflow input schema of a logged model and an input example."""

    # -- training (implemented with :mod:`debiaskd.training`)
    @abstractmethod
    def make_inputs(self, data: Any, label_names: list[str], tokenizer: Any = None, max_length: int = 64) -> Any:
        """A split ready for batching (``training`` ``Inputs``)."""

    def check_model_source(self, model_cfg: Any) -> None:
        """Fail early (a :class:`DebiaskdError`) when the model section names a source that cannot be
        loaded; tasks whose models are built from scratch have nothing to check."""
        return None

    @abstractmethod
    def build_model(self, model_cfg: Any, role: str, seed: int, *, init_from: Any = None,
                    teacher_model: Any = None, layers: int | None = None, layer_map: list[int] | None = None,
                    num_classes: int = 10, tokenizer: Any = None) -> tuple[Any, Any, dict[str, Any]]:
        """The model a teacher or student of this task trains, from the task's model section
        (``model_cfg``): ``(model, tokenizer, build meta)``."""
