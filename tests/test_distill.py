"""Distillation: cached vs online KD, teacher-weight initialisation, logit cache, rounds, transfer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from data_fixtures import tiny_nli
from debiaskd.core.config import load_config
from debiaskd.core.study import VariantSpec, variant_specs
from debiaskd.data.schema import NLI_LABELS, ImageSplit
from debiaskd.tasks import get_task
from debiaskd.training import distill as distill_mod
from debiaskd.training.bias import fit_bias_model
from debiaskd.training.distill import cached_teacher_logits, distill_student, rounds_dir, teacher_logits
from debiaskd.training.inputs import TextPairInputs, model_logits
from debiaskd.training.models import load_model
from debiaskd.training.objectives.base import Rows, Step
from debiaskd.training.objectives.debias import ERM
from debiaskd.training.objectives.distillation import LogitKD
from debiaskd.training.recipe import LogitSettings, Recipe
from train_helpers import fit_spec


def tiny_images(n: int = 48, seed: int = 0) -> ImageSplit:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    images = rng.integers(0, 255, (n, 3, 8, 8), dtype=np.uint8)
    frame = pd.DataFrame({"image_id": [f"i{i}" for i in range(n)], "label": labels.astype(int),
                          "color": "red", "bias_aligned": True, "group": [f"{y}/red" for y in labels]})
    return ImageSplit(images, frame, ("0", "1", "2", "3"))


def _student(cfg, task: str = "nli", **kwargs):
    """A student as :func:`debiaskd.training.loop.fit` builds it (model, tokenizer, build metadata)."""
    return get_task(task).build_model(getattr(cfg, f"{task}_model"), "student", 0, **kwargs)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    cfg = load_config("smoke")
    root = tmp_path_factory.mktemp("teacher")
    train, val = tiny_nli(60), tiny_nli(21, seed=1)
    result = fit_spec(variant_specs(cfg)["teacher_erm"], cfg, train, val, 0, root / "teacher")
    return cfg, train, val, result.model_dir


def test_cached_and_online_kd_give_the_same_loss(teacher) -> None:
    cfg, train, _, teacher_dir = teacher
    loaded = load_model(teacher_dir)
    student, tokenizer, _ = _student(cfg, teacher_model=loaded.model, tokenizer=loaded.tokenizer)
    student.eval()
    inputs = TextPairInputs(train, list(NLI_LABELS), tokenizer, cfg.nli_model.max_length)
    idx = [0, 5, 7, 11, 30]
    batch = inputs.collate(idx)
    idx_t, labels = torch.tensor(idx), inputs.labels[idx]
    erm, kd = ERM(), LogitKD(alpha=0.5, temperature=2.0)

    def loss(rows: Rows) -> float:
        step = Step(model_logits(student, batch), labels, idx_t, batch, rows)
        return kd.add(erm.task_loss(step), step).item()

    loss_cached = loss(Rows(teacher_logits=torch.as_tensor(teacher_logits(loaded, train, LogitSettings.of(cfg),
                                                                          batch_size=7))))
    loss_online = loss(Rows(teacher=loaded.model.eval()))
    assert loss_cached == pytest.approx(loss_online, rel=1e-5, abs=1e-6)
    # and the KD term really depends on the teacher
    assert loss(Rows(teacher_logits=torch.zeros(len(train), 3))) != pytest.approx(loss_cached, rel=1e-4)


def test_teacher_logits_follow_input_order(teacher) -> None:
    cfg, train, _, teacher_dir = teacher
    loaded = load_model(teacher_dir)
    logits = teacher_logits(loaded, train, LogitSettings.of(cfg), batch_size=8)
    assert logits.shape == (len(train), 3)
    rows = [3, 17]
    enc = loaded.tokenizer(train["premise"].iloc[rows].tolist(), train["hypothesis"].iloc[rows].tolist(),
                           padding=True, return_tensors="pt")
    with torch.inference_mode():
        direct = loaded.model(**enc).logits.numpy()
    np.testing.assert_allclose(logits[rows], direct, rtol=1e-4, atol=1e-5)


def test_teacher_initialised_student_starts_with_copied_weights(teacher) -> None:
    cfg, _, _, teacher_dir = teacher
    loaded = load_model(teacher_dir)
    student, _, meta = _student(cfg, init_from=loaded, layer_map=[0])
    assert meta["layer_map"] == [0]
    t_state, s_state = loaded.model.state_dict(), student.state_dict()
    for key, value in s_state.items():
        assert torch.equal(value, t_state[key]), key  # embeddings, layer 0, pooler, classifier
    student2, _, meta2 = _student(cfg, init_from=loaded)  # evenly spaced: top layer
    assert meta2["layer_map"] == [1]
    key = "bert.encoder.layer.0.attention.self.query.weight"
    assert torch.equal(student2.state_dict()[key], t_state["bert.encoder.layer.1.attention.self.query.weight"])
    random_student, _, _ = _student(cfg, teacher_model=loaded.model)
    assert not torch.equal(random_student.state_dict()[key], student2.state_dict()[key])


def test_vision_teacher_init_copies_matching_stem(tmp_path) -> None:
    cfg = load_config("smoke", task="vision", overrides=["vision_model.student_width=8"])
    train = tiny_images()
    t = fit_spec(variant_specs(cfg)["teacher_erm"], cfg, train, train, 0, tmp_path / "t")
    loaded = load_model(t.model_dir)
    student, _, meta = _student(cfg, "vision", init_from=loaded,
                                 num_classes=4)
    assert "stem.0.weight" in meta["init_copied"]
    assert torch.equal(student.state_dict()["stem.0.weight"], loaded.model.state_dict()["stem.0.weight"])


def test_vision_teacher_init_slices_a_wider_teacher_stem() -> None:
    from debiaskd.training.models import build_vision_model, init_vision_from_teacher

    teacher = build_vision_model("resnet_small", 8, 10, 0)  # stem of 8 channels
    student = build_vision_model("cnn_small", 4, 10, 1)  # stem of 4
    before_head = student.state_dict()["head.weight"].clone()
    copied = init_vision_from_teacher(student, teacher)
    assert {"stem.0.weight", "stem.1.weight", "stem.1.bias", "stem.1.running_mean"} <= set(copied)
    t, s = teacher.state_dict(), student.state_dict()
    assert torch.equal(s["stem.0.weight"], t["stem.0.weight"][:4])
    assert torch.equal(s["stem.1.running_var"], t["stem.1.running_var"][:4])
    assert torch.equal(s["head.weight"], before_head)  # the head is never copied
    assert not any(k.startswith("body") for k in copied)  # no teacher tensor of those names


def test_logit_cache_is_reused_and_keyed_by_content(teacher, tmp_path, monkeypatch) -> None:
    cfg, train, val, teacher_dir = teacher
    first = cached_teacher_logits(teacher_dir, train, tmp_path, LogitSettings.of(cfg))
    files = sorted(tmp_path.glob("*.npy"))
    assert len(files) == 1

    def no_load(*args, **kwargs):
        raise AssertionError("a cache hit must not load the model")

    monkeypatch.setattr(distill_mod, "load_model", no_load)
    again = cached_teacher_logits(teacher_dir, train, tmp_path, LogitSettings.of(cfg))
    np.testing.assert_array_equal(first, again)
    monkeypatch.undo()
    cached_teacher_logits(teacher_dir, val, tmp_path, LogitSettings.of(cfg))
    assert len(list(tmp_path.glob("*.npy"))) == 2
    np.testing.assert_allclose(first, teacher_logits(load_model(teacher_dir), train, LogitSettings.of(cfg)), rtol=1e-5)


def test_students_read_the_logits_their_teacher_precomputed(tmp_path, monkeypatch) -> None:
    cfg = load_config("smoke")
    train, val = tiny_nli(60), tiny_nli(21, seed=1)
    t = fit_spec(variant_specs(cfg)["teacher_erm"], cfg, train, val, 0, tmp_path / "t" / "model")
    shared = distill_mod.precompute_teacher_logits(t.model_dir, [train], LogitSettings.of(cfg))
    assert shared == tmp_path / "t" / "teacher_cache" and len(list(shared.glob("*.npy"))) == 1
    before = sorted(p.name for p in shared.iterdir())

    calls = []
    real = distill_mod.teacher_logits
    monkeypatch.setattr(distill_mod, "teacher_logits", lambda *a, **k: calls.append(1) or real(*a, **k))
    spec = variant_specs(cfg)["student_kd"]
    distill_student(Recipe.build(spec, cfg), train, val, 0, tmp_path / "s" / "model", t.model_dir)
    assert calls == []  # round 1 read the teacher's logits instead of running the teacher
    assert not (tmp_path / "s" / "teacher_cache").exists()
    assert sorted(p.name for p in shared.iterdir()) == before  # the teacher's folder is only read


def test_iterative_rounds_through_a_teacher_assistant(tmp_path) -> None:
    cfg = load_config("smoke", overrides=["nli_model.tiny_layers=3", "nli_model.assistant_layers=2",
                                          "distill.rounds=2"])
    train, val = tiny_nli(60), tiny_nli(21, seed=1)
    t = fit_spec(variant_specs(cfg)["teacher_erm"], cfg, train, val, 0, tmp_path / "t")
    spec = variant_specs(cfg)["student_kd_all"]
    result = distill_student(Recipe.build(spec, cfg), train, val, 0, tmp_path / "s", t.model_dir, progress=False,
                             cache_dir=tmp_path / "cache")
    assistant = load_model(rounds_dir(tmp_path / "s") / "round1")
    final = load_model(result.model_dir)
    assert assistant.model.config.num_hidden_layers == 2 and assistant.meta["assistant"] is True
    assert final.model.config.num_hidden_layers == 1 and final.meta["round"] == 2
    assert final.meta["round_teacher"] == str(rounds_dir(tmp_path / "s") / "round1")
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == sorted(p.name for p in t.model_dir.iterdir())
    assert final.meta["layer_map"] == [1]  # initialised from the assistant's top layer
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2  # teacher, then assistant


def test_online_kd_with_hidden_and_attention_transfer(tmp_path, teacher) -> None:
    cfg = load_config("smoke", overrides=["distill.hidden_weight=1.0", "distill.attention_weight=1.0",
                                          "nli_model.student_hidden=16", "nli_model.student_heads=2"])
    _, train, val, teacher_dir = teacher
    spec = VariantSpec("student_kd", "student", "erm", teacher="teacher_erm")
    result = distill_student(Recipe.build(spec, cfg), train, val, 0, tmp_path / "s", teacher_dir, progress=False,
                             cache_dir=tmp_path / "cache")
    loaded = load_model(result.model_dir)
    assert loaded.meta["kd_online"] is True and loaded.meta["kd"]["cached"] is False
    assert loaded.model.config.hidden_size == 16
    assert not list((tmp_path / "cache").glob("*.npy"))
    assert np.isfinite(result.history[0]["loss"])


def test_kd_debiased_combines_kd_and_debias(teacher, tmp_path) -> None:
    cfg, train, val, teacher_dir = teacher
    bias_probs = fit_bias_model(train, "features").predict_proba(train)
    specs = variant_specs(cfg)
    a = distill_student(Recipe.build(specs["student_kd_debiased"], cfg), train, val, 0, tmp_path / "a", teacher_dir,
                        bias_probs=bias_probs, progress=False, cache_dir=tmp_path / "c")
    b = distill_student(Recipe.build(specs["student_kd"], cfg), train, val, 0, tmp_path / "b", teacher_dir,
                        progress=False, cache_dir=tmp_path / "c")
    wa, wb = load_file(str(a.model_dir / "model.safetensors")), load_file(str(b.model_dir / "model.safetensors"))
    assert any(not torch.equal(wa[k], wb[k]) for k in wa)
    assert a.history[0]["loss"] != pytest.approx(b.history[0]["loss"])
