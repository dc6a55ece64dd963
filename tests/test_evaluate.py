"""Evaluation of models whose behaviour is known, end to end through batched inference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from debiaskd.core.config import load_config
from debiaskd.data.schema import NLI_LABELS, TWO_WAY_LABELS
from debiaskd.evaluation.evaluate import EvalResult, compare_models, evaluate_model, evaluate_spec, sample_split
from debiaskd.evaluation.inference import predict_proba
from debiaskd.training.models import LoadedModel, build_nli_teacher, minilm_path, save_model

HEURISTICS = ("lexical_overlap", "subsequence", "constituent")
SPECIAL = (0, 101, 102)  # [PAD] [CLS] [SEP] of the MiniLM vocabulary


@pytest.fixture(scope="module")
def cfg():
    return load_config("smoke")


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(minilm_path()))


class AlwaysEntailment(nn.Module):
    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        return torch.tensor([2.0, 0.0, 0.0]).expand(input_ids.shape[0], 3)


class OverlapOnly(nn.Module):
    """Entailment iff at least half of the hypothesis word pieces occur in the premise."""

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        out = []
        for ids, types, mask in zip(input_ids, token_type_ids, attention_mask, strict=True):
            content = mask.bool() & ~torch.isin(ids, torch.tensor(SPECIAL))
            prem, hyp = set(ids[content & (types == 0)].tolist()), ids[content & (types == 1)].tolist()
            rate = sum(t in prem for t in hyp) / max(1, len(hyp))
            out.append([20 * (rate - 0.5), -20 * (rate - 0.5) - 1.0, -20 * (rate - 0.5)])  # else contradiction
        return torch.tensor(out)


def loaded(module: nn.Module, tokenizer) -> LoadedModel:
    return LoadedModel(module, {"task": "nli", "label_names": list(NLI_LABELS)}, tokenizer)


def hans_frame(per_subcase: int = 2) -> pd.DataFrame:
    """Every hypothesis uses only premise words (the HANS construction)."""
    nouns = ["doctor", "lawyer", "artist", "banker", "judge", "actor"]
    rows = []
    for heur in HEURISTICS:
        for label in TWO_WAY_LABELS:
            for s in range(2):
                for i in range(per_subcase):
                    a, b = nouns[(i + s) % 6], nouns[(i + s + 1) % 6]
                    premise = f"The {a} saw the {b}" + (" near the old house." if i % 2 else ".")
                    hyp = f"The {b} saw the {a}." if label == "non-entailment" else f"The {a} saw the {b}."
                    rows.append({"pair_id": f"{heur}-{label}-{s}-{i}", "premise": premise, "hypothesis": hyp,
                                 "label": label, "heuristic": heur, "subcase": f"{heur}_{label}_{s}",
                                 "template": "t", "bias_aligned": label == "entailment", "group": f"{heur}/{label}"})
    return pd.DataFrame(rows)


def id_frame() -> pd.DataFrame:
    """In-distribution: overlapping pairs entailed, disjoint ones contradicted, one overlapping neutral."""
    rows = [
        ("The cat sat on the mat.", "The cat sat.", "entailment", "lexical_overlap", True),
        ("A man plays a guitar on stage.", "A man plays a guitar.", "entailment", "lexical_overlap", True),
        ("Dogs run in the park.", "Birds fly over oceans quickly.", "contradiction", "none", False),
        ("She reads a book.", "Nobody is here today at all.", "contradiction", "none", False),
        ("The old woman smiled.", "The woman smiled.", "neutral", "lexical_overlap", False),
    ]
    return pd.DataFrame([
        {"pair_id": str(i), "premise": p, "hypothesis": h, "label": y, "heuristic": heur, "subcase": "",
         "template": "", "bias_aligned": aligned, "group": f"{heur}/{y}"}
        for i, (p, h, y, heur, aligned) in enumerate(rows)
    ])


def test_always_entailment_model(cfg, tokenizer):
    result = evaluate_model(loaded(AlwaysEntailment(), tokenizer), {"test": id_frame(), "challenge": hans_frame()},
                            cfg)
    assert result.in_distribution_accuracy == pytest.approx(2 / 5)
    assert result.challenge_accuracy == pytest.approx(0.5)
    assert result.worst_group_accuracy == 0.0
    assert result.heuristic_reliance == pytest.approx(1.0)
    assert result.challenge_auc == pytest.approx(0.5)
    assert result.by_group["constituent/entailment"] == 1.0
    assert result.by_group["constituent/non-entailment"] == 0.0
    p = np.exp(2) / (np.exp(2) + 2)
    assert result.challenge_ece == pytest.approx(abs(p - 0.5), abs=1e-6)
    m = result.metrics
    assert m["challenge/lexical_overlap/non-entailment/accuracy"] == 0.0
    assert m["challenge/lexical_overlap/entailment/accuracy"] == 1.0
    assert m["test/accuracy"] == pytest.approx(0.4)
    assert m["challenge/auc"] == pytest.approx(0.5)
    lo, hi = result.ci["challenge_accuracy"]
    assert lo <= 0.5 <= hi
    probs = result.predictions["challenge"]["probs"]
    assert probs.shape == (len(hans_frame()), 2)  # collapsed to two-way


def test_overlap_only_model(cfg, tokenizer):
    result = evaluate_model(loaded(OverlapOnly(), tokenizer), {"test": id_frame(), "challenge": hans_frame()}, cfg)
    assert result.in_distribution_accuracy == pytest.approx(4 / 5)  # wrong only on the overlapping neutral pair
    assert result.splits["test"]["by_group"]["lexical_overlap/neutral"]["accuracy"] == 0.0
    assert result.splits["test"]["heuristic_reliance"] == pytest.approx(1.0)  # aligned right, the neutral wrong
    assert result.challenge_accuracy == pytest.approx(0.5)
    assert result.heuristic_reliance == pytest.approx(1.0)
    assert result.splits["challenge"]["by_heuristic"]["subsequence"] == {"entailment": 1.0, "non-entailment": 0.0}


def test_compare_models_on_known_behaviour(cfg, tokenizer):
    splits = {"test": id_frame(), "challenge": hans_frame()}
    teacher = evaluate_model(loaded(OverlapOnly(), tokenizer), splits, cfg)
    student = evaluate_model(loaded(AlwaysEntailment(), tokenizer), splits, cfg)
    on_challenge = compare_models(teacher, student)
    assert on_challenge["robustness_retention"] == pytest.approx(1.0)
    assert on_challenge["agreement"]["overall"] == 1.0
    assert on_challenge["mcnemar"]["b01"] == on_challenge["mcnemar"]["b10"] == 0
    assert on_challenge["by_group_retention"]["lexical_overlap/non-entailment"] is None  # teacher at 0
    on_test = compare_models(teacher, student, split="test")
    # they disagree on the two disjoint pairs (teacher: contradiction-ish, student: entailment)
    assert on_test["agreement"]["overall"] == pytest.approx(3 / 5)
    assert on_test["agreement"]["by_group"]["none/contradiction"] == 0.0
    assert on_test["mcnemar"]["b10"] == 2 and on_test["mcnemar"]["b01"] == 0
    assert on_test["student_errors"]["by_group"]["none/contradiction"]["share_of_errors"] == pytest.approx(2 / 3)
    assert on_test["in_distribution_gap"] == pytest.approx(0.4 - 0.8)


def test_predict_proba_restores_order_and_matches_unpadded(cfg):
    model, tok = build_nli_teacher(cfg.nli_model, 0)
    lm = LoadedModel(model.eval(), {"task": "nli", "label_names": list(NLI_LABELS)}, tok)
    frame = id_frame()
    batched = predict_proba(lm, frame, batch_size=2, max_length=32, device="cpu")
    single = np.concatenate([predict_proba(lm, frame.iloc[[i]], batch_size=1, max_length=32, device="cpu")
                             for i in range(len(frame))])
    fixed = predict_proba(lm, frame, batch_size=2, max_length=32, device="cpu", fixed_padding=True)
    np.testing.assert_allclose(batched, single, atol=1e-5)
    np.testing.assert_allclose(fixed, single, atol=1e-5)
    np.testing.assert_allclose(batched.sum(axis=1), 1.0, atol=1e-6)
    assert not np.allclose(batched[0], batched[2])  # rows differ, so a mix-up would show


def test_save_load_roundtrip(tmp_path, cfg, tokenizer):
    result = evaluate_model(loaded(OverlapOnly(), tokenizer), {"test": id_frame(), "challenge": hans_frame()}, cfg)
    result.save(tmp_path)
    assert (tmp_path / "predictions.npz").is_file() and (tmp_path / "eval.json").is_file()
    back = EvalResult.load(tmp_path)
    assert back.by_group == result.by_group and back.ci == result.ci
    assert back.challenge_accuracy == result.challenge_accuracy
    np.testing.assert_array_equal(back.predictions["challenge"]["correct"], result.predictions["challenge"]["correct"])
    assert list(back.predictions["test"]["group"]) == list(result.predictions["test"]["group"])


def test_evaluate_spec_limit_keeps_group_shares(tmp_path, cfg):
    model, tok = build_nli_teacher(cfg.nli_model, 0)
    path = save_model(model, tmp_path / "m", {"task": "nli", "label_names": list(NLI_LABELS)}, tok)
    frame = hans_frame(per_subcase=4)  # 6 groups × 8 rows
    frame = pd.concat([frame, frame[frame["group"] == "subsequence/entailment"].assign(
        pair_id=lambda d: d["pair_id"] + "x")], ignore_index=True)  # one group twice as large
    out = evaluate_spec(path, "inline", cfg, limit=28, seed=0, data=frame)
    assert out["n"] == 28
    assert out["by_group"]["subsequence/entailment"]["n"] == 8
    assert all(v["n"] == 4 for g, v in out["by_group"].items() if g != "subsequence/entailment")
    for key in ("accuracy", "worst_group_accuracy", "by_heuristic", "by_subcase", "auc", "ece", "heuristic_reliance"):
        assert key in out
    assert out["worst_group_accuracy"] == min(v["accuracy"] for v in out["by_group"].values())
    again = evaluate_spec(path, "inline", cfg, limit=28, seed=0, data=frame)
    assert again["accuracy"] == out["accuracy"]
    assert len(sample_split(frame, 28, seed=1)) == 28


def test_evaluate_spec_reads_a_hans_file(tmp_path, cfg):
    pytest.importorskip("debiaskd.data.loaders", reason="the data layer (loaders) is not in this tree yet")
    model, tok = build_nli_teacher(cfg.nli_model, 0)
    path = save_model(model, tmp_path / "m", {"task": "nli", "label_names": list(NLI_LABELS)}, tok)
    frame = hans_frame(per_subcase=3)
    hans = pd.DataFrame({
        "gold_label": frame["label"], "sentence1_binary_parse": "", "sentence2_binary_parse": "",
        "sentence1_parse": "", "sentence2_parse": "", "sentence1": frame["premise"], "sentence2": frame["hypothesis"],
        "pairID": [f"ex{i}" for i in range(len(frame))], "heuristic": frame["heuristic"],
        "subcase": frame["subcase"], "template": "temp1",
    })
    tsv = tmp_path / "heuristics_evaluation_set.txt"
    hans.to_csv(tsv, sep="\t", index=False)
    out = evaluate_spec(path, f"hans:{tsv}", cfg, limit=12)
    assert out["n"] == 12
    assert set(out["by_heuristic"]) == set(HEURISTICS)
    assert all(v["n"] == 2 for v in out["by_group"].values())


def marked_frame() -> pd.DataFrame:
    """hans_frame with construction marks: subcases ``*_0`` seen, ``*_1`` held out; the held-out
    non-entailed hypotheses use words the premise lacks (OverlapOnly gets them right)."""
    frame = hans_frame()
    seen = frame["subcase"].str.endswith("_0")
    frame.loc[~seen & (frame["label"] == "non-entailment"), "hypothesis"] = "Pilots thanked nurses quickly today"
    return frame.assign(construction=frame["subcase"], construction_seen=seen)


def test_marked_challenge_scores_held_out_constructions_and_seen_apart(cfg, tokenizer):
    frame = marked_frame()
    result = evaluate_model(loaded(OverlapOnly(), tokenizer), {"test": id_frame(), "challenge": frame}, cfg)
    m = result.metrics
    # held out: right on both labels; seen: the overlap heuristic fails the non-entailed half
    assert result.challenge_accuracy == pytest.approx(1.0)
    assert result.challenge_seen_accuracy == pytest.approx(0.5)
    assert result.worst_group_accuracy == pytest.approx(1.0) and result.heuristic_reliance == pytest.approx(0.0)
    assert result.challenge_auc == pytest.approx(1.0)
    assert set(result.by_group.values()) == {1.0}
    assert result.by_group_seen["lexical_overlap/non-entailment"] == 0.0
    assert m["challenge/lexical_overlap/non-entailment/accuracy"] == 1.0
    assert m["challenge_seen/lexical_overlap/non-entailment/accuracy"] == 0.0
    assert m["challenge_seen/heuristic_reliance"] == pytest.approx(1.0)
    assert m["challenge/n"] == len(frame) / 2 and m["challenge/n_total"] == len(frame)
    assert m["challenge/lexical_overlap/entailment/n"] == m["challenge_seen/lexical_overlap/entailment/n"] == 2
    assert set(result.splits["challenge"]["by_subcase"]) == set(frame["subcase"])  # every subcase, seen or not
    assert result.ci["challenge_accuracy"] == [1.0, 1.0]
    assert result.summary()["challenge_seen_accuracy"] == pytest.approx(0.5)
    # a challenge_dev split only adds its own metrics
    dev = marked_frame().assign(construction_seen=False)
    with_dev = evaluate_model(loaded(OverlapOnly(), tokenizer), {"test": id_frame(), "challenge": frame,
                                                                 "challenge_dev": dev}, cfg)
    assert with_dev.challenge_accuracy == result.challenge_accuracy
    assert with_dev.metrics["challenge_dev/n"] == len(dev) and "challenge_dev_seen/n" not in with_dev.metrics
    assert with_dev.metrics["challenge_dev/lexical_overlap/non-entailment/accuracy"] == 0.5


def test_unmarked_challenge_is_scored_whole_and_label_balanced(cfg, tokenizer):
    frame = hans_frame()
    plain = evaluate_model(loaded(OverlapOnly(), tokenizer), {"challenge": frame}, cfg)
    assert plain.challenge_seen_accuracy is None and not plain.by_group_seen
    assert not any(k.startswith("challenge_seen/") for k in plain.metrics)
    assert plain.metrics["challenge/n"] == len(frame) and "challenge/n_total" not in plain.metrics
    assert plain.challenge_accuracy == pytest.approx(plain.splits["challenge"]["accuracy"])  # balanced labels
    # three entailed pairs for one non-entailed: predicting entailment everywhere is still 0.5
    skewed = pd.concat([frame] + [frame[frame.label == "entailment"].assign(pair_id=lambda d, k=k: d.pair_id + f"-{k}")
                                  for k in range(2)], ignore_index=True)
    always = evaluate_model(loaded(AlwaysEntailment(), tokenizer), {"challenge": skewed}, cfg)
    assert always.splits["challenge"]["accuracy"] == pytest.approx(0.75)
    assert always.challenge_accuracy == pytest.approx(0.5)
