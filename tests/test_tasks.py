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
def test_augment_matches_the_augment_step(name, tmp_path):
    """The task's augment gives the dataset the pipeline's augment step writes (the lead rewires it)."""
    from debiaskd.data.build import build_dataset
    from debiaskd.jobs import steps

    cfg = smoke(name)
    source = build_dataset(cfg, tmp_path / "data", name)
    expected = steps.augment_data(cfg, source, tmp_path / "augmented")
    ds = read_dataset(source)
    splits, n_new = get_task(name).augment(cfg, ds.splits)
    assert n_new > 0 and "train_augmented" in splits
    meta = {"source": ds.content_hash, "augmented_rows": n_new, "bias_model": cfg.debias.bias_model}
    assert write_dataset(tmp_path / "mine", name, splits, meta)["content_hash"] == expected["content_hash"]


@pytest.mark.parametrize("name", TASK_NAMES)
def test_models_and_inputs_match_the_training_loop(name):
    """``build_model``/``make_inputs`` delegate to the training code: same weights, same batches."""
    import torch

    from debiaskd.training.loop import Inputs, build_for

    task, cfg = get_task(name), smoke(name)
    train = loaders.load_spec("generated:train", name, cfg, "train")
    labels = task.label_names(train)
    specs = variant_specs(cfg)
    teacher, tok, meta = task.build_model(cfg, "teacher", 3, num_classes=len(labels))
    ref, ref_tok, ref_meta = build_for(specs["teacher_erm"], cfg, 3, num_classes=len(labels))
    assert meta == ref_meta
    for (k, a), (k2, b) in zip(teacher.state_dict().items(), ref.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b)
    student, _, smeta = task.build_model(cfg, "student", 4, teacher_model=teacher, tokenizer=tok,
                                         num_classes=len(labels))
    ref_s, _, ref_smeta = build_for(specs["student_erm"], cfg, 4, teacher_model=ref, tokenizer=ref_tok,
                                    num_classes=len(labels))
    assert smeta == ref_smeta
    assert sum(p.numel() for p in student.parameters()) == sum(p.numel() for p in ref_s.parameters())
    inputs = task.make_inputs(train, labels, tok, cfg.nli_model.max_length)
    assert inputs.digest() == Inputs(name, train, labels, ref_tok, cfg.nli_model.max_length).digest()


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
