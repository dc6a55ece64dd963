"""summary.json and report.md of a study: every robustness figure beside its context.

Per REFERENCES.md, no challenge accuracy is reported alone: each sits beside in-distribution
accuracy, heuristic reliance and a threshold-free measure (AUC), and retention is flagged as
meaningful only for students that learned the task. Findings are paired differences with the seed
as the unit: a t-interval and a hierarchical bootstrap over seeds, per-seed McNemar tests as detail.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from debiaskd.analysis.plots import plot_group_accuracies, plot_mechanism, plot_retention
from debiaskd.core.config import StudyConfig
from debiaskd.core.gate import GATE_KEYS, is_competent
from debiaskd.core.study import variant_specs

HEADLINE = ("in_distribution_accuracy", "challenge_accuracy", "worst_group_accuracy", "challenge_auc",
            "heuristic_reliance")
#: the in-distribution competence evidence the gate reads beside the headline (see gate.py)
COMPETENCE = ("in_distribution_majority_rate", "in_distribution_kappa")
PREDICTIONS = "predictions.npz"


def _mean(values: list[float]) -> float | None:
    vals = [float(v) for v in values if isinstance(v, int | float) and np.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def _std(values: list[float]) -> float | None:
    vals = [float(v) for v in values if isinstance(v, int | float) and np.isfinite(v)]
    return float(np.std(vals, ddof=1)) if len(vals) > 1 else (0.0 if vals else None)


def _ci(values: list[float]) -> list[float] | None:
    """Student-t 95% interval of the mean over seeds (None with fewer than two seeds)."""
    from debiaskd.core.metrics import mean_std_ci  # pandas, SciPy: slow; jobs.registry imports this module

    stats = mean_std_ci([v for v in values if isinstance(v, int | float)])
    return [stats["ci_low"], stats["ci_high"]] if stats["n"] > 1 else None


def _held_out(data) -> slice | np.ndarray:
    """The challenge rows of held-out constructions (all rows when the split had no marks)."""
    return ~np.asarray(data["challenge/seen"]).astype(bool) if "challenge/seen" in data.files else slice(None)


def _challenge_correct(eval_dir: Path) -> np.ndarray | None:
    path = eval_dir / PREDICTIONS
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as data:
        for key in ("challenge_correct", "challenge/correct"):
            if key in data.files:
                return np.asarray(data[key]).astype(bool)[_held_out(data)]
    return None


def _challenge_groups(eval_dir: Path) -> np.ndarray | None:
    path = eval_dir / PREDICTIONS
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as data:
        if "challenge/group" not in data.files:
            return None
        return np.asarray(data["challenge/group"]).astype(str)[_held_out(data)]


def retention_intervals(student: np.ndarray, teacher: np.ndarray, groups: np.ndarray, n_boot: int,
                        confidence: float = 0.95, seed: int = 0) -> dict[str, list[float] | None]:
    """Percentile bootstrap interval of per-group retention (student / teacher accuracy).

    Examples are resampled within each group, paired (the same draw for both models); a draw where
    the teacher gets nothing right in the group is dropped; ``None`` where no draw is left.
    """
    rng = np.random.default_rng(seed)
    student, teacher = np.asarray(student, dtype=np.float64), np.asarray(teacher, dtype=np.float64)
    out: dict[str, list[float] | None] = {}
    alpha = (1.0 - confidence) / 2.0
    for group in sorted(set(groups.tolist())):
        idx = np.flatnonzero(groups == group)
        draws = idx[rng.integers(0, len(idx), size=(n_boot, len(idx)))]
        t_acc, s_acc = teacher[draws].mean(axis=1), student[draws].mean(axis=1)
        ok = t_acc > 0
        ratios = s_acc[ok] / t_acc[ok]
        out[group] = ([float(np.quantile(ratios, alpha)), float(np.quantile(ratios, 1 - alpha))]
                      if len(ratios) else None)
    return out


def _retention_ci(cfg: StudyConfig, student_dir: Path, teacher_dir: Path) -> dict[str, list[float] | None]:
    s, t, g = _challenge_correct(student_dir), _challenge_correct(teacher_dir), _challenge_groups(student_dir)
    if s is None or t is None or g is None or len(s) != len(t) or len(g) != len(s) or cfg.eval.bootstrap < 1:
        return {}
    return retention_intervals(s, t, g, cfg.eval.bootstrap, cfg.eval.confidence)


def _retention_ci95(cfg: StudyConfig, student_runs: list[tuple[dict[str, Any], Path]],
                    teacher_runs: list[tuple[dict[str, Any], Path]]) -> dict[str, Any]:
    """Per-group retention intervals: a Student-t interval of the per-seed ratios with several seeds
    (seed variance dominates), a paired bootstrap over the challenge examples with one."""
    from debiaskd.core.metrics import mean_std_ci  # pandas, SciPy: slow; jobs.registry imports this module

    teachers = {ev["seed"]: (ev, d) for ev, d in teacher_runs}
    pairs = [(ev, d, *teachers[ev["seed"]]) for ev, d in sorted(student_runs, key=lambda r: r[0]["seed"])
             if ev["seed"] in teachers]
    if len(pairs) > 1:
        groups = sorted({g for s_ev, _, t_ev, _ in pairs for g in (t_ev.get("by_group") or {})})
        out: dict[str, list[float] | None] = {}
        for g in groups:
            ratios = [s_ev["by_group"][g] / t_ev["by_group"][g] for s_ev, _, t_ev, _ in pairs
                      if (t_ev.get("by_group") or {}).get(g) and (s_ev.get("by_group") or {}).get(g) is not None]
            stats = mean_std_ci(ratios)
            out[g] = [stats["ci_low"], stats["ci_high"]] if stats["n"] > 1 else None
        return {"by_group_retention_ci95": out, "retention_interval": "t over seeds"}
    if pairs:
        _, s_dir, _, t_dir = pairs[0]
        return {"by_group_retention_ci95": _retention_ci(cfg, s_dir, t_dir),
                "retention_interval": "bootstrap over examples"}
    return {}


def build_summary(cfg: StudyConfig, evals: list[dict[str, Any]], eval_dirs: list[str | Path]) -> dict[str, Any]:
    """Aggregate per-seed evaluations into the INTERFACE.md ``summary.json`` shape."""
    specs = variant_specs(cfg)
    by_variant: dict[str, list[tuple[dict[str, Any], Path]]] = {}
    for ev, d in zip(evals, eval_dirs, strict=True):
        by_variant.setdefault(ev["variant"], []).append((ev, Path(d)))
    variants: dict[str, Any] = {}
    for name in specs:
        runs = sorted(by_variant.get(name, []), key=lambda item: item[0]["seed"])
        if not runs:
            continue
        first = runs[0][0]
        entry: dict[str, Any] = {"role": specs[name].role, "method": specs[name].method,
                                 "teacher": specs[name].teacher, "seeds": [r[0]["seed"] for r in runs]}
        for key in HEADLINE + COMPETENCE:
            values = [r[0].get(key) for r in runs]
            entry[key] = _mean(values)
            if len(runs) > 1:
                entry[f"{key}_std"] = _std(values)
                entry[f"{key}_ci95"] = _ci(values)
        hard = [r[0].get("in_distribution_hard_accuracy") for r in runs]
        if any(isinstance(v, int | float) for v in hard):  # MNLI with per-example BERT difficulty
            entry["in_distribution_hard_accuracy"] = _mean(hard)
        groups = sorted({g for r in runs for g in (r[0].get("by_group") or {})})
        entry["by_group"] = {g: _mean([(r[0].get("by_group") or {}).get(g) for r in runs]) for g in groups}
        if len(runs) > 1:
            entry["by_group_std"] = {g: _std([(r[0].get("by_group") or {}).get(g) for r in runs]) for g in groups}
        if first.get("ci"):  # bootstrap intervals over examples, first seed
            entry["bootstrap_ci95"] = first["ci"]
        seen_acc = [r[0].get("challenge_seen_accuracy") for r in runs]
        if any(isinstance(v, int | float) for v in seen_acc):  # seen constructions, reported apart
            entry["challenge_seen_accuracy"] = _mean(seen_acc)
        for key in ("challenge_ece", "in_distribution_ece", "by_heuristic", "balanced_threshold_accuracy",
                    "by_group_seen"):
            if key in first:
                entry[key] = first[key]
        entry["mlflow_run_id"] = first.get("run_id")
        entry["mlflow_run_ids"] = [r[0].get("run_id") for r in runs]
        entry["model_uri"] = first.get("model_uri")
        # each seed's own evidence: the registered weights are one seed's, so the gate reads that seed's
        # numbers (and its teacher's of the same seed), not the mean over seeds
        entry["per_seed"] = {
            str(r[0]["seed"]): {**{k: r[0].get(k) for k in GATE_KEYS}, "by_group": dict(r[0].get("by_group") or {}),
                                "mlflow_run_id": r[0].get("run_id"), "model_uri": r[0].get("model_uri"),
                                "data_hash": r[0].get("data_hash")}
            for r in runs
        }
        entry["competent"] = is_competent(entry, cfg.gate)
        variants[name] = entry

    transfer: dict[str, Any] = {}
    for name, spec in specs.items():
        if spec.role != "student" or name not in variants:
            continue
        ref = spec.teacher or "teacher_debiased"
        if ref not in variants:
            continue
        s, t = variants[name], variants[ref]
        t_ch = t.get("challenge_accuracy")
        transfer[name] = {
            "teacher": ref,
            "robustness_retention": (s["challenge_accuracy"] / t_ch) if t_ch else None,
            "by_group_retention": {
                g: (s["by_group"].get(g) / tv) if tv and s["by_group"].get(g) is not None else None
                for g, tv in t["by_group"].items()
            },
            "learned_task": bool(s["competent"]),
            "meaningful": bool(s["competent"] and t["competent"]),
        }
        transfer[name].update(_retention_ci95(cfg, by_variant.get(name, []), by_variant.get(ref, [])))

    by_seed_hash: dict[str, set[str]] = {}
    for ev in evals:
        if ev.get("data_hash"):
            by_seed_hash.setdefault(str(ev["seed"]), set()).add(str(ev["data_hash"]))
    data_hashes = sorted({h for hashes in by_seed_hash.values() for h in hashes})
    summary = {
        "preset": cfg.preset, "task": cfg.task, "seeds": list(cfg.seeds), "config_hash": cfg.config_hash(),
        # the dataset's content hash when every variant of every seed saw the same one, else ""; each
        # seed's own under "data_hashes" (each seed draws its own data: StudyConfig.for_seed)
        "data_hash": data_hashes[0] if len(data_hashes) == 1 else "",
        "data_hashes": {seed: (sorted(h)[0] if len(h) == 1 else "") for seed, h in sorted(by_seed_hash.items())},
        "variants": variants, "transfer": transfer,
        "findings": _findings(cfg, by_variant),
        "candidate": _candidate(cfg, variants),
        "promoted": None,
    }
    return summary


#: the study's questions as paired comparisons (a, b): "does a differ from b?"
COMPARISONS: tuple[tuple[str, str, str], ...] = (
    ("kd_vs_teacher", "student_kd", "teacher_debiased"),
    ("kd_from_debiased_vs_student_debiased", "student_kd_debiased", "student_debiased"),
    ("kd_vs_no_teacher", "student_kd", "student_erm"),
    ("augmentation", "student_kd_aug", "student_kd"),
    ("iterative", "student_kd_iterative", "student_kd"),
    ("teacher_init", "student_kd_teacher_init", "student_kd"),
    ("all_interventions", "student_kd_all", "student_kd"),
    ("all_vs_teacher", "student_kd_all", "teacher_debiased"),
    ("debiased_vs_erm_teacher", "teacher_debiased", "teacher_erm"),
)


def _findings(cfg: StudyConfig, by_variant: dict[str, list[tuple[dict[str, Any], Path]]]) -> list[dict[str, Any]]:
    """Each question as a paired comparison over seeds: the seed is the unit of replication.

    Per seed, the difference in challenge accuracy of ``a`` and ``b`` on the same examples (and a
    McNemar test of that seed alone, kept as per-seed detail). Over seeds, a Student-t interval and
    p-value of those differences (``ci_low``, ``ci_high``, ``p_value``) and a hierarchical bootstrap
    (seeds, then examples within each drawn seed; ``bootstrap_ci_low``, ``bootstrap_ci_high``). No
    test pools examples across seeds: summing discordant pairs over seeds would count the same
    examples several times. With one seed there is no interval over seeds: those values are ``None``.
    """
    # pandas, SciPy: slow, only the summary needs them; jobs.registry imports this module and must stay light
    from debiaskd.core.metrics import (
        hierarchical_bootstrap_ci,
        hierarchical_bootstrap_ci_ragged,
        mcnemar,
        seed_t_interval,
    )

    out: list[dict[str, Any]] = []
    for key, a, b in COMPARISONS:
        if a not in by_variant or b not in by_variant:
            continue
        seeds_b = {ev["seed"]: d for ev, d in by_variant[b]}
        per_seed, rows_a, rows_b = [], [], []
        for ev, d in sorted(by_variant[a], key=lambda r: r[0]["seed"]):
            if ev["seed"] not in seeds_b:
                continue
            ca, cb = _challenge_correct(d), _challenge_correct(seeds_b[ev["seed"]])
            if ca is None or cb is None or len(ca) != len(cb):
                continue
            test = mcnemar(ca, cb)
            per_seed.append({"seed": ev["seed"], "accuracy_a": float(ca.mean()), "accuracy_b": float(cb.mean()),
                             "difference": float(ca.mean() - cb.mean()), "b01": test["b01"], "b10": test["b10"],
                             "mcnemar_statistic": test["statistic"], "mcnemar_p_value": test["p_value"],
                             "mcnemar_exact": test["exact"]})
            rows_a.append(ca)
            rows_b.append(cb)
        if not per_seed:
            continue
        t = seed_t_interval([s["difference"] for s in per_seed], cfg.eval.confidence)
        finding: dict[str, Any] = {
            "name": key, "a": a, "b": b, "mean_difference": t["mean"],
            "ci_low": t["ci_low"], "ci_high": t["ci_high"], "n_seeds": len(per_seed),
            "p_value": t["p_value"], "std_difference": t["std"], "confidence": cfg.eval.confidence,
            "bootstrap_ci_low": None, "bootstrap_ci_high": None,
            "seeds_significant": sum(1 for s in per_seed if s["mcnemar_p_value"] < 0.05),
            "interval": "t over seeds" if len(per_seed) > 1 else None,
            "per_seed": per_seed,
        }
        same_size = len({len(r) for r in rows_a}) == 1
        if len(per_seed) > 1 and cfg.eval.bootstrap > 0:
            # each seed draws its own data, so seeds may hold different numbers of challenge examples
            boot = (hierarchical_bootstrap_ci(np.stack(rows_a), np.stack(rows_b), cfg.eval.bootstrap,
                                              cfg.eval.confidence, seed=0) if same_size else
                    hierarchical_bootstrap_ci_ragged(rows_a, rows_b, cfg.eval.bootstrap, cfg.eval.confidence,
                                                     seed=0))
            finding["bootstrap_ci_low"], finding["bootstrap_ci_high"] = boot["ci_low"], boot["ci_high"]
            finding["bootstrap_resamples"] = boot["n_boot"]
        out.append(finding)
    return out


def _candidate(cfg: StudyConfig, variants: dict[str, Any]) -> str | None:
    """The student put forward for registration: the most robust among those that learned the task."""
    students = [(n, v) for n, v in variants.items() if v["role"] == "student" and v.get("model_uri")]
    if not students:
        return None
    competent = [item for item in students if item[1]["competent"]] or students
    return max(competent, key=lambda item: (item[1]["challenge_accuracy"] or 0.0,
                                            item[1]["worst_group_accuracy"] or 0.0))[0]


# ------------------------------------------------------------------- report
def _fmt(value: Any, pct: bool = True) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return f"{100 * value:.1f}" if pct else f"{value:.2f}"
    return str(value)


def results_rows(summary: dict[str, Any]) -> list[list[str]]:
    """The headline table: one row per variant (the CLI prints the same rows)."""
    rows = []
    for name, v in summary["variants"].items():
        tr = summary.get("transfer", {}).get(name, {})
        retention = tr.get("robustness_retention")
        ret = _fmt(retention, pct=False) if retention is not None else "–"
        if tr and not tr.get("meaningful"):
            ret += "†"
        # several seeds: a t-interval over seeds; one seed: a bootstrap interval over examples
        ci = v.get("challenge_accuracy_ci95") or (v.get("bootstrap_ci95") or {}).get("challenge_accuracy")
        challenge = _fmt(v["challenge_accuracy"]) + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")
        in_dist = _fmt(v["in_distribution_accuracy"])
        if v.get("in_distribution_accuracy_std") is not None:
            in_dist += f" ± {100 * v['in_distribution_accuracy_std']:.1f}"
        row = [name, in_dist, challenge, _fmt(v.get("challenge_auc"), pct=False), _fmt(v["worst_group_accuracy"]),
               _fmt(v.get("heuristic_reliance"), pct=False), ret]
        if _has_hard(summary):
            row.insert(2, _fmt(v.get("in_distribution_hard_accuracy")))
        rows.append(row)
    return rows


def _has_hard(summary: dict[str, Any]) -> bool:
    return any(v.get("in_distribution_hard_accuracy") is not None for v in summary["variants"].values())


def results_headers(summary: dict[str, Any]) -> list[str]:
    """Column names of :func:`results_rows` (a hard-subset column where the test split has one)."""
    return [*HEADERS[:2], "ID hard", *HEADERS[2:]] if _has_hard(summary) else list(HEADERS)


HEADERS = ["variant", "ID acc", "challenge acc [95% CI]", "AUC", "worst group", "reliance", "retention"]


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def anti_bias_retention(by_group: dict[str, float | None]) -> dict[str, float]:
    """The retention of each ``heuristic/label`` group whose heuristic predicts the wrong label
    (lexical overlap, subsequence, constituent: non-entailment; negation: entailment)."""
    from debiaskd.data.generate_nli import bias_aligned  # pandas: slow; jobs.registry imports this module

    return {g: r for g, r in by_group.items()
            if r is not None and "/" in g and not bias_aligned(*g.split("/", 1))}


def _finding_line(f: dict[str, Any]) -> str:
    """One finding of report.md: the interval over seeds, or a plain statement that there is none."""
    per_seed = "; ".join(f"seed {s['seed']} {100 * s['difference']:+.1f} (McNemar p = {s['mcnemar_p_value']:.2g})"
                         for s in f["per_seed"])
    head = f"- **{f['name']}**: `{f['a']}` − `{f['b']}` = {100 * f['mean_difference']:+.1f} points"
    if f.get("ci_low") is None:
        return (f"{head} on {f['n_seeds']} seed: no interval over seeds (one seed says nothing about seed "
                f"variance); {per_seed}")
    conf = round(100 * f.get("confidence", 0.95))
    verdict = "n.s. over seeds" if f["ci_low"] <= 0.0 <= f["ci_high"] else "excludes 0 over seeds"
    boot = ""
    if f.get("bootstrap_ci_low") is not None:
        boot = (f", hierarchical bootstrap [{100 * f['bootstrap_ci_low']:+.1f}, "
                f"{100 * f['bootstrap_ci_high']:+.1f}]")
    return (f"{head}, {conf}% t-interval over {f['n_seeds']} seeds [{100 * f['ci_low']:+.1f}, "
            f"{100 * f['ci_high']:+.1f}] (t-test p = {f['p_value']:.2g}){boot}: {verdict}; "
            f"significant at 0.05 in {f['seeds_significant']} of {f['n_seeds']} seeds individually ({per_seed})")


def write_report(cfg: StudyConfig, summary: dict[str, Any], out_dir: Path, analysis_dirs: list[str | Path]) -> None:
    """summary.json, report.md and the plots it references."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plots: list[str] = []
    try:
        plot_group_accuracies(summary["variants"], out_dir / "group_accuracy.png")
        plots.append("group_accuracy.png")
        if summary.get("transfer"):
            plot_retention(summary["transfer"], out_dir / "retention.png")
            plots.append("retention.png")
    except ImportError:  # analysis plots unavailable: the tables still stand
        pass
    analysis_figures: list[tuple[str, str]] = []
    analyses: dict[str, Any] = {}
    for d in analysis_dirs:
        d = Path(d)
        for png in sorted(d.glob("*.png")):
            target = out_dir / f"{d.name}__{png.name}"
            target.write_bytes(png.read_bytes())
            analysis_figures.append((d.name, target.name))
        if (d / "analysis.json").is_file():
            analyses[d.name] = json.loads((d / "analysis.json").read_text(encoding="utf-8"))
            summary.setdefault("analysis", {})[d.name] = _analysis_digest(analyses[d.name])
    from debiaskd.core.mechanism import mechanism_findings, mechanism_lines  # pandas: slow; jobs.registry imports this

    mechanism = mechanism_findings(analyses, cfg.eval.bootstrap or 1000, cfg.eval.confidence)
    if mechanism:
        summary["mechanism"] = mechanism
        try:
            plot_mechanism(*mechanism_series(mechanism), out_dir / MECHANISM_PNG)
            plots.append(MECHANISM_PNG)
        except ImportError:  # analysis plots unavailable: the section's numbers still stand
            pass
    summary["plots"] = plots + [f for _, f in analysis_figures]
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=False, default=str),
                                          encoding="utf-8")

    groups = sorted({g for v in summary["variants"].values() for g in v["by_group"]})
    group_rows = [[name] + [_fmt(v["by_group"].get(g)) for g in groups] for name, v in summary["variants"].items()]
    lines = [
        f"# debiaskd study — task `{cfg.task}`, preset `{cfg.preset}`, seeds {list(cfg.seeds)}",
        "",
        "Accuracies in %. *AUC* is threshold-free (P(entailment) vs the two-way gold label on the challenge "
        "split); the interval is a bootstrap over examples with one seed, a Student-t interval over seeds "
        "with several (± gives the standard deviation over seeds); "
        "*reliance* = accuracy where the heuristic is right minus where it is wrong (1 = follows it "
        "blindly, 0 = ignores it). *Retention* = student / teacher challenge accuracy; † marks a student "
        "that did not learn the task (ID accuracy below the gate's floor), whose retention means little.",
        "",
        _md_table(results_headers(summary), results_rows(summary)),
        "",
        "## Challenge accuracy by bias group",
        "",
        _md_table(["variant", *groups], group_rows),
        "",
        "## Findings (paired differences in challenge accuracy; the seed is the unit)",
        "",
        "Each finding is the mean over seeds of `a` − `b` on the same challenge examples, with a Student-t "
        "interval over seeds and a hierarchical bootstrap (seeds resampled, then examples within each seed, "
        "paired). McNemar tests are per seed only; none pools examples across seeds.",
        "",
    ]
    lines += [_finding_line(f) for f in summary.get("findings", [])]
    if not summary.get("findings"):
        lines.append("- no paired predictions were available")
    lines += ["", "## Uneven transfer across bias types", "",
              ("Retention per bias type on its anti-bias group (where the heuristic gives the wrong answer: "
               "non-entailment for the overlap heuristics, entailment for negation), with a 95% Student-t "
               "interval of the per-seed ratios."
               if len(summary.get("seeds", [])) > 1 else
               "Retention per bias type on its anti-bias group (where the heuristic gives the wrong answer), "
               "with a 95% bootstrap interval (challenge examples resampled within "
               "each group, student and teacher paired)."), ""]
    for name, tr in summary.get("transfer", {}).items():
        per = anti_bias_retention(tr["by_group_retention"])
        if per:
            spread = max(per.values()) - min(per.values())
            cis = tr.get("by_group_retention_ci95") or {}
            parts = ", ".join(
                f"{g.split('/')[0]} {r:.2f}" + (f" [{cis[g][0]:.2f}, {cis[g][1]:.2f}]" if cis.get(g) else "")
                for g, r in sorted(per.items()))
            lines.append(f"- `{name}`: retention on the anti-bias groups ranges over {spread:.2f} ({parts})")
    if summary.get("analysis"):
        lines += ["", "## Mechanism (attention and circuits)", ""]
        for name, digest in summary["analysis"].items():
            lines.append(f"- `{name}`: " + "; ".join(f"{k} = {v}" for k, v in digest.items()))
    if summary.get("mechanism"):
        lines += mechanism_lines(summary["mechanism"], cfg.eval.confidence)
        if MECHANISM_PNG in plots:
            lines += ["", f"![activation patching]({MECHANISM_PNG})"]
    reg = summary.get("registration") or {}
    lines += ["", "## Registration and gate", ""]
    if reg.get("student"):
        st = reg["student"]
        verdict = "passed" if st["gate"]["passed"] else "refused"
        lines.append(f"Candidate `{st['variant']}` registered as `{st['name']}` version {st['version']} "
                     f"(alias `challenger`); the gate **{verdict}**:")
        lines += [f"- {r}" for r in st["gate"]["reasons"]]
    else:
        lines.append("No student was registered.")
    if plots or analysis_figures:
        lines += ["", "## Plots", ""]
        lines += [f"![{p}]({p})" for p in plots]
        lines += [f"![{name}]({f})" for name, f in analysis_figures]
    (out_dir / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


MECHANISM_PNG = "mechanism_patching.png"


def mechanism_series(mechanism: dict[str, Any]) -> tuple[list[str], dict[str, list[dict[str, Any]]]]:
    """The patching figure's bars: ``teacher_debiased``'s top components on the x axis; each model's effect
    there (a student's at the component copied from it, labelled ``teacher → student``)."""
    variants = mechanism["variants"]
    anchor = "teacher_debiased" if "teacher_debiased" in variants else next(iter(variants))
    names = list(variants[anchor]["top"])
    series: dict[str, list[dict[str, Any]]] = {}
    for variant, entry in variants.items():
        recovery = (mechanism.get("recovery") or {}).get(variant)
        if recovery:
            by_teacher = {r["teacher_component"]: r for r in recovery["components"]}
            series[variant] = [(by_teacher.get(n) or {}).get("student") or {} for n in names]
        elif variant in ("teacher_debiased", "teacher_erm") or variant == anchor:
            series[variant] = [entry["components"].get(n) or {} for n in names]
    labels = []
    for n in names:
        mapped = sorted({r["student_component"] for rec in (mechanism.get("recovery") or {}).values()
                         for r in rec["components"] if r["teacher_component"] == n and r["student_component"]})
        labels.append(f"{n} → S:{'/'.join(mapped)}" if mapped else n)
    return labels, series


def _analysis_digest(data: dict[str, Any]) -> dict[str, Any]:
    """A few headline numbers of an analysis.json for the report (the JSON holds the rest)."""
    digest: dict[str, Any] = {}
    for key in ("overlap_attention_aligned", "overlap_attention_anti_bias", "mean_overlap_attention",
                "top_heads", "student_counterparts", "probe_best_layer"):
        if key not in data:
            continue
        value = data[key]
        if isinstance(value, float):
            value = round(value, 4)
        elif key == "student_counterparts" and isinstance(value, list):  # "L4H1→L1H0 (0.81)"
            value = ", ".join(f"{c.get('teacher_head')}→{c.get('student_head')} ({c.get('similarity', 0):.2f})"
                              for c in value if isinstance(c, dict))
        elif key == "top_heads" and isinstance(value, list):
            value = ", ".join(str(h) for h in value)
        digest[key] = value
    if not digest:
        digest = {k: v for k, v in data.items() if isinstance(v, int | float | str)}
    return digest
