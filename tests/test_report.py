"""The study report: aggregation over seeds, paired tests, and the table the CLI prints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from debiaskd.core.config import load_config
from debiaskd.reporting.report import build_summary, results_headers, results_rows, retention_intervals, write_report


def _eval(tmp: Path, variant: str, seed: int, correct: np.ndarray, id_acc: float) -> tuple[dict, Path]:
    folder = tmp / f"{variant}-s{seed}"
    folder.mkdir(parents=True)
    groups = np.where(np.arange(len(correct)) < 50, "lexical_overlap/non-entailment", "lexical_overlap/entailment")
    np.savez_compressed(folder / "predictions.npz", **{"challenge/correct": correct, "challenge/group": groups})
    ev = {"variant": variant, "seed": seed, "role": "teacher", "run_id": f"r-{variant}-{seed}",
          "in_distribution_accuracy": id_acc, "challenge_accuracy": float(correct.mean()),
          "worst_group_accuracy": 0.1, "challenge_auc": 0.6, "heuristic_reliance": 0.2,
          "by_group": {"lexical_overlap/non-entailment": float(correct[:50].mean())}}
    return ev, folder


def _study(tmp: Path, seeds: list[int]):
    cfg = load_config("smoke", overrides=[f"seeds={seeds}", "variants=[teacher_erm,teacher_debiased]"])
    rng = np.random.default_rng(0)
    evals, dirs = [], []
    for seed in seeds:
        erm = rng.random(200) < 0.5
        debiased = erm.copy()
        flip = rng.choice(200, 30 + 5 * seed, replace=False)  # debiased fixes some of ERM's errors
        debiased[flip] = True
        for variant, correct, acc in (("teacher_erm", erm, 0.86 + 0.01 * seed),
                                      ("teacher_debiased", debiased, 0.84 + 0.02 * seed)):
            ev, d = _eval(tmp, variant, seed, correct, acc)
            evals.append(ev)
            dirs.append(d)
    return cfg, evals, dirs


def _finding(summary: dict, name: str) -> dict:
    return {f["name"]: f for f in summary["findings"]}[name]


def _no_pooling(summary: dict, text: str) -> None:
    """No p-value, key or sentence that pools examples across seeds."""
    assert "pooled" not in json.dumps(summary).lower()
    assert "pooled" not in text.lower()
    assert "comparisons" not in summary


def test_several_seeds_give_t_intervals_over_seeds_and_no_pooled_test(tmp_path: Path) -> None:
    cfg, evals, dirs = _study(tmp_path, [0, 1, 2])
    summary = build_summary(cfg, evals, dirs)
    ids = [e["in_distribution_accuracy"] for e in evals if e["variant"] == "teacher_debiased"]
    entry = summary["variants"]["teacher_debiased"]
    assert entry["in_distribution_accuracy"] == pytest.approx(np.mean(ids))
    half = stats.t.ppf(0.975, 2) * np.std(ids, ddof=1) / np.sqrt(3)
    assert entry["in_distribution_accuracy_ci95"] == pytest.approx([np.mean(ids) - half, np.mean(ids) + half])

    f = _finding(summary, "debiased_vs_erm_teacher")
    assert {"name", "a", "b", "mean_difference", "ci_low", "ci_high", "n_seeds"} <= set(f)
    assert {"p_value", "bootstrap_ci_low", "bootstrap_ci_high", "seeds_significant"} <= set(f)
    assert (f["a"], f["b"], f["n_seeds"]) == ("teacher_debiased", "teacher_erm", 3)
    diffs = [s["difference"] for s in f["per_seed"]]
    assert [s["seed"] for s in f["per_seed"]] == [0, 1, 2]
    res = stats.ttest_1samp(diffs, 0.0)
    ci = res.confidence_interval(0.95)
    assert f["mean_difference"] == pytest.approx(np.mean(diffs))
    assert (f["ci_low"], f["ci_high"]) == pytest.approx((ci.low, ci.high))
    assert f["p_value"] == pytest.approx(res.pvalue)
    assert f["ci_low"] < f["mean_difference"] < f["ci_high"] and f["ci_low"] > 0
    assert f["bootstrap_ci_low"] < f["mean_difference"] < f["bootstrap_ci_high"]
    assert f["seeds_significant"] == sum(s["mcnemar_p_value"] < 0.05 for s in f["per_seed"])
    assert all(s["b01"] == 0 and s["b10"] > 0 for s in f["per_seed"])  # debiased only ever fixes errors

    row = {r[0]: r for r in results_rows(summary)}["teacher_debiased"]
    assert "±" in row[1]  # ID accuracy shows the spread over seeds
    write_report(cfg, summary, tmp_path / "report", [])
    text = (tmp_path / "report" / "report.md").read_text()
    assert "t-interval over 3 seeds" in text and "hierarchical bootstrap" in text
    assert f"in {f['seeds_significant']} of 3 seeds individually" in text
    _no_pooling(json.loads((tmp_path / "report" / "summary.json").read_text()), text)


def test_an_interval_including_zero_reads_not_significant_over_seeds(tmp_path: Path) -> None:
    cfg = load_config("smoke", overrides=["seeds=[0,1,2]", "variants=[teacher_erm,teacher_debiased]"])
    rng = np.random.default_rng(5)
    evals, dirs = [], []
    for seed, shift in zip((0, 1, 2), (20, -20, 2), strict=True):  # seeds disagree in sign
        erm = rng.random(200) < 0.5
        debiased = erm.copy()
        if shift > 0:
            debiased[rng.choice(np.flatnonzero(~erm), shift, replace=False)] = True
        else:
            debiased[rng.choice(np.flatnonzero(erm), -shift, replace=False)] = False
        for variant, correct in (("teacher_erm", erm), ("teacher_debiased", debiased)):
            ev, d = _eval(tmp_path, variant, seed, correct, 0.8)
            evals.append(ev)
            dirs.append(d)
    summary = build_summary(cfg, evals, dirs)
    f = _finding(summary, "debiased_vs_erm_teacher")
    assert f["ci_low"] < 0 < f["ci_high"] and f["p_value"] > 0.05
    assert f["seeds_significant"] == 2  # two seeds are significant alone, in opposite directions
    write_report(cfg, summary, tmp_path / "report", [])
    text = (tmp_path / "report" / "report.md").read_text()
    assert "n.s. over seeds" in text
    _no_pooling(summary, text)


def test_one_seed_has_no_interval_over_seeds(tmp_path: Path) -> None:
    cfg, evals, dirs = _study(tmp_path, [0])
    summary = build_summary(cfg, evals, dirs)
    f = _finding(summary, "debiased_vs_erm_teacher")
    assert f["n_seeds"] == 1 and len(f["per_seed"]) == 1
    for key in ("ci_low", "ci_high", "p_value", "bootstrap_ci_low", "bootstrap_ci_high"):
        assert f[key] is None, key
    assert f["mean_difference"] == pytest.approx(f["per_seed"][0]["difference"])
    assert summary["variants"]["teacher_debiased"].get("in_distribution_accuracy_ci95") is None
    assert "±" not in {r[0]: r for r in results_rows(summary)}["teacher_debiased"][1]
    write_report(cfg, summary, tmp_path / "report", [])
    text = (tmp_path / "report" / "report.md").read_text()
    assert "no interval over seeds" in text and "t-interval" not in text
    _no_pooling(summary, text)


def test_retention_intervals_are_paired_bootstraps_within_groups() -> None:
    rng = np.random.default_rng(1)
    teacher = rng.random(300) < 0.7
    groups = np.repeat(np.array(["same", "none_right", "teacher_blind"]), 100)
    student = teacher.copy()
    student[100:200] = False  # the student gets nothing right in this group
    teacher[200:] = False  # and the teacher nothing here
    out = retention_intervals(student, teacher, groups, n_boot=200)
    assert out["same"] == [1.0, 1.0]  # identical predictions: every paired draw gives exactly 1
    assert out["none_right"] == [0.0, 0.0]
    assert out["teacher_blind"] is None  # retention undefined when the teacher has nothing to keep
    half = rng.random(100) < 0.5
    wide = retention_intervals(half, np.ones(100, bool), np.array(["g"] * 100), n_boot=500)["g"]
    assert wide[0] < half.mean() < wide[1]


def test_report_shows_retention_intervals_per_bias_type(tmp_path: Path) -> None:
    cfg = load_config("smoke", overrides=["variants=[student_kd]", "eval.bootstrap=100"])
    rng = np.random.default_rng(0)
    evals, dirs = [], []
    for variant, p_right in (("teacher_debiased", 0.8), ("student_kd", 0.4)):
        ev, d = _eval(tmp_path, variant, 0, rng.random(200) < p_right, 0.8)
        ev["role"] = "teacher" if variant.startswith("teacher") else "student"
        ev["model_uri"] = None
        evals.append(ev)
        dirs.append(d)
    summary = build_summary(cfg, evals, dirs)
    cis = summary["transfer"]["student_kd"]["by_group_retention_ci95"]
    lo, hi = cis["lexical_overlap/non-entailment"]
    point = summary["transfer"]["student_kd"]["by_group_retention"]["lexical_overlap/non-entailment"]
    assert lo < point < hi
    write_report(cfg, summary, tmp_path / "report", [])
    assert f"lexical_overlap {point:.2f} [{lo:.2f}, {hi:.2f}]" in (tmp_path / "report" / "report.md").read_text()


def test_hard_subset_column_appears_only_with_bert_difficulty(tmp_path: Path) -> None:
    cfg, evals, dirs = _study(tmp_path, [0])
    for ev in evals:
        ev["in_distribution_hard_accuracy"] = 0.4 if ev["variant"] == "teacher_erm" else 0.5
    summary = build_summary(cfg, evals, dirs)
    headers = results_headers(summary)
    assert headers[2] == "ID hard"
    row = {r[0]: r for r in results_rows(summary)}["teacher_debiased"]
    assert len(row) == len(headers) and row[2] == "50.0"
    plain = build_summary(cfg, [dict(e, in_distribution_hard_accuracy=None) for e in evals], dirs)
    assert "ID hard" not in results_headers(plain)


def test_several_seeds_give_retention_t_intervals_over_seeds(tmp_path: Path) -> None:
    cfg = load_config("smoke", overrides=["variants=[student_kd]", "seeds=[0,1,2]"])
    rng = np.random.default_rng(3)
    evals, dirs, ratios = [], [], []
    for seed in (0, 1, 2):
        accs = {}
        for variant, p_right in (("teacher_debiased", 0.8), ("student_kd", 0.3 + 0.1 * seed)):
            ev, d = _eval(tmp_path, variant, seed, rng.random(200) < p_right, 0.8)
            ev["role"] = "teacher" if variant.startswith("teacher") else "student"
            evals.append(ev)
            dirs.append(d)
            accs[variant] = ev["by_group"]["lexical_overlap/non-entailment"]
        ratios.append(accs["student_kd"] / accs["teacher_debiased"])
    tr = build_summary(cfg, evals, dirs)["transfer"]["student_kd"]
    half = stats.t.ppf(0.975, 2) * np.std(ratios, ddof=1) / np.sqrt(3)
    assert tr["retention_interval"] == "t over seeds"
    assert tr["by_group_retention_ci95"]["lexical_overlap/non-entailment"] == pytest.approx(
        [np.mean(ratios) - half, np.mean(ratios) + half])


def test_uneven_transfer_reads_each_heuristics_anti_bias_group() -> None:
    from debiaskd.reporting.report import anti_bias_retention

    per = anti_bias_retention({
        "lexical_overlap/entailment": 1.0, "lexical_overlap/non-entailment": 0.5,
        "negation/entailment": 0.1, "negation/non-entailment": 1.3, "constituent/non-entailment": None,
        "none/entailment": 0.9, "3/red": 0.7,
    })
    assert per == {"lexical_overlap/non-entailment": 0.5, "negation/entailment": 0.1}


def test_seeds_with_their_own_number_of_challenge_examples_get_a_bootstrap_interval(tmp_path: Path) -> None:
    """Each seed draws its own data: the vision challenge (colour-conflicting test images) differs in size."""
    cfg = load_config("smoke", overrides=["seeds=[0,1,2]", "variants=[teacher_erm,teacher_debiased]"])
    rng = np.random.default_rng(3)
    evals, dirs = [], []
    for seed, n in zip((0, 1, 2), (200, 150, 180), strict=True):
        erm = rng.random(n) < 0.5
        debiased = erm | (rng.random(n) < 0.3)
        for variant, correct in (("teacher_erm", erm), ("teacher_debiased", debiased)):
            ev, d = _eval(tmp_path, variant, seed, correct, 0.8)
            evals.append(ev)
            dirs.append(d)
    f = _finding(build_summary(cfg, evals, dirs), "debiased_vs_erm_teacher")
    assert f["bootstrap_ci_low"] is not None and f["bootstrap_ci_low"] < f["mean_difference"] < f["bootstrap_ci_high"]
    assert f["bootstrap_ci_low"] > 0  # every seed gains about 15 points
