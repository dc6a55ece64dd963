"""The sweep's report step: aggregate the matrix's evaluations, write sweep.json / report.md / the heat map,
and log them to the sweep's parent MLflow run (and each cell's retention and gate verdict to its own run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from debiaskd.core.config import StudyConfig
from debiaskd.core.gate import GATE_KEYS, threshold_tags
from debiaskd.jobs.base import Job, read_result
from debiaskd.jobs.report import collected_dirs
from debiaskd.reporting.html import folder_page
from debiaskd.tracking.service import CHALLENGER
from debiaskd.tracking.tracker import Tracker


class SweepReportJob(Job):
    """Write the matrix's report into ``out_dir`` from the evaluation folders inside ``collected`` (the collect
    tasks' outputs) or ``eval_dirs``. With ``tracking.register_models``, the best robust cell (the passing cell
    of highest retention) is registered as ``<prefix>-student`` with the gate's evidence and made
    ``challenger``. Returns ``{"sweep", "best": that cell or None, "gate": "pass" when its registered version
    passes the gate's dry run (the pipeline then promotes it), else "refuse", "page": one HTML page of the
    report when ``page`` is set}``."""

    KIND: Literal["summarize_sweep"] = "summarize_sweep"
    out_dir: Path
    eval_dirs: list[Path] = Field(default_factory=list)
    collected: list[Path] = Field(default_factory=list)
    page: bool = False

    def run(self) -> dict[str, Any]:
        # pandas (core.metrics) and matplotlib: slow, and jobs.registry, which every component imports, imports this
        from debiaskd.reporting.sweep import HEATMAP, build_sweep, write_sweep_report

        cfg, tracker = self.config, self.tracker
        evals_found, _ = collected_dirs(self.collected)
        evals = [read_result(d) for d in [*self.eval_dirs, *evals_found]]
        sweep = build_sweep(cfg, evals)
        registered = None
        if tracker.active and cfg.tracking.register_models and sweep["best_robust"]:
            registered = register_best(cfg, sweep, evals, tracker)
            sweep["registration"] = registered
        write_sweep_report(sweep, self.out_dir)
        if tracker.active:
            metrics: dict[str, float] = {}
            for name, entry in sweep["cells"].items():
                mean = entry["retention"]["mean"]
                if mean is not None:
                    metrics[f"{name}/retention"] = mean
                metrics[f"{name}/gate_passed"] = float(entry["gate_passed"])
                for row in entry["per_seed"].values():
                    if row.get("mlflow_run_id"):  # the cell's own run: what MLflow's compare views plot
                        tracker.log_metrics({k: float(v) for k, v in (("retention", row["retention"]),
                                                                      ("gate_passed", row["gate_passed"]))
                                             if v is not None}, row["mlflow_run_id"])
            metrics["cells"] = float(len(sweep["cells"]))
            metrics["cells_passing"] = float(sum(e["gate_passed"] for e in sweep["cells"].values()))
            metrics["cells_reused"] = float(len(sweep["reused_cells"]))
            tracker.log_metrics(metrics)
            tracker.set_tags({"debiaskd.kind_detail": "sweep", "debiaskd.best_robust": sweep["best_robust"] or ""})
            tracker.log_artifacts(self.out_dir, "report")
            tracker.log_figures({"matrix_retention": Path(self.out_dir) / HEATMAP})
        page = folder_page(self.out_dir, f"debiaskd {cfg.task} distillability matrix ({cfg.preset})") \
            if self.page else None
        gate = "pass" if registered and registered["gate"]["passed"] else "refuse"
        return {"sweep": sweep, "best": sweep["best_robust"], "gate": gate, "page": page}


def register_best(cfg: StudyConfig, sweep: dict[str, Any], evals: list[dict[str, Any]],
                  tracker: Tracker) -> dict[str, Any] | None:
    """Register the best robust cell's model (its first seed's weights) as ``<prefix>-student``, with that
    seed's evidence (``metric.*``), its teacher's on the same seed (``teacher.*``), the gate's thresholds and
    the cell's axes as tags; alias ``challenger``; the gate's dry run as the decision."""
    name = sweep["best_robust"]
    entry = sweep["cells"][name]
    seed = sorted(entry["per_seed"], key=int)[0]
    by = {(ev["variant"], str(ev["seed"])): ev for ev in evals}
    student, teacher = by[(name, seed)], by[(entry["teacher"], seed)]
    if not student.get("model_uri"):
        return None
    tags: dict[str, Any] = {f"metric.{k}": student.get(k) for k in GATE_KEYS}
    tags.update({f"teacher.{k}": teacher.get(k) for k in GATE_KEYS})
    tags.update({f"axis.{k}": v for k, v in entry["axes"].items()})
    tags.update({"run_id": student.get("run_id"), "variant": name, "seed": seed, "teacher_variant": entry["teacher"],
                 "teacher_run_id": teacher.get("run_id"), "data_hash": student.get("data_hash"),
                 "retention": entry["per_seed"][seed]["retention"], "study_run_id": tracker.study_run_id,
                 "sweep": "true"})
    tags.update(threshold_tags(cfg.gate))
    model = f"{cfg.model_prefix}-student"
    version = tracker.register(student["model_uri"], model, tags)
    tracker.set_alias(model, CHALLENGER, version)
    decision = tracker.promote(model, version, cfg.gate, dry_run=True)
    return {"name": model, "version": version, "variant": name, "seed": seed, "gate": decision.to_dict()}
