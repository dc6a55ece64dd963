"""The distillability matrix's report: ``sweep.json``, ``report.md`` and the retention heat map.

Per cell and seed, the student is compared with the teacher it was distilled from on the same seed:
retention = student / teacher challenge accuracy on held-out constructions, and the robustness gate
(:func:`debiaskd.core.gate.evaluate_gate`) on that seed's evidence. Across seeds each number is a mean with
a Student-t interval (:func:`debiaskd.core.metrics.mean_std_ci`; none with one seed). A cell passes when the
gate passes it on every seed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from debiaskd.core.config import StudyConfig
from debiaskd.core.gate import evaluate_gate
from debiaskd.core.metrics import mean_std_ci
from debiaskd.core.sweep import cell_cost, cells, methods, teacher_name
from debiaskd.reporting.report import COMPETENCE, HEADLINE

HEATMAP = "matrix_retention.png"
#: the numbers shown beside retention, per cell (means over seeds, with intervals)
BESIDE = ("in_distribution_accuracy", "challenge_accuracy", "challenge_auc", "heuristic_reliance",
          "worst_group_accuracy")


def _stats(values: list[Any], confidence: float) -> dict[str, Any]:
    return mean_std_ci([v for v in values if isinstance(v, int | float)], confidence)


def build_sweep(cfg: StudyConfig, evals: list[dict[str, Any]]) -> dict[str, Any]:
    """Aggregate the per-seed evaluations of a sweep (``variant``, ``seed`` and the headline metrics each)."""
    by = {(ev["variant"], int(ev["seed"])): ev for ev in evals}
    seeds = sorted({int(ev["seed"]) for ev in evals})
    conf = cfg.eval.confidence
    teachers: dict[str, Any] = {}
    for method in methods(cfg):
        name = teacher_name(method)
        runs = [by[(name, s)] for s in seeds if (name, s) in by]
        teachers[name] = {"method": method, "n_seeds": len(runs),
                          **{k: _stats([r.get(k) for r in runs], conf) for k in HEADLINE},
                          "mlflow_run_ids": [r.get("run_id") for r in runs]}
    out_cells: dict[str, Any] = {}
    for cell in cells(cfg):
        per_seed = {}
        for s in seeds:
            student, teacher = by.get((cell.name, s)), by.get((cell.teacher, s))
            if student is None or teacher is None:
                continue
            t_ch, s_ch = teacher.get("challenge_accuracy"), student.get("challenge_accuracy")
            decision = evaluate_gate(student, teacher, cfg.gate)
            per_seed[str(s)] = {
                **{k: student.get(k) for k in HEADLINE + COMPETENCE},
                "retention": (s_ch / t_ch) if isinstance(s_ch, int | float) and t_ch else None,
                "gate_passed": decision.passed,
                "gate_failed_checks": [k for k, ok in decision.checks.items() if not ok],
                "mlflow_run_id": student.get("run_id"), "model_uri": student.get("model_uri"),
                "reused": bool(student.get("reused_from_key")),
            }
        rows = list(per_seed.values())
        entry: dict[str, Any] = {
            "axes": cell.axes(), "teacher": cell.teacher, "cost": cell_cost(cfg, cell), "n_seeds": len(rows),
            "retention": _stats([r["retention"] for r in rows], conf),
            **{k: _stats([r.get(k) for r in rows], conf) for k in BESIDE},
            "gate_passed": bool(rows) and all(r["gate_passed"] for r in rows),
            "gate_failed_checks": sorted({c for r in rows for c in r["gate_failed_checks"]}),
            "per_seed": per_seed,
        }
        out_cells[cell.name] = entry
    return {
        "preset": cfg.preset, "task": cfg.task, "seeds": seeds,
        "axes": {"debias": methods(cfg), "distill": cfg.matrix.distill, "student_layers": cfg.matrix.student_layers,
                 "student_width": cfg.matrix.student_width, "interventions": cfg.matrix.interventions},
        "teachers": teachers, "cells": out_cells,
        "cheapest_passing": cheapest_passing(cfg, out_cells),
        "best_robust": best_robust(out_cells),
        "interventions_needed": interventions_needed(cfg, out_cells),
        "reused_cells": sorted(n for n, e in out_cells.items() if e["per_seed"]
                               and all(r["reused"] for r in e["per_seed"].values())),
    }


def cheapest_passing(cfg: StudyConfig, entries: dict[str, Any]) -> dict[str, str | None]:
    """For each debiasing method, the cheapest cell (:func:`~debiaskd.core.sweep.cell_cost`) that passes the
    gate; ties go to the higher mean retention. None where no cell of the method passes."""
    out: dict[str, str | None] = {}
    for method in methods(cfg):
        passing = [(e["cost"], -(e["retention"]["mean"] or 0.0), name) for name, e in entries.items()
                   if e["axes"]["debias"] == method and e["gate_passed"]]
        out[method] = min(passing)[2] if passing else None
    return out


def best_robust(entries: dict[str, Any]) -> str | None:
    """The passing cell with the highest mean retention across the whole matrix (the gate's candidate)."""
    passing = [((e["retention"]["mean"] or 0.0), -e["cost"], name) for name, e in entries.items() if e["gate_passed"]]
    return max(passing)[2] if passing else None


def interventions_needed(cfg: StudyConfig, entries: dict[str, Any]) -> list[dict[str, Any]]:
    """For each failing cell without intervention: which interventions of the same method, objective and size
    pass the gate (empty: none of those in the matrix does; the matrix may not hold any)."""
    rows = []
    for name, e in entries.items():
        a = e["axes"]
        if a["intervention"] != "none" or e["gate_passed"]:
            continue
        same = {n: x for n, x in entries.items() if x["axes"]["intervention"] != "none"
                and all(x["axes"][k] == a[k] for k in ("debias", "distill", "student_layers", "student_width"))}
        rows.append({"cell": name, "failed_checks": e["gate_failed_checks"],
                     "tried": sorted(x["axes"]["intervention"] for x in same.values()),
                     "passing": sorted(x["axes"]["intervention"] for x in same.values() if x["gate_passed"])})
    return rows


# ----------------------------------------------------------------------------- rendering
def _fmt(stat: dict[str, Any], scale: float = 100.0, digits: int = 1) -> str:
    mean = stat.get("mean")
    if mean is None:
        return "n/a"
    text = f"{mean * scale:.{digits}f}"
    if stat.get("n", 0) > 1 and stat.get("ci_low") is not None:
        text += f" [{stat['ci_low'] * scale:.{digits}f}, {stat['ci_high'] * scale:.{digits}f}]"
    return text


def _size_label(cell_axes: dict[str, Any]) -> str:
    parts = [f"L{cell_axes['student_layers']}" if cell_axes["student_layers"] is not None else "",
             f"W{cell_axes['student_width']}" if cell_axes["student_width"] is not None else ""]
    size = "×".join(p for p in parts if p) or "default size"
    return size if cell_axes["intervention"] == "none" else f"{size} +{cell_axes['intervention']}"


#: gate checks whose failure makes a cell's retention meaningless (a student that did not learn the task, or
#: answers one label on the whole challenge, can keep its teacher's challenge accuracy without any robustness)
NOT_MEANINGFUL = {"competent", "above_majority", "kappa", "not_over_corrected"}


def _teacher_label(sweep: dict[str, Any], method: str) -> str:
    t = sweep["teachers"].get(teacher_name(method)) or {}
    ch, auc = (t.get("challenge_accuracy") or {}).get("mean"), (t.get("challenge_auc") or {}).get("mean")
    if ch is None:
        return method
    return f"{method}\nteacher: challenge {ch * 100:.1f}" + (f", AUC {auc:.2f}" if auc is not None else "")


def heatmap(sweep: dict[str, Any], out_png: str | Path) -> Path:
    """One panel per distillation objective: rows the debiasing methods, columns the student sizes (and
    interventions); colour = mean retention on held-out constructions, text = retention (its interval over
    seeds where there is one), ID accuracy and a ✓ where the gate passes on every seed."""
    import matplotlib  # matplotlib: slow (~1 s), only drawing needs it

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt  # after use("Agg")
    from matplotlib.patches import Rectangle  # likewise

    entries = sweep["cells"]
    distills = sweep["axes"]["distill"]
    rows = sweep["axes"]["debias"]
    cols: list[str] = []
    for e in entries.values():
        label = _size_label(e["axes"])
        if label not in cols:
            cols.append(label)
    fig, axes = plt.subplots(1, len(distills), figsize=(1.0 + 2.6 * len(cols) * len(distills) / 1.6,
                                                        1.2 + 0.9 * len(rows)), squeeze=False)
    image = None
    for k, distill in enumerate(distills):
        ax = axes[0][k]
        grid = np.full((len(rows), len(cols)), np.nan)
        for e in entries.values():
            a = e["axes"]
            if a["distill"] != distill:
                continue
            i, j = rows.index(a["debias"]), cols.index(_size_label(a))
            value = e["retention"]["mean"]
            grid[i, j] = np.nan if value is None else value
            ci = e["retention"]
            text = "n/a" if value is None else f"{value:.2f}"
            if ci.get("n", 0) > 1 and ci.get("ci_low") is not None:
                text += f"\n[{ci['ci_low']:.2f}, {ci['ci_high']:.2f}]"
            idacc, auc_ = e["in_distribution_accuracy"]["mean"], e["challenge_auc"]["mean"]
            rel = e["heuristic_reliance"]["mean"]
            text += f"\nID {idacc * 100:.0f}" if idacc is not None else ""
            text += f" AUC {auc_:.2f}" if auc_ is not None else ""
            text += f"\nreliance {rel:+.2f}" if rel is not None else ""
            text += " ✓" if e["gate_passed"] else ""
            if set(e["gate_failed_checks"]) & NOT_MEANINGFUL:  # hatched: the ratio does not measure robustness
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", edgecolor="grey",
                                       linewidth=0))
            ax.text(j, i, text, ha="center", va="center", fontsize=6.5, color="black")
        image = ax.imshow(grid, cmap="RdYlGn", vmin=0.5, vmax=1.5, aspect="auto")
        ax.set_xticks(range(len(cols)), cols, fontsize=7, rotation=20)
        ax.set_yticks(range(len(rows)), [_teacher_label(sweep, m) for m in rows] if k == 0 else [""] * len(rows),
                      fontsize=7)
        ax.set_title(f"distillation: {distill}", fontsize=8)
    if image is not None:
        fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="retention (student / teacher)")
    n = len(sweep["seeds"])
    fig.suptitle(f"Retention on held-out constructions ({n} seed{'s' if n != 1 else ''}; ✓ = gate passed; "
                 "hatched = student not competent or over-corrected: the ratio is no robustness)", fontsize=9)
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return out


def render_markdown(sweep: dict[str, Any]) -> str:
    """report.md of a sweep: the heat map, the per-cell table, the cheapest passing student per method, the
    matrix's best robust student and which interventions failing cells need."""
    n = len(sweep["seeds"])
    lines = [f"# Distillability matrix ({sweep['task']}, preset {sweep['preset']})", "",
             f"Seeds: {sweep['seeds']}. Retention = student / teacher challenge accuracy on held-out constructions, "
             "per seed against the teacher it was distilled from; "
             + ("means with 95% t-intervals over seeds." if n > 1 else "one seed: no interval over seeds."),
             "", f"![retention heat map]({HEATMAP})", "", "## Teachers", "",
             "| teacher | ID acc | challenge | AUC | reliance |", "|---|---|---|---|---|"]
    for name, t in sweep["teachers"].items():
        lines.append(f"| {name} | {_fmt(t['in_distribution_accuracy'])} | {_fmt(t['challenge_accuracy'])} | "
                     f"{_fmt(t['challenge_auc'], 1, 2)} | {_fmt(t['heuristic_reliance'], 1, 2)} |")
    lines += ["", "## Cells", "",
              "| cell | debias | distill | size | retention | ID acc | challenge | AUC | reliance | gate |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for name, e in sweep["cells"].items():
        a = e["axes"]
        gate = "pass" if e["gate_passed"] else "fail: " + ", ".join(e["gate_failed_checks"])
        lines.append(f"| `{name}` | {a['debias']} | {a['distill']} | {_size_label(a)} | "
                     f"{_fmt(e['retention'], 1, 2)} | {_fmt(e['in_distribution_accuracy'])} | "
                     f"{_fmt(e['challenge_accuracy'])} | {_fmt(e['challenge_auc'], 1, 2)} | "
                     f"{_fmt(e['heuristic_reliance'], 1, 2)} | {gate} |")
    lines += ["", "## The cheapest student that passes the gate, per debiasing method", ""]
    for method, name in sweep["cheapest_passing"].items():
        lines.append(f"- {method}: " + (f"`{name}`" if name else "no cell passes"))
    best = sweep["best_robust"]
    lines += ["", "Best robust student across the matrix (highest retention among passing cells): "
              + (f"`{best}`" if best else "none"), ""]
    needed = sweep["interventions_needed"]
    if needed:
        lines += ["## Failing cells and the interventions that make them pass", "",
                  "| failing cell | failed checks | interventions tried | passing with |", "|---|---|---|---|"]
        for row in needed:
            lines.append(f"| `{row['cell']}` | {', '.join(row['failed_checks']) or '-'} | "
                         f"{', '.join(row['tried']) or 'none in the matrix'} | {', '.join(row['passing']) or '-'} |")
        lines.append("")
    if sweep.get("reused_cells"):
        lines += [f"Reused from an earlier sweep (same content key, not retrained): {len(sweep['reused_cells'])} "
                  "cells.", ""]
    return "\n".join(lines)


def write_sweep_report(sweep: dict[str, Any], out_dir: str | Path) -> Path:
    """``sweep.json``, ``report.md`` and the heat map into ``out_dir``; returns the heat map's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    png = heatmap(sweep, out / HEATMAP)
    (out / "sweep.json").write_text(json.dumps(sweep, indent=2, default=str), encoding="utf-8")
    (out / "report.md").write_text(render_markdown(sweep), encoding="utf-8")
    return png

