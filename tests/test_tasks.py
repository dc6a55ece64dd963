"""The task interface: NLI and vision both implement it, and the converted modules ask it instead of
branching on the task's name."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from debiaskd.core.config import StudyConfig, load_config
from debiaskd.core.errors import DebiaskdError
from debiaskd.core.study import variant_specs
from debiaskd.core.task import TASK_NAMES, TASK_SECTIONS, Task, task_sections
from debiaskd.data import loaders
from debiaskd.data.store import read_dataset, write_dataset
from debiaskd.tasks import all_tasks, get_task, task_of_scheme

SRC = Path(__file__).resolve().parents[1] / "src" / "debiaskd"
CLASS_ATTRIBUTES = ("name", "format_noun", "schemes", "columns", "id_column", "leak_columns", "example_columns",
                    "marks_constructions", "split_type_rule")


def smoke(task: str) -> StudyConfig:
    return load_config("smoke", task=task)


def test_every_task_implements_the_interface():
    assert tuple(t.name for t in all_tasks()) == TASK_NAMES == typing.get_args(StudyConfig.model_fields["task"]
                                                                                .annotation)
    assert set(TASK_SECTIONS) == set(TASK_NAMES)
    for task in all_tasks():
        assert isinstance(task, Task)
        assert not getattr(type(task), "__abstractmethods__", None), type(task)
        for attr in CLASS_ATTRIBUTES:
            assert getattr(task, attr, None) is not None, (task, attr)
        assert get_task(task.name) is task and get_task(task) is task


def test_unknown_task_is_refused_by_name():
    with pytest.raises(DebiaskdError) as err:
        get_task("audio")
    assert err.value.rule == "task" and "audio" in err.value.message
    with pytest.raises(DebiaskdError):
        task_sections(smoke("nli"), "audio")


@pytest.mark.parametrize("name", TASK_NAMES)
def test_sections_are_the_config_sections_of_the_task(name):
    cfg = load_config("default", task=name, overrides=["vision_teacher_train.lr=0.5", "teacher_train.lr=0.25"])
    names = TASK_SECTIONS[name]
    sections = get_task(name).sections(cfg)
    assert sections is not None and sections.task == name
    assert sections.data is getattr(cfg, names.data)
    assert sections.model is getattr(cfg, names.model)
    assert sections.train("teacher") is getattr(cfg, names.teacher_train) is cfg.train_config("teacher")
    assert sections.train("student") is getattr(cfg, names.student_train) is cfg.train_config("student")
    assert sections.debias_method == getattr(cfg.debias, names.debias_method) == cfg.debias_method
    assert cfg.train_config("teacher").lr == (0.5 if name == "vision" else 0.25)
    assert cfg.sections() == sections


def test_each_format_belongs_to_one_task():
    owners = {}
    for task in all_tasks():
        for scheme in task.schemes:
            assert scheme in loaders.SCHEMES
            assert scheme not in owners, scheme
            owners[scheme] = task
            assert task_of_scheme(scheme) is task
    assert task_of_scheme("generated") is None and task_of_scheme("dataset") is None
    with pytest.raises(DebiaskdError, match="is an NLI format but the task is vision"):
        loaders.load_spec("hans:/nonexistent.tsv", "vision", smoke("vision"))


@pytest.mark.parametrize("name", TASK_NAMES)
def test_split_files_round_trip(name, tmp_path):
    task, cfg = get_task(name), smoke(name)
    splits = {k: loaders.load_spec(f"generated:{k}", name, cfg, k) for k in ("train", "test", "challenge")}
    for split in splits.values():
        assert task.is_split(split)
        assert list(task.frame(split).columns)[: len(task.columns)] == list(task.columns)
    write_dataset(tmp_path / "ds", name, splits)
    back = read_dataset(tmp_path / "ds")
    assert back.task == name
    for key, split in splits.items():
        files = task.encode_split(key, back.splits[key])
        assert files == task.encode_split(key, split)  # same bytes
        assert all((tmp_path / "ds" / f).read_bytes() == b for f, b in files.items())
    other = next(t for t in all_tasks() if t is not task)
    with pytest.raises(DebiaskdError) as err:
        other.encode_split("train", splits["train"])
    assert err.value.rule == other.split_type_rule[0]


def test_group_names_match_the_data():
    nli = loaders.load_spec("generated:challenge", "nli", smoke("nli"), "challenge")
    row = nli.iloc[0]
    assert get_task("nli").group_name(row["heuristic"], row["label"]) == row["group"]
    vision = loaders.load_spec("generated:test", "vision", smoke("vision"), "test").frame.iloc[0]
    assert get_task("vision").group_name(vision["color"], vision["label"]) == vision["group"]


def test_two_way_scoring_is_nli_only():
    frame = pd.DataFrame({"label": ["entailment", "non-entailment"]})
    assert get_task("nli").two_way(frame)
    assert not get_task("nli").two_way(pd.DataFrame({"label": ["entailment", "neutral"]}))
    assert not get_task("vision").two_way(frame)


@pytest.mark.parametrize("name", TASK_NAMES)
def test_augment_adds_the_augmented_split_and_bias_probabilities_as_the_pipeline_step_writes(name, tmp_path):
    """The task's augment: the train split plus the new rows as ``train_augmented``, the bias-only model's
    probabilities on every split, deterministic; the pipeline's augment job writes exactly that dataset.
    (Checked once against the augment step before the redesign: same content hashes for both tasks.)"""
    from debiaskd.data.build import build_dataset
    from debiaskd.jobs.data import AugmentDataJob

    task, cfg = get_task(name), smoke(name)
    source = build_dataset(cfg, tmp_path / "data", name)
    ds = read_dataset(source)
    splits, n_new = task.augment(cfg, ds.splits)
    again, _ = task.augment(cfg, ds.splits)
    assert n_new > 0 and len(task.frame(splits["train_augmented"])) == len(task.frame(ds.splits["train"])) + n_new
    for split_name, split in splits.items():
        probs = task.frame(split)["bias_probs"].tolist()
        assert len(probs) == len(task.frame(split)) and all(abs(sum(p) - 1) < 1e-6 for p in probs), split_name
    meta = {"source": ds.content_hash, "augmented_rows": n_new, "bias_model": cfg.debias.bias_model}
    mine = write_dataset(tmp_path / "mine", name, splits, meta)["content_hash"]
    assert write_dataset(tmp_path / "again", name, again, meta)["content_hash"] == mine
    job = AugmentDataJob(config=cfg, dataset_dir=source, out_dir=tmp_path / "augmented")
    assert job.run()["content_hash"] == mine


@pytest.mark.parametrize("name", TASK_NAMES)
def test_the_task_builds_the_models_and_inputs_the_loop_trains(name):
    """``build_model`` is seeded and makes a student no larger than its teacher; ``make_inputs`` encodes a
    split of the task's type (the loop calls exactly these: ``Recipe.model.task``)."""
    import torch

    from debiaskd.training.inputs import ImageInputs, TextPairInputs
    from debiaskd.training.recipe import Recipe

    task, cfg = get_task(name), smoke(name)
    assert Recipe.build(variant_specs(cfg)["teacher_erm"], cfg).model.task is task
    section = task.sections(cfg).model
    train = loaders.load_spec("generated:train", name, cfg, "train")
    labels = task.label_names(train)
    teacher, tok, meta = task.build_model(section, "teacher", 3, num_classes=len(labels))
    again, _, meta_again = task.build_model(section, "teacher", 3, num_classes=len(labels))
    assert meta == meta_again
    for (k, a), (k2, b) in zip(teacher.state_dict().items(), again.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b)
    student, _, _ = task.build_model(section, "student", 4, teacher_model=teacher, tokenizer=tok,
                                     num_classes=len(labels))
    assert sum(p.numel() for p in student.parameters()) <= sum(p.numel() for p in teacher.parameters())
    inputs = task.make_inputs(train, labels, tok, cfg.nli_model.max_length)
    assert isinstance(inputs, TextPairInputs if name == "nli" else ImageInputs)
    assert inputs.n == len(task.frame(train)) and bool((inputs.labels >= 0).all())
    assert inputs.digest() == task.make_inputs(train, labels, tok, cfg.nli_model.max_length).digest()


def test_model_label_checks_refuse_foreign_labels():
    class Loaded:
        def __init__(self, classes: int) -> None:
            self.label_names = ["entailment", "neutral", "contradiction"]
            self.meta = {"num_classes": classes}
            self.path = Path("model")

    with pytest.raises(DebiaskdError, match="the model predicts"):
        get_task("nli").check_model_labels(Loaded(2), pd.DataFrame({"label": ["entailment", "maybe"]}), "x")
    get_task("nli").check_model_labels(Loaded(2), pd.DataFrame({"label": ["entailment", "non-entailment"]}), "x")
    split = loaders.load_spec("generated:test", "vision", smoke("vision"), "test")
    with pytest.raises(DebiaskdError, match="classes"):
        get_task("vision").check_model_labels(Loaded(2), split, "x")
    get_task("vision").check_model_labels(Loaded(10), split, "x")
    assert np.all(split.frame["label"].to_numpy() < 10)


CONVERTED = ["data/loaders.py", "data/store.py", "data/build.py", "data/validate.py", "data/augment.py",
             "evaluation/evaluate.py", "evaluation/inference.py", "analysis", "reporting", "cli.py",
             "tracking/service.py", "core/config.py"]
BRANCH = re.compile(r"""[!=]=\s*["'](nli|vision)["']|["'](nli|vision)["']\s*[!=]=""")


def test_converted_modules_do_not_branch_on_the_task_name():
    files = [p for entry in CONVERTED for p in ((SRC / entry).rglob("*.py") if (SRC / entry).is_dir()
                                                else [SRC / entry])]
    assert len(files) > len(CONVERTED)
    hits = [f"{p.relative_to(SRC)}:{i}: {line.strip()}" for p in files
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if BRANCH.search(line)]
    assert not hits, "\n".join(hits)
    assert BRANCH.search('if cfg.task == "nli":') and BRANCH.search("x != 'vision'")
