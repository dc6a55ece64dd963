"""Every metric against hand-computed values on crafted predictions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from debiaskd.core import metrics as M
from debiaskd.core.errors import DebiaskdError
from debiaskd.data.schema import NLI_LABELS, TWO_WAY_LABELS

HEURISTICS = ("lexical_overlap", "subsequence", "constituent")


def hans_frame(per_subcase: int = 3) -> pd.DataFrame:
    """3 heuristics × 2 labels × 2 subcases × ``per_subcase`` rows in the HANS layout."""
    rows = []
    for heur in HEURISTICS:
        for label in TWO_WAY_LABELS:
            for s in range(2):
                for i in range(per_subcase):
                    rows.append({
                        "pair_id": f"{heur}-{label}-{s}-{i}", "premise": "The doctor saw the lawyer.",
                        "hypothesis": "The lawyer saw the doctor.", "label": label, "heuristic": heur,
                        "subcase": f"{heur}_{label}_{s}", "template": "t", "bias_aligned": label == "entailment",
                        "group": f"{heur}/{label}",
                    })
    return pd.DataFrame(rows)


def test_collapse_two_way_sums_non_entailment_classes_in_any_order():
    probs = np.array([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]])
    np.testing.assert_allclose(M.collapse_two_way(probs, NLI_LABELS), [[0.5, 0.5], [0.1, 0.9]])
    reordered = probs[:, [2, 0, 1]]  # contradiction, entailment, neutral
    np.testing.assert_allclose(
        M.collapse_two_way(reordered, ("contradiction", "entailment", "neutral")), [[0.5, 0.5], [0.1, 0.9]]
    )
    with pytest.raises(DebiaskdError):
        M.collapse_two_way(probs, ("a", "b", "c"))


def test_always_entailment_model_on_hans():
    frame = hans_frame()
    probs = np.tile([0.7, 0.2, 0.1], (len(frame), 1))
    out = M.stratified_metrics(frame, probs, NLI_LABELS, two_way=True)
    assert out["n"] == 36 and out["accuracy"] == pytest.approx(0.5)
    assert out["by_heuristic"] == {h: {"entailment": 1.0, "non-entailment": 0.0} for h in HEURISTICS}
    assert out["by_group"]["lexical_overlap/non-entailment"] == {"n": 6, "accuracy": 0.0}
    assert out["worst_group_accuracy"] == 0.0
    assert out["average_group_accuracy"] == pytest.approx(0.5)
    assert out["heuristic_reliance"] == pytest.approx(1.0)
    assert out["auc"] == pytest.approx(0.5)  # constant scores separate nothing
    assert out["balanced_threshold_accuracy"] == pytest.approx(0.5)
    assert out["ece"] == pytest.approx(0.2)  # confidence 0.7, accuracy 0.5
    assert out["balanced_accuracy"] == pytest.approx(0.5)
    assert len(out["by_subcase"]) == 12
    assert out["by_subcase"]["subsequence_entailment_1"] == 1.0
    assert out["by_subcase"]["subsequence_non-entailment_0"] == 0.0


def test_heuristic_reliance_of_a_model_right_only_on_lexical_overlap_non_entailment():
    frame = hans_frame()
    p_ent = np.where(frame["label"] == "entailment", 0.9, 0.8)  # always says entailment ...
    p_ent[(frame["group"] == "lexical_overlap/non-entailment").to_numpy()] = 0.2  # ... except here
    probs = np.stack([p_ent, 1 - p_ent], axis=1)
    out = M.stratified_metrics(frame, probs, TWO_WAY_LABELS, two_way=True)
    assert out["accuracy"] == pytest.approx(24 / 36)
    assert out["by_heuristic"]["lexical_overlap"] == {"entailment": 1.0, "non-entailment": 1.0}
    assert out["heuristic_reliance"] == pytest.approx(1.0 - 6 / 18)
    assert out["worst_group_accuracy"] == 0.0
    assert out["average_group_accuracy"] == pytest.approx(4 / 6)
    # P(entailment) ranks: 18 entailed at 0.9 above 12 at 0.8 and 6 at 0.2: perfect separation
    assert out["auc"] == pytest.approx(1.0)
    assert out["balanced_threshold_accuracy"] == pytest.approx(1.0)


def test_auc_and_balanced_threshold_by_hand():
    y = np.array([0, 0, 1, 1])  # 0 = entailment column
    p_ent = np.array([0.9, 0.4, 0.6, 0.1])
    probs = np.stack([p_ent, 1 - p_ent], axis=1)
    assert M.auc(probs, y, TWO_WAY_LABELS) == pytest.approx(0.75)
    assert M.balanced_threshold_accuracy(p_ent, y == 0) == pytest.approx(0.5)
    # ties at the threshold get expected credit: 3 tied at 0.5 of which 2 are called positive
    assert M.balanced_threshold_accuracy(np.array([0.5, 0.5, 0.5, 0.1]), np.array([1, 0, 1, 0])) == pytest.approx(
        2 / 3)
    assert M.auc(probs, np.zeros(4, dtype=int), TWO_WAY_LABELS) is None
    assert M.balanced_threshold_accuracy(p_ent, np.ones(4, dtype=bool)) is None


def test_three_way_macro_auc():
    probs = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.6, 0.3, 0.1]])
    assert M.auc(probs, np.array([0, 1, 2, 0]), NLI_LABELS) == pytest.approx(1.0)
    # by hand: class 0 (row 0 at 0.5 vs 0.1, 0.1, 0.6) → 2/3; class 1 (rows 1, 3 at 0.8, 0.3 vs 0.1, 0.1) → 1;
    # class 2 (row 2 at 0.8 vs 0.4, 0.1, 0.1) → 1
    probs2 = np.array([[0.5, 0.1, 0.4], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.6, 0.3, 0.1]])
    y2 = np.array([0, 1, 2, 1])
    assert M.auc(probs2, y2, NLI_LABELS) == pytest.approx((2 / 3 + 1 + 1) / 3)
    assert M.auc(probs2, np.zeros(4, dtype=int), NLI_LABELS) is None


def test_ece_by_hand():
    probs = np.array([[0.95, 0.05], [0.85, 0.15], [0.65, 0.35], [0.25, 0.75]])
    y = np.array([0, 1, 0, 1])  # correct, wrong, correct, correct
    expected = (0.05 + 0.85 + 0.35 + 0.25) / 4
    assert M.expected_calibration_error(probs, y, 10) == pytest.approx(expected)
    # a perfectly calibrated bin: confidence 0.75 and 3 of 4 right
    probs2 = np.tile([0.75, 0.25], (4, 1))
    assert M.expected_calibration_error(probs2, np.array([0, 0, 0, 1]), 10) == pytest.approx(0.0)


def test_three_way_data_is_not_collapsed_and_unknown_labels_are_refused():
    frame = pd.DataFrame({"label": ["entailment", "neutral", "contradiction", "neutral"],
                          "group": ["none/entailment", "none/neutral", "none/contradiction", "none/neutral"]})
    probs = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])
    out = M.stratified_metrics(frame, probs, NLI_LABELS, two_way=False)
    assert out["accuracy"] == pytest.approx(0.5)
    assert out["by_group"]["none/neutral"]["accuracy"] == pytest.approx(0.5)
    assert out["worst_group_accuracy"] == 0.0
    assert "by_heuristic" not in out and "balanced_threshold_accuracy" not in out
    assert out["balanced_accuracy"] == pytest.approx((1.0 + 0.5 + 0.0) / 3)
    bad = frame.assign(label=["entailment", "maybe", "neutral", "neutral"])
    with pytest.raises(DebiaskdError, match="maybe"):
        M.stratified_metrics(bad, probs, NLI_LABELS, two_way=False)


def test_vision_groups_are_label_colour_cells():
    frame = pd.DataFrame({"image_id": range(6), "label": [3, 3, 3, 5, 5, 5],
                          "color": ["red", "red", "blue", "blue", "blue", "red"],
                          "bias_aligned": [True, True, False, True, True, False]})
    frame["group"] = frame["label"].astype(str) + "/" + frame["color"]
    names = [str(i) for i in range(10)]
    probs = np.zeros((6, 10))
    probs[np.arange(6), [3, 3, 5, 5, 5, 5]] = 1.0  # predicts the colour's usual label
    out = M.stratified_metrics(frame, probs, names, two_way=False)
    assert out["by_group"] == {"3/blue": {"n": 1, "accuracy": 0.0}, "3/red": {"n": 2, "accuracy": 1.0},
                               "5/blue": {"n": 2, "accuracy": 1.0}, "5/red": {"n": 1, "accuracy": 1.0}}
    assert out["worst_group_accuracy"] == 0.0
    assert out["heuristic_reliance"] == pytest.approx(1.0 - 0.5)


def test_bootstrap_interval_contains_estimate_and_is_seeded():
    rng = np.random.default_rng(1)
    correct = rng.random(200) < 0.7
    lo, hi = M.bootstrap_ci(correct, 500, 0.95, seed=3)
    assert lo < correct.mean() < hi
    assert hi - lo < 0.2
    assert M.bootstrap_ci(correct, 500, 0.95, seed=3) == (lo, hi)
    lo90, hi90 = M.bootstrap_ci(correct, 500, 0.5, seed=3)
    assert lo <= lo90 <= hi90 <= hi
    groups = np.array(["a", "b"] * 100)
    wlo, whi = M.bootstrap_worst_group_ci(correct, groups, 300, 0.95, seed=0)
    worst = min(correct[groups == g].mean() for g in ("a", "b"))
    assert wlo <= worst <= whi


def test_mcnemar_exact_and_chi_square():
    a = np.array([1, 0, 0, 0, 0, 0, 1, 1], dtype=bool)  # b10 counts a right, b wrong
    b = np.array([0, 1, 1, 1, 1, 1, 1, 1], dtype=bool)
    out = M.mcnemar(a, b)
    assert (out["b01"], out["b10"]) == (5, 1)
    assert out["exact"] and out["p_value"] == pytest.approx(2 * (1 + 6) / 64)
    a = np.r_[np.ones(30), np.zeros(10), np.ones(50)].astype(bool)
    b = np.r_[np.zeros(30), np.ones(10), np.ones(50)].astype(bool)
    out = M.mcnemar(a, b)
    assert (out["b01"], out["b10"]) == (10, 30)
    assert out["statistic"] == pytest.approx((20 - 1) ** 2 / 40)
    from scipy.stats import chi2

    assert out["p_value"] == pytest.approx(chi2.sf(9.025, 1))
    assert M.mcnemar(a, a)["p_value"] == 1.0


def test_mean_std_ci_across_seeds():
    out = M.mean_std_ci([0.5, 0.7, None])
    assert out["n"] == 2 and out["mean"] == pytest.approx(0.6)
    assert out["std"] == pytest.approx(math.sqrt(0.02))
    assert out["ci_high"] - out["mean"] == pytest.approx(12.7062047 * math.sqrt(0.02) / math.sqrt(2), rel=1e-6)
    single = M.mean_std_ci([0.4])
    assert single["std"] == 0.0 and single["ci_low"] == single["ci_high"] == 0.4
    assert M.mean_std_ci([])["mean"] is None


def test_retention_agreement_and_error_concentration():
    teacher = {"challenge_accuracy": 0.5, "worst_group_accuracy": 0.0,
               "by_group": {"a": 0.8, "b": 0.0}}
    student = {"challenge_accuracy": 0.4, "worst_group_accuracy": 0.1, "by_group": {"a": {"accuracy": 0.6}, "b": 0.1}}
    out = M.retention(student, teacher)
    assert out["robustness_retention"] == pytest.approx(0.8)
    assert out["by_group_retention"] == {"a": pytest.approx(0.75), "b": None}
    assert out["worst_group_retention"] is None
    agree = M.agreement(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 1]), np.array(["a", "a", "b", "b"]))
    assert agree == {"overall": 0.5, "by_group": {"a": 1.0, "b": 0.0}}
    frame = pd.DataFrame({"group": ["a", "a", "a", "b"]})
    conc = M.error_concentration(frame, np.array([True, True, False, False]))
    assert conc["n_errors"] == 2
    assert conc["by_group"]["b"]["share_of_errors"] == 0.5
    assert conc["by_group"]["b"]["lift"] == pytest.approx(0.5 / 0.25)
    assert conc["by_group"]["a"]["error_rate"] == pytest.approx(1 / 3)


def test_stratified_sample_keeps_group_shares():
    groups = ["a"] * 60 + ["b"] * 30 + ["c"] * 10
    idx = M.stratified_sample_index(groups, 20, seed=0)
    picked = pd.Series(np.array(groups)[idx]).value_counts().to_dict()
    assert picked == {"a": 12, "b": 6, "c": 2}
    assert list(idx) == sorted(idx) and len(set(idx)) == 20
    assert np.array_equal(idx, M.stratified_sample_index(groups, 20, seed=0))
    assert not np.array_equal(idx, M.stratified_sample_index(groups, 20, seed=1))
    # a tiny group still appears
    small = ["a"] * 98 + ["b"] * 2
    assert "b" in set(np.array(small)[M.stratified_sample_index(small, 10, seed=0)])
    assert len(M.stratified_sample_index(groups, 500)) == 100


def test_hard_subset_accuracy_uses_the_bert_difficulty_count():
    # four pairs; the two that fewer than 50 of 100 BERT runs got right form the hard subset
    frame = pd.DataFrame({"label": ["entailment", "neutral", "contradiction", "neutral"],
                          "group": ["none/entailment", "none/neutral", "none/contradiction", "none/neutral"],
                          "bert_correct": [100, 12, 49, 50]})
    names = ["entailment", "neutral", "contradiction"]
    # predictions: right, wrong (says entailment), right, right
    probs = np.array([[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.1, 0.1, 0.8], [0.1, 0.8, 0.1]])
    out = M.stratified_metrics(frame, probs, names, two_way=False)
    assert out["hard_n"] == 2 and out["hard_accuracy"] == pytest.approx(0.5)
    assert out["accuracy"] == pytest.approx(0.75)
    assert "hard_accuracy" not in M.stratified_metrics(frame.drop(columns="bert_correct"), probs, names, False)


def test_accuracy_by_matches_fairlearn_metricframe():
    """The disaggregation gives what Fairlearn's MetricFrame gives (it replaced it for speed)."""
    from fairlearn.metrics import MetricFrame, count

    rng = np.random.default_rng(3)
    keys = rng.choice(["lexical_overlap/entailment", "negation/non-entailment", "b", "a/2"], size=400)
    y_true, y_pred = rng.integers(0, 3, 400), rng.integers(0, 3, 400)
    ours = M.accuracy_by(keys, y_true, y_pred)
    frame = MetricFrame(metrics={"accuracy": lambda t, p: float(np.mean(t == p)), "n": count}, y_true=y_true,
                        y_pred=y_pred, sensitive_features=pd.Series(keys, name="group")).by_group
    assert list(ours) == [str(g) for g in frame.index]
    for group, row in frame.iterrows():
        assert ours[group]["n"] == int(row["n"])
        assert ours[group]["accuracy"] == pytest.approx(float(row["accuracy"]), abs=1e-12)
    assert M.accuracy_by(np.array([], dtype=object), np.array([]), np.array([])) == {}


def test_auc_matches_scikit_learn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(5)
    for _ in range(20):
        y = rng.integers(0, 2, 300)
        score = np.round(rng.random(300), 1)  # many ties
        assert M._binary_auc(y, score) == pytest.approx(roc_auc_score(y, score), abs=1e-12)
    assert M._binary_auc(np.ones(5), np.arange(5.0)) is None


def test_stratified_metrics_with_construction_marks_scores_held_out_rows():
    from debiaskd.core.metrics import construction_seen, stratified_metrics

    frame = pd.DataFrame({
        "label": ["entailment", "non-entailment"] * 4,
        "heuristic": ["lexical_overlap"] * 8,
        "subcase": ["a", "b", "a", "b", "c", "d", "c", "d"],
        "bias_aligned": [True, False] * 4,
        "construction_seen": [True] * 4 + [False] * 4,
    })
    frame["group"] = frame["heuristic"] + "/" + frame["label"]
    # P(entailment): seen rows all 0.9 (heuristic), held-out rows right on both labels
    p_ent = np.array([0.9, 0.9, 0.9, 0.9, 0.8, 0.2, 0.7, 0.3])
    probs = np.stack([p_ent, 1 - p_ent], axis=1)
    out = stratified_metrics(frame, probs, ["entailment", "non-entailment"], two_way=True)
    assert out["n"] == 4 and out["n_total"] == 8 and out["constructions"] == {"held_out": 4, "seen": 4}
    assert out["accuracy"] == 1.0 and out["auc"] == 1.0 and out["heuristic_reliance"] == 0.0
    assert out["seen"]["accuracy"] == 0.5 and out["seen"]["balanced_accuracy"] == 0.5
    assert out["seen"]["heuristic_reliance"] == 1.0 and out["seen"]["auc"] == 0.5
    assert set(out["by_subcase"]) == {"a", "b", "c", "d"}
    unmarked = stratified_metrics(frame.drop(columns="construction_seen"), probs, ["entailment", "non-entailment"],
                                  two_way=True)
    assert unmarked["n"] == 8 and "seen" not in unmarked and unmarked["accuracy"] == 0.75
    assert construction_seen(frame.assign(construction_seen=None)) is None
