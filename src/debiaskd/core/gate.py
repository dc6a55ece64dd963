"""The robustness gate: a pure function of metrics → (decision, reasons).

Competence comes first (REFERENCES.md): a student near chance can look "robust" on
challenge data by ignoring the heuristic, so the gate checks in-distribution competence
before it looks at retention or worst-group accuracy. Competence is relative to what a
constant predictor scores: accuracy strictly above the test split's majority-class rate
(plus a margin) and Cohen's kappa strictly above a floor (a constant predictor's kappa is 0),
so no preset's numbers can let a constant predictor through. Then the challenge evidence that
accuracy alone hides: challenge AUC not below the teacher's minus a tolerance (threshold-free
separation), and heuristic reliance neither above the teacher's plus a tolerance nor pushed
past zero into the opposite shortcut (a student that answers non-entailment to every challenge
pair has reliance −1 and AUC 0.5).

The thresholds a version was registered with travel with it as ``gate.threshold.<field>``
tags (:func:`threshold_tags`); :func:`effective_gate` combines them with the thresholds of a
later ``promote`` call so that the call can tighten a threshold but never loosen one.
``tracking.py`` applies the decision to MLflow aliases; this module never touches MLflow.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from debiaskd.core.config import GateConfig

#: the metric keys the gate reads from a variant's evidence (tags ``metric.<key>`` / ``teacher.<key>``)
GATE_KEYS = ("in_distribution_accuracy", "challenge_accuracy", "worst_group_accuracy", "challenge_auc",
             "heuristic_reliance", "in_distribution_majority_rate", "in_distribution_kappa")
#: evidence the gate cannot decide without (the student's, and the teacher's first three)
_REQUIRED_STUDENT = ("in_distribution_accuracy", "challenge_accuracy", "worst_group_accuracy",
                     "in_distribution_majority_rate", "in_distribution_kappa")
_REQUIRED_TEACHER = ("in_distribution_accuracy", "challenge_accuracy", "worst_group_accuracy")
#: challenge measures some data cannot give (no heuristic marks): skipped only when neither model has one
_PAIRED = ("challenge_auc", "heuristic_reliance")

THRESHOLD_TAG = "gate.threshold."
#: for each GateConfig field, which of two values is the stricter
_STRICTER: dict[str, Any] = {
    "min_in_distribution_accuracy": max,
    "min_accuracy_above_majority": max,
    "min_kappa": max,
    "id_tolerance": min,
    "min_retention": max,
    "min_worst_group_ratio": max,
    "auc_tolerance": min,
    "reliance_tolerance": min,
    "require_not_worse_than_champion": lambda a, b: bool(a or b),
}


@dataclass
class GateDecision:
    passed: bool
    reasons: list[str]
    checks: dict[str, bool] = field(default_factory=dict)
    values: dict[str, float | None] = field(default_factory=dict)
    #: the thresholds the decision was made with (after :func:`effective_gate`)
    thresholds: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def tags(self) -> dict[str, str]:
        """MLflow tags recording the decision and why."""
        return {
            "gate.decision": "passed" if self.passed else "refused",
            "gate.reasons": "; ".join(self.reasons)[:4900],
            **{f"gate.check.{k}": str(v).lower() for k, v in self.checks.items()},
        }


# ------------------------------------------------------------------ thresholds
def threshold_tags(cfg: GateConfig) -> dict[str, str]:
    """``gate.threshold.<field>`` tags (JSON values) recording the thresholds a version is registered with."""
    return {f"{THRESHOLD_TAG}{k}": json.dumps(v) for k, v in cfg.model_dump().items()}


def thresholds_from_tags(tags: dict[str, str]) -> dict[str, Any]:
    """The ``gate.threshold.*`` values stored on a version (unknown or unreadable ones are left out)."""
    out: dict[str, Any] = {}
    for key, raw in tags.items():
        if not key.startswith(THRESHOLD_TAG):
            continue
        name = key[len(THRESHOLD_TAG):]
        if name not in GateConfig.model_fields:
            continue
        try:
            out[name] = json.loads(raw)
        except (TypeError, ValueError):
            continue
    return out


def effective_gate(stored: dict[str, Any], requested: GateConfig) -> tuple[GateConfig, list[str]]:
    """The thresholds to apply: per field, the stricter of the stored value and the requested one.

    A promote call can tighten a threshold stored on the version but never loosen it. A field with
    no stored value (a version registered before thresholds were stored, or by hand) is judged by
    the stricter of the requested value and the default, so a loose preset cannot loosen it either.
    Returns the config and one note per field where the requested value was overridden.
    """
    defaults = GateConfig()
    values: dict[str, Any] = {}
    notes: list[str] = []
    for name in GateConfig.model_fields:
        asked = getattr(requested, name)
        base = stored.get(name, getattr(defaults, name))
        stricter = _STRICTER[name]
        try:
            chosen = stricter(base, asked)
        except TypeError:  # an unreadable stored value: fall back to the stricter of default and request
            base = getattr(defaults, name)
            chosen = stricter(base, asked)
        values[name] = chosen
        if chosen != asked:
            where = "stored on the version" if name in stored else "the default (none stored)"
            notes.append(f"threshold {name}: {asked} requested is looser than {chosen} {where}; using {chosen}")
    return GateConfig(**values), notes


# ------------------------------------------------------------------ competence
def _num(metrics: dict[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    return None if value is None else float(value)


def competence(metrics: dict[str, Any], cfg: GateConfig) -> tuple[dict[str, bool], list[str]]:
    """The competence checks on one model's in-distribution evidence: the absolute floor, accuracy
    strictly above the majority-class rate plus a margin, kappa strictly above a floor."""
    acc = _num(metrics, "in_distribution_accuracy")
    majority = _num(metrics, "in_distribution_majority_rate")
    kappa = _num(metrics, "in_distribution_kappa")
    checks: dict[str, bool] = {}
    reasons: list[str] = []
    checks["competent"] = acc is not None and acc >= cfg.min_in_distribution_accuracy
    reasons.append(f"in-distribution accuracy {_fmt(acc)} {'≥' if checks['competent'] else '<'} floor "
                   f"{cfg.min_in_distribution_accuracy:.3f}")
    floor = None if majority is None else majority + cfg.min_accuracy_above_majority
    checks["above_majority"] = acc is not None and floor is not None and acc > floor
    reasons.append(f"in-distribution accuracy {_fmt(acc)} {'>' if checks['above_majority'] else '≤'} "
                   f"majority-class rate {_fmt(majority)} + {cfg.min_accuracy_above_majority:.3f}")
    checks["kappa"] = kappa is not None and kappa > cfg.min_kappa
    reasons.append(f"Cohen's kappa {_fmt(kappa)} {'>' if checks['kappa'] else '≤'} {cfg.min_kappa:.3f}")
    return checks, reasons


def is_competent(metrics: dict[str, Any], cfg: GateConfig) -> bool:
    """Whether a model learned the task by the gate's competence checks."""
    return all(competence(metrics, cfg)[0].values())


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


# ------------------------------------------------------------------------ gate
def evaluate_gate(
    student: dict[str, Any],
    teacher: dict[str, Any],
    cfg: GateConfig,
    champion: dict[str, Any] | None = None,
) -> GateDecision:
    """Decide whether ``student`` may become champion, given its teacher and the current champion.

    ``student`` and ``teacher`` hold :data:`GATE_KEYS` (the teacher's of the same seed as the
    student). Missing evidence never passes; challenge AUC and heuristic reliance may be ``None``
    (present but not measurable on the data) only for both models at once.
    """
    thresholds = cfg.model_dump()
    missing = [f"student {k}" for k in _REQUIRED_STUDENT if _num(student, k) is None]
    missing += [f"teacher {k}" for k in _REQUIRED_TEACHER if _num(teacher, k) is None]
    for key in _PAIRED:  # absent, or measured on one model and not the other: the evidence is incomplete
        s_has, t_has = _num(student, key) is not None, _num(teacher, key) is not None
        if key not in student or (t_has and not s_has):
            missing.append(f"student {key}")
        if key not in teacher or (s_has and not t_has):
            missing.append(f"teacher {key}")
    if missing:
        return GateDecision(False, [f"not evaluated: missing {', '.join(missing)}"], {"evaluated": False},
                            thresholds=thresholds)

    s_id, t_id = float(student["in_distribution_accuracy"]), float(teacher["in_distribution_accuracy"])
    s_ch, t_ch = float(student["challenge_accuracy"]), float(teacher["challenge_accuracy"])
    s_wg, t_wg = float(student["worst_group_accuracy"]), float(teacher["worst_group_accuracy"])
    s_auc, t_auc = _num(student, "challenge_auc"), _num(teacher, "challenge_auc")
    s_rel, t_rel = _num(student, "heuristic_reliance"), _num(teacher, "heuristic_reliance")

    checks, reasons = competence(student, cfg)
    retention = s_ch / t_ch if t_ch > 0 else (1.0 if s_ch > 0 else 0.0)
    values = {"student_id": s_id, "teacher_id": t_id, "retention": retention,
              "student_worst_group": s_wg, "teacher_worst_group": t_wg,
              "majority_rate": _num(student, "in_distribution_majority_rate"),
              "student_kappa": _num(student, "in_distribution_kappa"),
              "student_auc": s_auc, "teacher_auc": t_auc, "student_reliance": s_rel, "teacher_reliance": t_rel}

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
    if s_auc is None:  # neither model has one (checked above): the data cannot measure it
        reasons.append("challenge AUC not measurable on this data (single gold class); not compared")
    else:
        checks["challenge_auc"] = s_auc >= t_auc - cfg.auc_tolerance
        reasons.append(
            f"challenge AUC {s_auc:.3f} {'≥' if checks['challenge_auc'] else '<'} teacher {t_auc:.3f} − "
            f"{cfg.auc_tolerance:.3f}"
        )
    if s_rel is None:
        reasons.append("heuristic reliance not measurable on this data (no heuristic marks); not compared")
    else:
        checks["reliance_not_above_teacher"] = s_rel <= t_rel + cfg.reliance_tolerance
        reasons.append(
            f"heuristic reliance {s_rel:.3f} {'≤' if checks['reliance_not_above_teacher'] else '>'} teacher "
            f"{t_rel:.3f} + {cfg.reliance_tolerance:.3f}"
        )
        low = min(t_rel, 0.0) - cfg.reliance_tolerance
        checks["not_over_corrected"] = s_rel >= low
        reasons.append(
            f"heuristic reliance {s_rel:.3f} {'≥' if checks['not_over_corrected'] else '<'} {low:.3f} "
            f"(min(teacher, 0) − tolerance: {'not ' if checks['not_over_corrected'] else ''}over-corrected "
            "into the opposite shortcut)"
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
    return GateDecision(passed, reasons, checks, values, thresholds)
