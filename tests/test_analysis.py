"""Mechanism analysis on tiny models: JSON and plots, hand-checked attention metrics, head ablation."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from debiaskd.analysis import plots
from debiaskd.analysis.attention import (
    attention_entropy,
    encode_batch,
    forward_internals,
    head_similarity,
    overlap_mask,
    overlap_share,
    uniform_overlap_share,
)
from debiaskd.analysis.circuits import ablate_heads, attention_heads, head_importance, top_heads
from debiaskd.analysis.patching import (
    SEGMENTS,
    encode_pairs,
    minimal_pairs,
    patching_map,
    path_patch,
    summarize,
    transplant_map,
)
from debiaskd.analysis.probes import bias_features, negation_present, overlap_rate, probe_layers
from debiaskd.analysis.run import analyze
from debiaskd.core.config import load_config
from debiaskd.core.metrics import gold_indices
from debiaskd.data.schema import NLI_LABELS, TWO_WAY_LABELS, ImageSplit
from debiaskd.training.models import LoadedModel, build_nli_student, build_nli_teacher, build_vision_model, save_model

PNG_MAGIC = b"\x89PNG"
HEURISTICS = ("lexical_overlap", "subsequence", "constituent")


@pytest.fixture(scope="module")
def cfg():
    return load_config("smoke")


@pytest.fixture(scope="module")
def teacher(cfg):
    model, tok = build_nli_teacher(cfg.nli_model, 0)
    return LoadedModel(model.eval(), {"task": "nli", "label_names": list(NLI_LABELS), "variant": "teacher_debiased"},
                       tok)


def hans_frame(per_subcase: int = 2) -> pd.DataFrame:
    nouns = ["doctor", "lawyer", "artist", "banker", "judge", "actor", "senator", "student"]
    rows = []
    for h_i, heur in enumerate(HEURISTICS):
        for label in TWO_WAY_LABELS:
            for s in range(2):
                for i in range(per_subcase):
                    a, b = nouns[(i + s + h_i) % 8], nouns[(i + 2 * s + h_i + 3) % 8]
                    premise = f"The {a} near the {nouns[(i + 5) % 8]} saw the {b}."
                    hyp = f"The {b} saw the {a}." if label == "non-entailment" else f"The {a} saw the {b}."
                    if s and label == "non-entailment":
                        hyp = f"The {a} did not see the {b}."
                    rows.append({"pair_id": f"{heur}-{label}-{s}-{i}", "premise": premise, "hypothesis": hyp,
                                 "label": label, "heuristic": heur, "subcase": f"{heur}_{label}_{s}",
                                 "template": "t", "bias_aligned": label == "entailment", "group": f"{heur}/{label}"})
    return pd.DataFrame(rows)


def is_png(path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == PNG_MAGIC


def test_analyze_teacher_student_pair_writes_json_and_plots(tmp_path, cfg, teacher):
    student_model = build_nli_student(teacher.model.config, cfg.nli_model, 1)
    student_dir = save_model(student_model, tmp_path / "student",
                             {"task": "nli", "label_names": list(NLI_LABELS), "variant": "student_kd"},
                             teacher.tokenizer)
    out = tmp_path / "analysis"
    result = analyze(student_dir, hans_frame(), out, cfg.model_copy(update={"analysis": cfg.analysis.model_copy(
        update={"n_examples": 24})}), reference=teacher)
    on_disk = json.loads((out / "analysis.json").read_text())
    assert on_disk == result
    assert result["n_examples"] == 24 and result["subsets"] == {"aligned": 12, "anti_bias": 12}
    assert result["model_names"] == {"model": "student_kd", "reference": "teacher_debiased"}
    for role, layers in (("model", 1), ("reference", 2)):
        report = result["models"][role]
        assert len(report["attention"]["anti_bias"]["overlap_share"]) == layers
        assert len(report["head_importance"]["accuracy_drop"]) == layers
        assert len(report["probes"]["accuracy"]["label"]) == layers + 1  # embeddings + layers
    sim = result["head_similarity"]
    assert len(sim["student_heads"]) == 2 and len(sim["teacher_heads"]) == 4
    assert np.asarray(sim["similarity"]).shape == (2, 4)
    assert {c["teacher_head"] for c in result["counterparts"]} <= set(sim["teacher_heads"])
    assert isinstance(result["overlap_attention_anti_bias"], float) and result["top_heads"]
    names = {p.split("/")[-1] for p in result["plots"]}
    assert {"model_overlap_attention.png", "reference_head_importance.png", "probes.png",
            "teacher_vs_student.png", "patching.png"} <= names
    patching = result["patching"]  # smoke preset: 8 minimal pairs, both models patched, the teacher transplanted
    assert patching["n_pairs"] == 6 and set(patching["models"]) == {"model", "reference"}
    assert np.asarray(patching["models"]["reference"]["per_pair"]["head"]).shape == (2, 2, 6)
    assert patching["models"]["model"]["summary"]["top"] and patching["transplant"]["layer_map"] == [1]
    assert np.asarray(patching["transplant"]["per_pair"]["head"]).shape == (1, 2, 6)
    assert all(is_png(p) for p in result["plots"])


def test_overlap_share_and_entropy_by_hand(teacher):
    frame = pd.DataFrame({"premise": ["the cat sat"], "hypothesis": ["the cat"]})
    batch = encode_batch(teacher.tokenizer, frame, 16)  # [CLS] the cat sat [SEP] the cat [SEP]
    assert batch.inputs["input_ids"].shape == (1, 8)
    mask = overlap_mask(batch)
    assert mask[0].nonzero().tolist() == [[5, 1], [6, 2]]
    uniform = torch.full((1, 1, 8, 8), 1 / 8)
    focused = uniform.clone()
    focused[0, 0, 5] = torch.nn.functional.one_hot(torch.tensor(1), 8).float()
    focused[0, 0, 6] = torch.nn.functional.one_hot(torch.tensor(2), 8).float()
    maps = [torch.cat([uniform, focused], dim=1)]  # 1 layer, 2 heads
    np.testing.assert_allclose(overlap_share(maps, mask), [[0.125, 1.0]], atol=1e-6)
    assert uniform_overlap_share(batch, mask) == pytest.approx(0.125)
    np.testing.assert_allclose(attention_entropy(maps, batch.attention_mask),
                               [[math.log(8), 6 / 8 * math.log(8)]], atol=1e-5)


def test_head_similarity_finds_permuted_heads():
    t = 6
    first = torch.zeros(t, t)
    first[:, 0] = 1.0
    diag = torch.eye(t)
    uniform = torch.full((t, t), 1 / t)
    teacher_maps = [torch.stack([first, diag, uniform])[None]]  # (1, 3, T, T)
    student_maps = [torch.stack([uniform, first])[None]]
    sim = head_similarity(teacher_maps, student_maps, torch.ones(1, t))
    assert sim["best_match"]["L0H0"]["teacher_head"] == "L0H2"
    assert sim["best_match"]["L0H1"]["teacher_head"] == "L0H0"
    assert sim["best_match"]["L0H1"]["similarity"] == pytest.approx(1.0, abs=1e-5)
    # "first" vs diagonal: row 0 identical (similarity 1), rows 1-5 disjoint one-hots (0) → 1/6
    assert np.asarray(sim["similarity"])[1, 1] == pytest.approx(1 / 6, abs=1e-5)


def wire_to_one_head(model: torch.nn.Module, layer: int, head: int) -> None:
    """Zero every head's columns of the attention output projection except ``(layer, head)``'s (amplified)."""
    with torch.no_grad():
        for site in attention_heads(model):
            w = site.out_proj.weight
            for h in range(site.num_heads):
                cols = slice(h * site.head_dim, (h + 1) * site.head_dim)
                w[:, cols] *= 20.0 if (site.layer, h) == (layer, head) else 0.0
        model.classifier.weight *= 200.0  # make the answer sensitive to the representation


def test_ablation_finds_the_head_a_model_is_wired_to(cfg):
    model, tok = build_nli_teacher(cfg.nli_model, 3)  # 2 layers × 2 heads
    model.eval()
    wire_to_one_head(model, 0, 1)
    frame = hans_frame(per_subcase=4)
    batch = encode_batch(tok, frame, 32)
    with ablate_heads(model, [(0, 1)]):  # without the head, every input gets the same answer
        ablated = forward_internals(model, batch).logits
    assert torch.allclose(ablated, ablated[0].expand_as(ablated), atol=1e-5)
    with torch.no_grad():  # centre the logits so the head's input-dependent signal decides the answer
        model.classifier.bias -= forward_internals(model, batch).logits.mean(0)
    logits = forward_internals(model, batch).logits
    assert len(set(logits.argmax(-1).tolist())) > 1  # the head's signal alone decides the answers
    gold = logits.argmax(-1).numpy()  # the model's own answers: baseline accuracy is 1
    importance = head_importance(model, batch, gold, NLI_LABELS)
    assert importance["baseline_accuracy"] == 1.0
    best = top_heads(importance, k=4)
    assert best[0]["head"] == "L0H1" and best[0]["accuracy_drop"] > 0
    for other in best[1:]:
        assert abs(other["accuracy_drop"]) < 1e-9 and abs(other["logprob_drop"]) < 1e-5
    # hooks are removed when the context closes
    with ablate_heads(model, [(0, 1)]):
        ablated = forward_internals(model, batch).logits
    assert not torch.allclose(ablated, logits)
    assert torch.allclose(forward_internals(model, batch).logits, logits)


def test_two_way_gold_importance_runs_on_three_way_model(teacher):
    frame = hans_frame()
    batch = encode_batch(teacher.tokenizer, frame, 32)
    gold = gold_indices(frame["label"].tolist(), TWO_WAY_LABELS, two_way=True)
    out = head_importance(teacher.model, batch, gold, NLI_LABELS, two_way=True)
    assert np.isfinite(np.asarray(out["logprob_drop"])).all()
    assert 0.0 <= out["baseline_accuracy"] <= 1.0


def test_probe_features_and_probe_accuracy():
    assert overlap_rate("The cat sat on the mat.", "The cat sat.") == 1.0
    assert overlap_rate("The cat sat.", "A dog sat.") == pytest.approx(1 / 3)
    assert negation_present("He didn't go") and negation_present("nobody came") and not negation_present("he went")
    frame = pd.DataFrame({"premise": ["a b c", "a b c", "a b c", "a b c"],
                          "hypothesis": ["a b", "x y", "a not", "a z"]})
    feats = bias_features(frame)
    assert feats["negation"].tolist() == [0, 0, 1, 0]
    assert feats["high_overlap"].tolist() == [1, 0, 0, 0]  # rates 1, 0, .5, .5: above the median .5
    rng = np.random.default_rng(0)
    y = np.array([0, 1] * 40)
    noise = rng.normal(size=(80, 5))
    signal = noise.copy()
    signal[:, 0] += 4.0 * y
    out = probe_layers([noise, signal], {"y": y})
    assert out["accuracy"]["y"][1] > 0.95 and out["accuracy"]["y"][0] < 0.8
    assert out["majority"]["y"] == 0.5
    assert probe_layers([noise], {"one": np.zeros(80)})["accuracy"]["one"] == [None]


def test_vision_analysis(tmp_path, cfg):
    model = build_vision_model("cnn_small", 4, 10, 0)
    lm = LoadedModel(model.eval(), {"task": "vision", "label_names": [str(i) for i in range(10)]})
    rng = np.random.default_rng(0)
    n = 40
    labels = np.arange(n) % 10
    colors = np.where(np.arange(n) % 4 == 0, "blue", "red")
    frame = pd.DataFrame({"image_id": [str(i) for i in range(n)], "label": labels, "color": colors,
                          "bias_aligned": colors == "red"})
    frame["group"] = frame["label"].astype(str) + "/" + frame["color"]
    data = ImageSplit(rng.integers(0, 256, (n, 3, 8, 8), dtype=np.uint8), frame)
    result = analyze(lm, data, tmp_path, cfg.model_copy(update={"analysis": cfg.analysis.model_copy(
        update={"n_examples": n})}))
    report = result["models"]["model"]
    assert result["task"] == "vision" and result["subsets"]["anti_bias"] == 10
    assert set(report["probes"]["accuracy"]) == {"color", "label"}
    assert len(report["channel_importance"]["accuracy_drop"]) == model.head.in_features
    assert all(is_png(p) for p in result["plots"]) and len(result["plots"]) == 2


def test_report_plots(tmp_path):
    variants = {"teacher_debiased": {"by_group": {"lexical_overlap/non-entailment": 0.4,
                                                  "lexical_overlap/entailment": 0.9}},
                "student_kd": {"by_group": {"lexical_overlap/non-entailment": {"accuracy": 0.2}}}}
    a = plots.plot_group_accuracies(variants, tmp_path / "groups.png")
    b = plots.plot_retention({"student_kd": {"robustness_retention": 0.8,
                                             "by_group_retention": {"x": 0.5, "y": None}}}, tmp_path / "ret.png")
    assert is_png(a) and is_png(b)


# ------------------------------------------------------------------ activation patching
def test_minimal_pairs_link_each_anti_bias_overlap_pair_to_its_original():
    frame = hans_frame(per_subcase=2)
    pairs = minimal_pairs(frame)
    # anti-bias overlap rows only (non-entailment, full overlap): the "did not" rows add a word and drop out
    assert len(pairs) == 6 and set(pairs["label"]) == {"non-entailment"}
    assert (pairs["twin_premise"] == pairs["premise"]).all() and (pairs["twin_hypothesis"] == pairs["premise"]).all()
    swap = pd.DataFrame([{"premise": "The doctor saw the lawyer.", "hypothesis": "The lawyer saw the doctor.",
                          "label": "non-entailment", "heuristic": "lexical_overlap",
                          "subcase": "ln_subject/object_swap"},
                         {"premise": "The doctor saw the lawyer.", "hypothesis": "The doctor did not see the lawyer.",
                          "label": "entailment", "heuristic": "negation", "subcase": "ne_x"}])
    twin = minimal_pairs(swap)
    assert len(twin) == 1 and twin.loc[0, "twin_hypothesis"] == "The doctor saw the lawyer."
    # deterministic and stratified by subcase
    many = hans_frame(per_subcase=8)
    a, b = minimal_pairs(many, n=8, seed=1), minimal_pairs(many, n=8, seed=1)
    assert a.equals(b) and len(a) == 8 and a["subcase"].nunique() == 3


def test_patching_a_run_into_itself_changes_nothing(teacher):
    pairs = minimal_pairs(hans_frame())
    source, target = encode_pairs(teacher.tokenizer, pairs, 32)
    for batch in (source, target):
        result = patching_map(teacher.model, batch, batch, NLI_LABELS, batch_size=4)
        for kind in ("head", "mlp", "resid"):
            assert np.abs(np.asarray(result[kind])).max() < 1e-5, kind
        assert np.abs(path_patch(teacher.model, batch, batch, NLI_LABELS, (0, 1), (1, 0))).max() < 1e-5
    full = patching_map(teacher.model, source, target, NLI_LABELS)
    last = np.asarray(full["resid"])[-1, SEGMENTS.index("cls")]  # the classifier reads the first token
    np.testing.assert_allclose(last, full["ld_source"] - full["ld_target"], atol=1e-4)


def test_patching_finds_the_head_a_model_is_wired_to(cfg):
    model, tok = build_nli_teacher(cfg.nli_model, 3)  # 2 layers × 2 heads
    model.eval()
    wire_to_one_head(model, 0, 1)
    pairs = minimal_pairs(hans_frame(per_subcase=4))
    source, target = encode_pairs(tok, pairs, 32)
    result = patching_map(model, source, target, NLI_LABELS, batch_size=5)
    gap = result["ld_source"] - result["ld_target"]
    assert np.abs(gap).mean() > 1e-2  # the pairs differ in what the wired head reads
    head = np.asarray(result["head"])
    np.testing.assert_allclose(head[0, 1], gap, rtol=1e-3, atol=1e-3)  # that head alone carries the difference
    for layer, h in ((0, 0), (1, 0), (1, 1)):
        assert np.abs(head[layer, h]).max() < 1e-5
    summary = summarize(result, n_boot=200, top=6)
    ranked = sorted(summary["top"], key=lambda c: -abs(c["mean"]))
    assert ranked[0]["component"] == "L0H1" and ranked[0]["ci_low"] <= ranked[0]["mean"] <= ranked[0]["ci_high"]
    # path patching: the wired head reaches the classifier through layer 1, whose heads write nothing
    assert np.abs(path_patch(model, source, target, NLI_LABELS, (0, 1), (1, 0))).max() < 1e-5
    # transplanting the model's own heads into itself through the identity layer map is patching
    same = transplant_map(model, model, [0, 1], source, target, NLI_LABELS)
    np.testing.assert_allclose(np.asarray(same["head"]), head, atol=1e-5)


def test_cli_analyze_patching_flag(tmp_path, cfg, teacher, capsys):
    from debiaskd.cli import main

    student = save_model(build_nli_student(teacher.model.config, cfg.nli_model, 1), tmp_path / "student",
                         {"task": "nli", "label_names": list(NLI_LABELS), "variant": "student_kd"}, teacher.tokenizer)
    ref = save_model(teacher.model, tmp_path / "teacher", teacher.meta, teacher.tokenizer)
    base = ["analyze", "--preset", "smoke", "--model", str(student), "--reference", str(ref),
            "--data", "generated:challenge"]
    assert main([*base, "--out", str(tmp_path / "on"), "--patching", "--patching-pairs", "5"]) == 0
    printed = capsys.readouterr().out
    assert "patching student_kd on 5 pairs" in printed and "patching teacher_debiased" in printed
    on = json.loads((tmp_path / "on" / "analysis.json").read_text())
    assert on["patching"]["n_pairs"] == 5 and (tmp_path / "on" / "patching.png").is_file()
    assert main([*base, "--out", str(tmp_path / "off"), "--no-patching"]) == 0
    assert "patching" not in json.loads((tmp_path / "off" / "analysis.json").read_text())
