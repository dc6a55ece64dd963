"""The training loop: batching, every variant of the study, determinism, early stopping, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from data_fixtures import tiny_images, tiny_nli
from debiaskd.core.config import load_config
from debiaskd.core.errors import DebiaskdError
from debiaskd.core.study import VariantSpec, variant_specs
from debiaskd.data.schema import NLI_LABELS
from debiaskd.training.batching import collate_nli, encode_nli, length_grouped_batches
from debiaskd.training.bias import fit_bias_model, fit_color_bias_model
from debiaskd.training.distill import distill_student, rounds_dir
from debiaskd.training.loop import TrainResult
from debiaskd.training.models import META_FILE, load_model, minilm_path
from debiaskd.training.recipe import Recipe
from train_helpers import fit_spec


def _data(task: str):
    if task == "nli":
        train, val = tiny_nli(96), tiny_nli(30, seed=1)
        return train, val, fit_bias_model(train, "features").predict_proba(train)
    train, val = tiny_images(64), tiny_images(32, seed=1)
    return train, val, fit_color_bias_model(train).predict_proba(train)


def _weights(model_dir) -> dict[str, torch.Tensor]:
    return load_file(str(model_dir / "model.safetensors"))


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(minilm_path()))


# ------------------------------------------------------------------ batching
def test_length_grouped_batches_cover_everything_once_and_group_lengths() -> None:
    lengths = np.random.default_rng(0).integers(5, 60, 1000)
    batches = length_grouped_batches(lengths, 8, seed=3)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(1000))
    assert batches == length_grouped_batches(lengths, 8, seed=3)
    assert batches != length_grouped_batches(lengths, 8, seed=4)
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    random_spread = np.mean([np.ptp(lengths[flat[i:i + 8]]) for i in np.random.default_rng(1).permutation(1000)[:100]])
    assert spread < random_spread / 3  # similar lengths share a batch
    ordered = length_grouped_batches(lengths, 8, seed=0, shuffle=False)
    assert [lengths[b].max() for b in ordered] == sorted((lengths[b].max() for b in ordered), reverse=True)


def test_encode_once_and_pad_to_the_batch_longest(tokenizer) -> None:
    df = tiny_nli(12)
    enc = encode_nli(tokenizer, df, max_length=16)
    assert len(enc) == 12 and enc.lengths.max() <= 16
    idx = [int(np.argmin(enc.lengths)), 3]
    batch = collate_nli(enc, idx, tokenizer.pad_token_id)
    width = int(enc.lengths[idx].max())
    assert batch["input_ids"].shape == (2, width)
    assert batch["attention_mask"].sum(1).tolist() == enc.lengths[idx].tolist()
    assert batch["input_ids"][0, int(enc.lengths[idx[0]]):].eq(tokenizer.pad_token_id).all()
    assert "token_type_ids" in batch


# ------------------------------------------------------------------ every variant
@pytest.fixture(scope="module", params=["nli", "vision"])
def trained_study(request, tmp_path_factory):
    task = request.param
    cfg = load_config("smoke", task=task)
    train, val, bias_probs = _data(task)
    root = tmp_path_factory.mktemp(f"study-{task}")
    results: dict[str, TrainResult] = {}
    for name, spec in variant_specs(cfg).items():
        if spec.role == "teacher":
            results[name] = fit_spec(spec, cfg, train, val, 0, root / name, bias_probs=bias_probs)
        else:
            teacher_dir = root / spec.teacher if spec.teacher else None
            results[name] = distill_student(Recipe.build(spec, cfg), train, val, 0, root / name, teacher_dir,
                                            bias_probs=bias_probs, progress=False, cache_dir=root / "cache")
    return task, cfg, root, results


def test_every_variant_trains_and_reloads(trained_study) -> None:
    task, cfg, root, results = trained_study
    assert set(results) == set(variant_specs(cfg))
    for name, result in results.items():
        loaded = load_model(result.model_dir)
        assert loaded.meta["variant"] == name and loaded.meta["task"] == task
        assert loaded.meta["config_hash"] == cfg.config_hash()
        assert len(result.history) == 1 and np.isfinite(result.history[0]["loss"])
        assert result.history[0]["peak_rss_mb"] > 0 and result.examples_per_second > 0
        assert not (result.model_dir / "checkpoint").exists()
        x = (torch.zeros(2, 3, 8, 8) if task == "vision" else
             loaded.tokenizer(["a b"], ["a"], return_tensors="pt"))
        out = loaded.model(x) if task == "vision" else loaded.model(**x).logits
        assert out.shape[-1] == (4 if task == "vision" else 3)
    spec = variant_specs(cfg)["student_kd_iterative"]
    assert (rounds_dir(root / "student_kd_iterative") / "round1" / META_FILE).is_file()
    assert not (root / "student_kd_iterative" / "teacher_cache").exists()
    assert load_model(root / "student_kd_iterative").meta["round"] == spec.rounds
    # one cache file per distinct (teacher weights, data): the debiased teacher and the round-1 students
    assert len(list((root / "cache").glob("*.npy"))) == 3
    if task == "nli":
        student = load_model(root / "student_kd")
        assert student.model.config.num_hidden_layers == cfg.nli_model.student_layers
        assert load_model(root / "student_kd_teacher_init").meta["layer_map"] == [1]


def test_debiasing_changes_training(trained_study) -> None:
    _, _, root, _ = trained_study
    erm, debiased = _weights(root / "teacher_erm"), _weights(root / "teacher_debiased")
    assert any(not torch.equal(erm[k], debiased[k]) for k in erm)
    kd, kd_debiased = _weights(root / "student_kd"), _weights(root / "student_kd_debiased")
    assert any(not torch.equal(kd[k], kd_debiased[k]) for k in kd)


# ------------------------------------------------------------------ determinism & loop
@pytest.mark.parametrize("task", ["nli", "vision"])
def test_same_seed_same_weights(task, tmp_path) -> None:
    cfg = load_config("smoke", task=task, overrides=["teacher_train.grad_accum=2",
                                                     "vision_teacher_train.grad_accum=2"])
    train, val, bias_probs = _data(task)
    spec = variant_specs(cfg)["teacher_debiased"]
    a = fit_spec(spec, cfg, train, val, 7, tmp_path / "a", bias_probs=bias_probs)
    b = fit_spec(spec, cfg, train, val, 7, tmp_path / "b", bias_probs=bias_probs)
    c = fit_spec(spec, cfg, train, val, 8, tmp_path / "c", bias_probs=bias_probs)
    wa, wb, wc = _weights(a.model_dir), _weights(b.model_dir), _weights(c.model_dir)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)
    meta = json.loads((a.model_dir / META_FILE).read_text())
    n_batches = 64 // 32 if task == "vision" else 96 // 16
    assert meta["train"]["steps"] == n_batches // 2


def test_early_stopping_keeps_the_best_epoch(tmp_path) -> None:
    cfg = load_config("smoke", overrides=["teacher_train.epochs=5", "teacher_train.lr=1e-12",
                                          "teacher_train.early_stopping_patience=1", "teacher_train.warmup_ratio=0"])
    train, val, _ = _data("nli")
    result = fit_spec(variant_specs(cfg)["teacher_erm"], cfg, train, val, 0, tmp_path / "m")
    # a learning rate this small cannot change the predictions: no improvement after epoch 1
    assert len(result.history) == 2 and result.best_epoch == 1
    assert all(h["validation_accuracy"] is not None for h in result.history)


def test_max_steps_and_meta(tmp_path) -> None:
    cfg = load_config("smoke", overrides=["student_train.max_steps=3", "student_train.epochs=4"])
    train, val, _ = _data("nli")
    result = fit_spec(VariantSpec("student_erm", "student", "erm"), cfg, train, val, 0, tmp_path / "s",
                         progress=False)
    meta = json.loads((result.model_dir / META_FILE).read_text())
    assert meta["train"]["steps"] == 3 and len(result.history) == 1
    assert meta["role"] == "student" and meta["label_names"] == list(NLI_LABELS)
    assert meta["layers"] == cfg.nli_model.student_layers


def test_missing_inputs_are_user_errors(tmp_path) -> None:
    cfg = load_config("smoke")
    train, val, _ = _data("nli")
    specs = variant_specs(cfg)
    with pytest.raises(DebiaskdError, match="teacher"):
        fit_spec(specs["student_kd"], cfg, train, val, 0, tmp_path / "kd")
    with pytest.raises(DebiaskdError, match="bias"):
        fit_spec(specs["teacher_debiased"], cfg, train, val, 0, tmp_path / "poe")
    with pytest.raises(DebiaskdError, match="labels"):
        fit_spec(specs["teacher_erm"], cfg, train.assign(label="maybe"), val, 0, tmp_path / "x")
    with pytest.raises(DebiaskdError, match="teacher logits"):
        fit_spec(specs["student_kd"], cfg, train, val, 0, tmp_path / "n", teacher_logits=np.zeros((3, 3)))


def test_bias_probs_column_is_used_and_conf_reg_needs_a_reference(tmp_path) -> None:
    from debiaskd.training.bias import add_bias_probs

    cfg = load_config("smoke", overrides=["debias.nli_method=conf_reg"])
    train, val, bias_probs = _data("nli")
    spec = variant_specs(cfg)["teacher_debiased"]
    framed = add_bias_probs(train, bias_probs)
    with pytest.raises(DebiaskdError, match="conf_reg"):
        fit_spec(spec, cfg, framed, val, 0, tmp_path / "c0")
    erm_logits = np.random.default_rng(0).normal(size=(len(train), 3)).astype(np.float32)
    # a KD student's (debiased) teacher logits never stand in for the ERM reference
    kd_spec = variant_specs(cfg)["student_kd_debiased"]
    with pytest.raises(DebiaskdError, match="ERM"):
        fit_spec(kd_spec, cfg, framed, val, 0, tmp_path / "c3", teacher_logits=erm_logits)
    with pytest.raises(DebiaskdError, match="reference logits"):
        fit_spec(spec, cfg, framed, val, 0, tmp_path / "c4", reference_logits=erm_logits[:5])
    a = fit_spec(spec, cfg, framed, val, 0, tmp_path / "c1", reference_logits=erm_logits)
    b = fit_spec(spec, cfg, train, val, 0, tmp_path / "c2", bias_probs=bias_probs, reference_logits=erm_logits)
    wa, wb = _weights(a.model_dir), _weights(b.model_dir)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_bias_temperature_softens_the_bias_model_in_the_debiasing_loss(tmp_path) -> None:
    from debiaskd.training.rows import soften

    p = np.array([[0.8, 0.15, 0.05], [1 / 3, 1 / 3, 1 / 3]], dtype=np.float32)
    assert soften(p, 1.0) is p
    half = soften(p, 2.0)
    expected = np.sqrt(p[0]) / np.sqrt(p[0]).sum()
    np.testing.assert_allclose(half[0], expected, rtol=1e-6)
    np.testing.assert_allclose(half[1], p[1], rtol=1e-6)  # uniform stays uniform
    assert half[0, 0] < p[0, 0]
    train, val, bias_probs = _data("nli")
    spec = variant_specs(load_config("smoke"))["teacher_debiased"]
    runs = {}
    for t in (1.0, 2.0):
        cfg = load_config("smoke", overrides=[f"debias.bias_temperature={t}"])
        runs[t] = _weights(fit_spec(spec, cfg, train, val, 0, tmp_path / str(t), bias_probs=bias_probs,
                                       progress=False).model_dir)
    assert any(not torch.equal(runs[1.0][k], runs[2.0][k]) for k in runs[1.0])


def test_default_preset_debiases_with_the_recipe_chosen_on_challenge_dev() -> None:
    cfg = load_config("default")
    chosen = json.loads((Path(__file__).parents[1] / "benchmarks" / "results-select-recipe.json").read_text())
    assert "challenge_dev" in chosen["rule"] and chosen["chosen"] == "poe_hypothesis_t1"
    assert {f"debias.{k}": v for k, v in cfg.debias.model_dump().items()
            if f"debias.{k}" in chosen["chosen_overrides"]} == chosen["chosen_overrides"]
    assert (load_config("smoke").debias.bias_temperature, load_config("paper").debias.bias_model) == (1.0, "features")


def test_conf_reg_variants_read_the_erm_teacher_which_the_study_then_trains() -> None:
    specs = variant_specs(load_config("smoke", overrides=["debias.nli_method=conf_reg",
                                                          "variants=[student_kd_debiased]"]))
    assert list(specs) == ["teacher_erm", "teacher_debiased", "student_kd_debiased"]  # teacher_erm added
    assert specs["teacher_debiased"].reference == specs["student_kd_debiased"].reference == "teacher_erm"
    assert specs["teacher_erm"].reference is None
    poe = variant_specs(load_config("smoke", overrides=["variants=[student_kd_debiased]"]))
    assert list(poe) == ["teacher_debiased", "student_kd_debiased"]
    assert all(s.reference is None for s in poe.values())
