"""Analyse one trained model against its reference (attention patterns and circuits)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Literal

from debiaskd.core.study import analysis_pairs
from debiaskd.jobs.base import Job, read_result, share_cpus
from debiaskd.reporting.html import folder_page


class AnalyzeJob(Job):
    """Attention and circuit analysis of the model trained in ``model`` (a training folder with its
    ``result.json``) and of its ``reference`` into ``out_dir`` (a temporary folder when None), logged to
    the study run under ``analysis/<run name>``. ``concurrent`` tasks share the machine's CPUs.

    Returns ``{"analysis": the analysis, "page": one self-contained HTML page of it (the Kubeflow UI's
    view) when ``page`` is set, else None}``."""

    KIND: Literal["analyze_pair"] = "analyze_pair"
    model: Path
    reference: Path | None = None
    dataset_dir: Path
    out_dir: Path | None = None
    concurrent: int = 1
    page: bool = False

    def run(self) -> dict[str, Any]:
        if self.concurrent > 1:
            share_cpus(self.concurrent)
        # torch, matplotlib, pandas: slow, only where the job runs (importing the jobs must stay cheap)
        from debiaskd.analysis.run import analyze
        from debiaskd.data.store import read_dataset

        trained = read_result(self.model)
        ref_result = read_result(self.reference) if self.reference is not None else {}
        reference = ref_result.get("model_dir")
        # a reference that is analysed as a model in its own right (teacher_debiased for the students) is
        # patched there, on the same pairs: patching it again here would only cost time
        patch_reference = ref_result.get("variant") not in {m for m, _ in analysis_pairs(self.config)}
        ds = read_dataset(self.dataset_dir)
        with tempfile.TemporaryDirectory(prefix="debiaskd-analysis-") as tmp:
            folder = self.out_dir if self.out_dir is not None else Path(tmp)
            result = analyze(trained["model_dir"], ds.splits["challenge"], folder, self.config, reference=reference,
                             patch_reference=patch_reference)
            if self.tracker.active:
                self.tracker.log_artifacts(folder, f"analysis/{trained['run_name']}")
            page = folder_page(folder, f"analysis of {trained['run_name']}") if self.page else None
        return {"analysis": result, "page": page}
