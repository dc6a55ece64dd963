"""The robustness gate: a pure function of metrics → (decision, reasons).

Competence comes first (REFERENCES.md): a student near chance can look "robust" on
challenge data by ignoring the heuristic, so the gate checks in-distribution accuracy
before it looks at retention or worst-group accuracy. ``tracking.py`` applies the decision
to MLflow aliases; this module never touches MLflow.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from debiaskd.config import GateConfig

#: the metric keys the gate reads from a variant's summary entry
GATE_KEYS = ("in_distribution_accuracy", "challenge_accuracy", "worst_group_accuracy")


@dataclass
class GateDecision:
    passed: bool
    reasons: list[str]
    checks: dict[str, bool] = field(default_factory=dict)
    values: dict[str, float | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def tags(self) -> dict[str, str]:
        """MLflow tags recording the decision and why."""
        return {
            "gate.decision": "passed" if self.passed else "refused",
            "gate.reasons": "; ".join(self.reasons)[:4900],
            **{f"gate.check.{k}": str(v).lower() for k, v in self.checks.items()},
        }


def _num(metrics: dict[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    return None if value is None else float(value)


def evaluate_gate(
    student: dict[str, Any],
    teacher: dict[str, Any],
    cfg: GateConfig,
    champion: dict[str, Any] | None = None,
) -> GateDecision:
    """Decide whether ``student`` may become champion, given its teacher and the current champion."""
    s_id, t_id = _num(student, "in_distribution_accuracy"), _num(teacher, "in_distribution_accuracy")
    s_ch, t_ch = _num(student, "challenge_accuracy"), _num(teacher, "challenge_accuracy")
    s_wg, t_wg = _num(student, "worst_group_accuracy"), _num(teacher, "worst_group_accuracy")
    missing = [k for k, v in {"student in_distribution_accuracy": s_id, "student challenge_accuracy": s_ch,
                              "student worst_group_accuracy": s_wg, "teacher in_distribution_accuracy": t_id,
                              "teacher challenge_accuracy": t_ch, "teacher worst_group_accuracy": t_wg}.items()
               if v is None]
    if missing:
        return GateDecision(False, [f"not evaluated: missing {', '.join(missing)}"], {"evaluated": False})

    checks: dict[str, bool] = {}
    reasons: list[str] = []
    retention = s_ch / t_ch if t_ch > 0 else (1.0 if s_ch > 0 else 0.0)
    values = {"student_id": s_id, "teacher_id": t_id, "retention": retention,
              "student_worst_group": s_wg, "teacher_worst_group": t_wg}

    checks["competent"] = s_id >= cfg.min_in_distribution_accuracy
    reasons.append(
        f"in-distribution accuracy {s_id:.3f} {'≥' if checks['competent'] else '<'} floor "
        f"{cfg.min_in_distribution_accuracy:.3f}"
    )
    checks["id_within_tolerance"] = s_id >= t_id - cfg.id_tolerance
    reasons.append(
        f"in-distribution accuracy {s_id:.3f} vs teacher {t_id:.3f} "
        f"({'within' if checks['id_within_tolerance'] else 'outside'} tolerance {cfg.id_tolerance:.3f})"
    )
    checks["retention"] = retention >= cfg.min_retention
    reasons.append(
        f"challenge retention {retention:.3f} {'≥' if checks['retention'] else '<'} {cfg.min_retention:.3f}"
    )
    wg_floor = cfg.min_worst_group_ratio * t_wg
    checks["worst_group"] = s_wg >= wg_floor
    reasons.append(
        f"worst-group accuracy {s_wg:.3f} {'≥' if checks['worst_group'] else '<'} "
        f"{cfg.min_worst_group_ratio:.2f} × teacher {t_wg:.3f}"
    )
    if cfg.require_not_worse_than_champion and champion:
        c_ch = _num(champion, "challenge_accuracy")
        c_wg = _num(champion, "worst_group_accuracy")
        if c_ch is None or c_wg is None:
            checks["not_worse_than_champion"] = True
            reasons.append("current champion has no recorded metrics; not compared")
        else:
            checks["not_worse_than_champion"] = s_ch >= c_ch and s_wg >= c_wg
            reasons.append(
                f"challenge {s_ch:.3f} / worst-group {s_wg:.3f} vs champion {c_ch:.3f} / {c_wg:.3f}"
                f" ({'not worse' if checks['not_worse_than_champion'] else 'worse'})"
            )
    passed = all(checks.values())
    return GateDecision(passed, reasons, checks, values)
