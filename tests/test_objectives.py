"""The objective registry: declared once, read by the config and the study, prepared by need, hooks for layers."""

from __future__ import annotations

import inspect
import subprocess
import sys
from dataclasses import replace
from typing import get_args

import numpy as np
import pytest
import torch

from data_fixtures import tiny_images, tiny_nli
from debiaskd.core import objectives as catalog
from debiaskd.core.config import DebiasConfig, load_config
from debiaskd.core.errors import DebiaskdError
from debiaskd.core.study import VariantSpec, variant_specs
from debiaskd.training import loop, losses
from debiaskd.training.objectives import CATALOG, Need, choices, implementation
from debiaskd.training.objectives.base import DebiasObjective, DistillObjective
from debiaskd.training.objectives.taps import LayerTaps
from debiaskd.training.recipe import Recipe
from debiaskd.training.rows import Sources, prepare_rows
from train_helpers import fit_spec


def test_every_declared_objective_has_one_registered_implementation_of_its_family() -> None:
    for name, declared in CATALOG.items():
        cls = implementation(name)
        assert cls.declared is declared
        assert issubclass(cls, DebiasObjective if declared.family == "debias" else DistillObjective), name
    with pytest.raises(KeyError):
        catalog.register("not_declared")


def test_config_choices_come_from_the_registry_and_unknown_methods_exit_2_naming_the_key(tmp_path, capsys) -> None:
    fields = DebiasConfig.model_fields
    assert get_args(fields["nli_method"].annotation) == choices("debias", "nli")
    assert get_args(fields["vision_method"].annotation) == choices("debias", "vision")
    assert "erm" not in choices("debias", "nli")  # the baseline is never a debiasing choice
    with pytest.raises(DebiaskdError, match=r"debias\.nli_method"):
        load_config("smoke", overrides=["debias.nli_method=group_dro"])  # declared for vision only
    from debiaskd.cli import main

    assert main(["compile", "--out", str(tmp_path / "p.yaml"), "--preset", "smoke",
                 "--set", "debias.nli_method=magic"]) == 2
    assert "debias.nli_method" in capsys.readouterr().err


def test_the_config_and_the_study_design_load_without_torch() -> None:
    code = ("import sys; from debiaskd.core.config import load_config; from debiaskd.core.study import variant_specs; "
            "variant_specs(load_config('smoke', overrides=['debias.nli_method=conf_reg'])); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_erm_reference_follows_what_the_objective_declares(monkeypatch) -> None:
    cfg = load_config("smoke", overrides=["debias.nli_method=reweight"])
    assert variant_specs(cfg)["teacher_debiased"].reference is None
    declared = CATALOG["reweight"]
    monkeypatch.setitem(CATALOG, "reweight", replace(declared, needs=(*declared.needs, (Need.REFERENCE_LOGITS,))))
    assert variant_specs(cfg)["teacher_debiased"].reference == "teacher_erm"


def _prepared(method: str, sources: Sources, frame, teacher: bool = False):
    distill = [CATALOG["logit_kd"]] if teacher else []
    rows = prepare_rows([*distill, CATALOG[method]], sources, frame, len(frame), torch.device("cpu"),
                        variant="v", teacher="t")
    return {k for k, v in vars(rows).items() if v is not None and k != "n_groups"}


def test_rows_prepare_exactly_what_the_objectives_need() -> None:
    frame = tiny_nli(12)
    bias = np.full((12, 3), 1 / 3, dtype=np.float32)
    everything = Sources(bias_probs=bias, reference_logits=np.zeros((12, 3)), teacher_logits=np.zeros((12, 3)))
    assert _prepared("erm", everything, frame) == set()
    assert _prepared("product_of_experts", everything, frame) == {"bias_probs"}
    assert _prepared("reweight", everything, frame) == {"bias_probs"}
    assert _prepared("reweight", Sources(), frame) == {"group_codes"}  # the fallback without a bias model
    assert _prepared("conf_reg", everything, frame) == {"bias_probs", "reference_probs"}
    assert _prepared("group_dro", everything, frame) == {"group_codes"}
    assert _prepared("erm", everything, frame, teacher=True) == {"teacher_logits"}
    with pytest.raises(DebiaskdError, match="needs bias-model predictions"):
        _prepared("product_of_experts", Sources(), frame)
    with pytest.raises(DebiaskdError, match="conf_reg needs the logits of an ERM"):
        _prepared("conf_reg", Sources(bias_probs=bias), frame)
    with pytest.raises(DebiaskdError, match="'group' column"):
        _prepared("group_dro", Sources(), frame.drop(columns=["group"]))
    with pytest.raises(DebiaskdError, match="distils from 't'"):
        _prepared("erm", Sources(), frame, teacher=True)


def test_forward_hooks_see_what_the_model_reports_as_hidden_states_and_attentions() -> None:
    from debiaskd.training.models import build_nli_teacher, encoder_layers

    cfg = load_config("smoke")
    model, tokenizer = build_nli_teacher(cfg.nli_model, 0)
    model.set_attn_implementation("eager")
    model.eval()
    batch = tokenizer(["The doctor saw the judge.", "A cat."], ["The doctor saw.", "A dog."], padding=True,
                      return_tensors="pt")
    taps = LayerTaps()
    for i, layer in enumerate(encoder_layers(model)):
        taps.add(("hidden", i), layer)
        taps.add(("attention", i), layer.attention.self, lambda out: out[1])
    with torch.no_grad():
        reported = model(**batch, output_hidden_states=True, output_attentions=True)
    n = len(encoder_layers(model))
    hidden, attention = taps.take([("hidden", i) for i in range(n)]), taps.take([("attention", i) for i in range(n)])
    for i in range(n):
        assert torch.equal(hidden[i], reported.hidden_states[i + 1])
        assert torch.equal(attention[i], reported.attentions[i])
    taps.remove()
    with torch.no_grad():
        model(**batch)
    with pytest.raises(RuntimeError):
        taps.take([("hidden", 0)])


def test_kd_temperature_travels_from_the_config_to_the_loss_and_the_loop_never_reads_the_config(
        tmp_path, monkeypatch) -> None:
    assert "StudyConfig" not in inspect.getsource(loop)
    cfg = load_config("smoke", task="vision", overrides=["distill.temperature=3.5", "distill.alpha=0.25"])
    train = tiny_images(32)
    spec = VariantSpec("student_kd", "student", "erm", teacher="teacher_erm")
    seen = []
    real = losses.kd_loss

    def spy(*args, **kwargs):
        seen.append(args[3:5])
        return real(*args, **kwargs)

    monkeypatch.setattr(losses, "kd_loss", spy)
    result = fit_spec(spec, cfg, train, None, 0, tmp_path / "s", teacher_logits=np.zeros((32, 4), dtype=np.float32))
    assert seen and set(seen) == {(0.25, 3.5)}
    assert result.history and Recipe.build(spec, cfg).kd_meta == {"alpha": 0.25, "temperature": 3.5}


def test_layer_transfer_hooks_are_removed_after_training(tmp_path, monkeypatch) -> None:
    from debiaskd.training.models import build_nli_teacher

    cfg = load_config("smoke", overrides=["distill.hidden_weight=1.0", "distill.attention_weight=1.0"])
    teacher, _ = build_nli_teacher(cfg.nli_model, 0)
    removed = []
    real = LayerTaps.remove
    monkeypatch.setattr(LayerTaps, "remove", lambda self: removed.append(1) or real(self))
    spec = VariantSpec("student_kd", "student", "erm", teacher="teacher_erm")
    assert [c.name for c in Recipe.build(spec, cfg).distill] == ["logit_kd", "hidden_mse", "attention_kl"]
    fit_spec(spec, cfg, tiny_nli(24), None, 0, tmp_path / "s", teacher=teacher)
    assert len(removed) == 2  # the hidden-state and the attention objective each released their hooks
