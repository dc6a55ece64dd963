"""The study's jobs called directly in this process, in the pipeline's order (the benchmark's baseline)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from debiaskd.core.config import StudyConfig
from debiaskd.core.paths import check_replaceable_dir
from debiaskd.core.study import analysis_pairs, run_name, variant_specs
from debiaskd.jobs.analyze import AnalyzeJob
from debiaskd.jobs.base import Job
from debiaskd.jobs.data import AugmentDataJob, PrepareDataJob, ValidateDataJob
from debiaskd.jobs.promote import PromoteJob
from debiaskd.jobs.report import SummarizeJob, gate_decision
from debiaskd.jobs.study import StartStudyJob
from debiaskd.jobs.train import TrainJob
from debiaskd.tracking.tracker import Tracker

MARKER = ".debiaskd-inprocess"  # only a folder an earlier in-process run made is ever replaced


def _listdir(path: Path) -> list[str]:
    return [p.name for p in path.iterdir()] if path.is_dir() else []


def _run(job: Job) -> Any:
    with job:
        return job.run()


def run_inprocess(cfg: StudyConfig, out_dir: str | Path, tracking_uri: str | None = None,
                  progress: bool = False) -> dict[str, Any]:
    """The same jobs as the kfp pipeline, called directly in this process, in the same order; tracked
    in MLflow when ``tracking_uri`` is given. Returns the summary."""
    out = Path(out_dir)
    check_replaceable_dir(out, "out_dir", None if not (out / MARKER).is_file() else set(_listdir(out)))
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("written by debiaskd.jobs.inprocess.run_inprocess; replaced by the next run\n",
                              encoding="utf-8")
    tracker = Tracker(uri=tracking_uri)  # without a URI (or a study run) nothing is tracked
    if tracking_uri:
        tracker = tracker.for_study(_run(StartStudyJob(config=cfg, tracker=tracker, name="study")))
    try:
        summary = _run_jobs(cfg, out, tracker, progress, promote=bool(tracking_uri))
    except BaseException:
        if tracker.active:
            tracker.end_study("FAILED")
        raise
    if tracker.active:
        tracker.end_study("FINISHED")
    return summary


def _run_jobs(cfg: StudyConfig, out: Path, tracker: Tracker, progress: bool, promote: bool) -> dict[str, Any]:
    evals, analyses = [], []
    for seed in cfg.seeds:  # each seed draws its own data, as in the pipeline
        data, augmented = out / "data" / f"seed-{seed}", out / "augmented" / f"seed-{seed}"
        _run(PrepareDataJob(config=cfg, seed=seed, out_dir=data))
        _run(ValidateDataJob(config=cfg, seed=seed, tracker=tracker, dataset_dir=data,
                             report_dir=out / "validation" / f"seed-{seed}"))
        _run(AugmentDataJob(config=cfg, seed=seed, dataset_dir=data, out_dir=augmented))
        trained: dict[str, Path] = {}
        for name, spec in variant_specs(cfg).items():
            tdir, edir = out / "train" / run_name(name, seed), out / "eval" / run_name(name, seed)
            _run(TrainJob(config=cfg, tracker=tracker, variant=name, seed=seed, dataset_dir=augmented, model_dir=tdir,
                          eval_dir=edir, teacher=trained[spec.teacher] if spec.teacher else None,
                          reference=trained[spec.reference] if spec.reference else None, progress=progress))
            trained[name] = tdir
            evals.append(edir)
        if cfg.analysis.enabled and seed == cfg.seeds[0]:
            for model, ref in analysis_pairs(cfg):
                if model in trained:
                    adir = out / "analysis" / run_name(model, seed)
                    _run(AnalyzeJob(config=cfg, tracker=tracker, model=trained[model],
                                    reference=trained.get(ref) if ref else None, dataset_dir=augmented, out_dir=adir))
                    analyses.append(adir)
    summary = _run(SummarizeJob(config=cfg, tracker=tracker, out_dir=out / "report", eval_dirs=evals,
                                analysis_dirs=analyses))["summary"]
    if promote and gate_decision(summary) == "pass":
        summary["promoted"] = _run(PromoteJob(config=cfg, tracker=tracker))
    return summary
