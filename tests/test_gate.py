"""The robustness gate as a pure function: competence first, then retention and worst group."""

from debiaskd.config import GateConfig
from debiaskd.gate import evaluate_gate

TEACHER = {"in_distribution_accuracy": 0.80, "challenge_accuracy": 0.60, "worst_group_accuracy": 0.40}


def student(id_acc, ch, wg):
    return {"in_distribution_accuracy": id_acc, "challenge_accuracy": ch, "worst_group_accuracy": wg}


def test_passing_student_is_promoted():
    d = evaluate_gate(student(0.78, 0.58, 0.35), TEACHER, GateConfig())
    assert d.passed, d.reasons
    assert d.values["retention"] == 0.58 / 0.60


def test_incompetent_student_is_refused_even_if_robust_looking():
    # near chance in distribution but "robust" on challenge: the REFERENCES.md trap
    d = evaluate_gate(student(0.40, 0.75, 0.60), TEACHER, GateConfig())
    assert not d.passed
    assert d.checks["competent"] is False
    assert d.checks["id_within_tolerance"] is False
    assert d.checks["retention"] is True


def test_low_retention_and_worst_group_refused():
    d = evaluate_gate(student(0.79, 0.40, 0.10), TEACHER, GateConfig(min_retention=0.9, min_worst_group_ratio=0.5))
    assert not d.passed
    assert d.checks == {"competent": True, "id_within_tolerance": True, "retention": False, "worst_group": False}
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
