"""The sweep's report step: aggregate the matrix's evaluations, write sweep.json / report.md / the heat map,
and log them to the sweep's parent MLflow run (and each cell's retention and gate verdict to its own run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from debiaskd.jobs.base import Job, read_result
from debiaskd.jobs.report import collected_dirs
from debiaskd.reporting.html import folder_page
from debiaskd.reporting.sweep import HEATMAP, build_sweep, write_sweep_report


class SweepReportJob(Job):
    """Write the matrix's report into ``out_dir`` from the evaluation folders inside ``collected`` (the collect
    tasks' outputs) or ``eval_dirs``. Returns ``{"sweep", "best": the best robust cell or None, "page": one
    HTML page of the report when ``page`` is set}``."""

    KIND: Literal["summarize_sweep"] = "summarize_sweep"
    out_dir: Path
    eval_dirs: list[Path] = Field(default_factory=list)
    collected: list[Path] = Field(default_factory=list)
    page: bool = False

    def run(self) -> dict[str, Any]:
        cfg, tracker = self.config, self.tracker
        evals_found, _ = collected_dirs(self.collected)
        evals = [read_result(d) for d in [*self.eval_dirs, *evals_found]]
        sweep = build_sweep(cfg, evals)
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
        return {"sweep": sweep, "best": sweep["best_robust"], "page": page}
