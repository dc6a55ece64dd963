"""The robustness gate as a pure function: competence first, then retention, worst group, challenge AUC
and heuristic reliance; thresholds stored with a version can be tightened by a promote call, never loosened."""

import numpy as np
import pandas as pd
import pytest

from debiaskd.core import metrics as M
from debiaskd.core.config import GateConfig, load_config
from debiaskd.core.gate import _STRICTER, effective_gate, evaluate_gate, threshold_tags, thresholds_from_tags

TEACHER = {"in_distribution_accuracy": 0.80, "challenge_accuracy": 0.60, "worst_group_accuracy": 0.40,
           "challenge_auc": 0.70, "heuristic_reliance": 0.30, "in_distribution_majority_rate": 0.34,
           "in_distribution_kappa": 0.70}
#: every way a preset or a user could loosen the numbers
LOOSEST = GateConfig(min_in_distribution_accuracy=0.0, min_accuracy_above_majority=0.0, min_kappa=0.0,
                     id_tolerance=1.0, min_retention=0.0, min_worst_group_ratio=0.0, auc_tolerance=1.0,
                     reliance_tolerance=2.0, require_not_worse_than_champion=False)
PRESET_GATES = {p: load_config(p).gate for p in ("smoke", "default", "paper")} | {"loosest": LOOSEST}


def student(id_acc, ch, wg, auc=0.70, reliance=0.25, majority=0.34, kappa=0.65):
    return {"in_distribution_accuracy": id_acc, "challenge_accuracy": ch, "worst_group_accuracy": wg,
            "challenge_auc": auc, "heuristic_reliance": reliance, "in_distribution_majority_rate": majority,
            "in_distribution_kappa": kappa}


def test_passing_student_is_promoted():
    d = evaluate_gate(student(0.78, 0.58, 0.35), TEACHER, GateConfig())
    assert d.passed, d.reasons
    assert d.values["retention"] == 0.58 / 0.60
    assert d.thresholds == GateConfig().model_dump()


def test_incompetent_student_is_refused_even_if_robust_looking():
    # near chance in distribution but "robust" on challenge: the REFERENCES.md trap
    d = evaluate_gate(student(0.40, 0.75, 0.60, kappa=0.05), TEACHER, GateConfig())
    assert not d.passed
    assert d.checks["competent"] is False
    assert d.checks["id_within_tolerance"] is False
    assert d.checks["retention"] is True


def test_low_retention_and_worst_group_refused():
    d = evaluate_gate(student(0.79, 0.40, 0.10), TEACHER, GateConfig(min_retention=0.9, min_worst_group_ratio=0.5))
    assert not d.passed
    # the competence, AUC and reliance checks are new (issue 17); retention and worst group fail as before
    assert d.checks == {"competent": True, "above_majority": True, "kappa": True, "id_within_tolerance": True,
                        "retention": False, "worst_group": False, "challenge_auc": True,
                        "reliance_not_above_teacher": True, "not_over_corrected": True}
    assert any("retention 0.667" in r for r in d.reasons)


def test_not_worse_than_champion():
    champion = student(0.80, 0.62, 0.40)
    d = evaluate_gate(student(0.79, 0.59, 0.38), TEACHER, GateConfig(), champion)
    assert not d.passed and d.checks["not_worse_than_champion"] is False
    d2 = evaluate_gate(student(0.79, 0.59, 0.38), TEACHER, GateConfig(require_not_worse_than_champion=False), champion)
    assert d2.passed


def test_missing_metrics_never_pass():
    d = evaluate_gate({"in_distribution_accuracy": 0.9}, TEACHER, GateConfig())
    assert not d.passed and "not evaluated" in d.reasons[0]
    assert d.tags()["gate.decision"] == "refused"
    no_competence = {k: v for k, v in student(0.78, 0.58, 0.35).items() if k != "in_distribution_kappa"}
    assert not evaluate_gate(no_competence, TEACHER, LOOSEST).passed
    # challenge AUC measured for the teacher but not the student: incomplete, refused
    assert not evaluate_gate(student(0.78, 0.58, 0.35, auc=None), TEACHER, LOOSEST).passed
    # absent from both (not recorded at all) is missing too; None on both means "not measurable on this data"
    bare = {k: v for k, v in student(0.78, 0.58, 0.35).items() if k != "heuristic_reliance"}
    bare_teacher = {k: v for k, v in TEACHER.items() if k != "heuristic_reliance"}
    assert not evaluate_gate(bare, bare_teacher, GateConfig()).passed
    d = evaluate_gate(student(0.78, 0.58, 0.35, reliance=None), {**TEACHER, "heuristic_reliance": None}, GateConfig())
    assert d.passed and any("not measurable" in r for r in d.reasons)


# --------------------------------------------------------- constant predictor
def _constant_evidence(labels: list[str], constant: str) -> dict[str, float]:
    """A model that answers ``constant`` to every test pair, measured by the evaluation code."""
    frame = pd.DataFrame({"label": labels, "group": ["all"] * len(labels)})
    names = ["entailment", "neutral", "contradiction"]
    probs = np.zeros((len(labels), 3))
    probs[:, names.index(constant)] = 1.0
    out = M.stratified_metrics(frame, probs, names, two_way=False)
    return {"accuracy": out["accuracy"], "majority": out["majority_class_rate"], "kappa": out["kappa"]}


def test_evaluation_records_majority_rate_and_kappa_for_a_constant_predictor():
    # an imbalanced test split: 70% entailment; the constant "entailment" predictor scores 0.70
    labels = ["entailment"] * 70 + ["neutral"] * 20 + ["contradiction"] * 10
    ev = _constant_evidence(labels, "entailment")
    assert ev["accuracy"] == pytest.approx(0.70) and ev["majority"] == pytest.approx(0.70)
    assert ev["kappa"] == pytest.approx(0.0)
    # one gold class everywhere and predicted everywhere: kappa is undefined, recorded as 0 (no skill shown)
    assert _constant_evidence(["neutral"] * 5, "neutral")["kappa"] == 0.0


@pytest.mark.parametrize("preset", sorted(PRESET_GATES))
@pytest.mark.parametrize("labels", [
    ["entailment"] * 70 + ["neutral"] * 20 + ["contradiction"] * 10,  # imbalanced three-way
    ["entailment"] * 50 + ["contradiction"] * 50,  # a two-class task: the old 0.5 floor let this through
])
def test_constant_predictor_fails_whatever_the_preset(preset, labels):
    ev = _constant_evidence(labels, "entailment")
    s = student(ev["accuracy"], 0.60, 0.40, auc=0.70, reliance=0.30, majority=ev["majority"], kappa=ev["kappa"])
    d = evaluate_gate(s, TEACHER, PRESET_GATES[preset])
    assert not d.passed
    assert d.checks["above_majority"] is False and d.checks["kappa"] is False


# ----------------------------------------------------------- over-corrector
@pytest.mark.parametrize("preset", sorted(set(PRESET_GATES) - {"loosest"}))
def test_over_corrector_is_refused(preset):
    # non-entailment to every challenge pair: entailed half 0, non-entailed half 1 → reliance −1; a constant
    # P(entailment) on the challenge → AUC 0.5; challenge accuracy 0.5 looks like a fine retention
    s = student(0.78, 0.60, 0.50, auc=0.50, reliance=-1.0)
    d = evaluate_gate(s, TEACHER, PRESET_GATES[preset])
    assert not d.passed
    assert d.checks["not_over_corrected"] is False
    assert d.checks["retention"] is True  # the number the old gate looked at
    if preset != "smoke":
        assert d.checks["challenge_auc"] is False


def test_student_more_heuristic_than_its_teacher_is_refused():
    d = evaluate_gate(student(0.78, 0.58, 0.35, reliance=0.8), TEACHER, GateConfig())
    assert not d.passed and d.checks["reliance_not_above_teacher"] is False


# ---------------------------------------------------------------- thresholds
def test_every_threshold_has_a_direction():
    assert set(_STRICTER) == set(GateConfig.model_fields)


def test_stored_thresholds_roundtrip_through_tags():
    cfg = GateConfig(min_retention=0.95, require_not_worse_than_champion=False)
    tags = threshold_tags(cfg)
    assert tags["gate.threshold.min_retention"] == "0.95"
    assert thresholds_from_tags({**tags, "gate.threshold.bogus": "1", "metric.x": "2"}) == cfg.model_dump()


def test_a_looser_request_never_loosens_stored_thresholds():
    stored = GateConfig().model_dump()
    applied, notes = effective_gate(stored, load_config("smoke").gate)
    assert applied == GateConfig()
    assert any("min_retention" in n for n in notes)
    # a stricter request tightens
    applied, _ = effective_gate(stored, GateConfig(min_retention=0.95, auc_tolerance=0.01))
    assert applied.min_retention == 0.95 and applied.auc_tolerance == 0.01
    # stored smoke thresholds, the same request: nothing changes
    smoke = load_config("smoke").gate
    assert effective_gate(smoke.model_dump(), smoke) == (smoke, [])
    # nothing stored (an older or hand-made version): the defaults are the floor
    applied, notes = effective_gate({}, LOOSEST)
    assert applied == GateConfig() and notes
