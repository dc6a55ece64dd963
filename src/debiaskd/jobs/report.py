"""Collect one seed's evaluations, summarise the study, register its candidates (with the gate's dry run)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from debiaskd.core.config import StudyConfig
from debiaskd.core.errors import DebiaskdError
from debiaskd.core.gate import GATE_KEYS, threshold_tags
from debiaskd.core.study import analysis_pairs, run_name, variant_specs
from debiaskd.jobs.base import Job, read_result
from debiaskd.reporting.html import folder_page
from debiaskd.reporting.report import HEADLINE, build_summary, write_report
from debiaskd.tracking.lineage import current_data_version
from debiaskd.tracking.service import CHALLENGER
from debiaskd.tracking.tracker import Tracker


class CollectJob(Job):
    """Download one seed's evaluations (``eval/<run>``, from each variant run) and analyses
    (``analysis/<run>``, from the study run) from MLflow into ``out_dir``; returns the evaluation folders.

    Fails with a clear error when a selected variant has no finished, evaluated run, so nothing
    downstream registers a model from a failed run.
    """

    KIND: Literal["collect_evaluations"] = "collect_evaluations"
    seed: int
    out_dir: Path

    def run(self) -> list[str]:
        cfg, seed, tracker = self.config, self.seed, self.tracker
        rows = tracker.study_runs(cfg.experiment_name)
        found = []
        for name in variant_specs(cfg):
            runs = [r for r in rows if r["variant"] == name and str(r["seed"]) == str(seed)]
            done = [r for r in runs
                    if r["status"] == "FINISHED" and any(k.startswith("challenge") for k in r["metrics"])]
            if not done:
                raise DebiaskdError(f"variant {run_name(name, seed)} has no finished, evaluated run",
                                    file=tracker.uri, rule="every variant evaluated")
            target = self.out_dir / "eval" / run_name(name, seed)
            target.mkdir(parents=True, exist_ok=True)
            staging = target.parent / f".{target.name}"
            local = tracker.download_artifacts("evaluation", staging, run_id=done[0]["run_id"])
            shutil.copytree(local, target, dirs_exist_ok=True)
            shutil.rmtree(staging, ignore_errors=True)
            found.append(str(target))
        for model, _ in analysis_pairs(cfg):
            name = run_name(model, seed)
            if not tracker.has_artifacts(f"analysis/{name}"):  # analysis is optional (disabled or skipped)
                continue
            local = tracker.download_artifacts(f"analysis/{name}", self.out_dir / ".analysis")
            shutil.copytree(local, self.out_dir / "analysis" / name, dirs_exist_ok=True)
        shutil.rmtree(self.out_dir / ".analysis", ignore_errors=True)
        return found


def collected_dirs(folders: list[str | Path]) -> tuple[list[Path], list[Path]]:
    """Evaluation and analysis folders inside the folders written by :class:`CollectJob`."""
    evals, analyses = [], []
    for folder in folders:
        folder = Path(folder)
        evals += sorted(p for p in (folder / "eval").glob("*") if p.is_dir())
        analyses += sorted(p for p in (folder / "analysis").glob("*") if p.is_dir())
    return evals, analyses


def gate_decision(summary: dict[str, Any]) -> str:
    """"pass" when the registered candidate student passed the gate's dry run, else "refuse"."""
    student = (summary.get("registration") or {}).get("student")
    return "pass" if student and student["gate"]["passed"] else "refuse"


class SummarizeJob(Job):
    """Write summary.json, report.md and plots into ``out_dir``; register the debiased teacher and the
    candidate student (and dry-run the gate on it); log the headline metrics and the report to the
    study run.

    The evaluations are the folders ``eval_dirs`` and ``analysis_dirs``, or, for a pipeline task, those
    inside the ``collected`` folders of the collect tasks. Returns ``{"summary", "gate": "pass" or
    "refuse", "page": one self-contained HTML page of the report when ``page`` is set, else None}``.
    """

    KIND: Literal["summarize"] = "summarize"
    out_dir: Path
    eval_dirs: list[Path] = Field(default_factory=list)
    analysis_dirs: list[Path] = Field(default_factory=list)
    collected: list[Path] = Field(default_factory=list)
    page: bool = False

    def run(self) -> dict[str, Any]:
        cfg, tracker = self.config, self.tracker
        evals_found, analyses_found = collected_dirs(self.collected)
        eval_dirs = [*self.eval_dirs, *evals_found]
        analysis_dirs = [*self.analysis_dirs, *analyses_found]
        evals = [read_result(d) for d in eval_dirs]
        self.out_dir.mkdir(parents=True, exist_ok=True)
        summary = build_summary(cfg, evals, eval_dirs)
        if tracker.active and cfg.tracking.register_models:
            summary["registration"] = register_candidates(cfg, summary, tracker)
        summary["promoted"] = None
        write_report(cfg, summary, self.out_dir, analysis_dirs)
        page = folder_page(self.out_dir, f"debiaskd {cfg.task} study ({cfg.preset})") if self.page else None
        if tracker.active:
            tracker.log_metrics(summary_metrics(summary))
            tracker.log_artifacts(self.out_dir, "report")
            # what the MLflow UI shows as images and tables, beside the report folder's files
            tracker.log_figures(report_figures(self.out_dir, summary))
            for artifact_file, table in summary_tables(summary).items():
                tracker.log_table(table, artifact_file)
        return {"summary": summary, "gate": gate_decision(summary), "page": page}


#: the study run's tables (MLflow ``log_table`` artifacts)
GROUP_TABLE, RETENTION_TABLE = "tables/group_accuracy.json", "tables/retention.json"


def report_figures(out_dir: Path, summary: dict[str, Any]) -> dict[str, Path]:
    """The report's plots as MLflow image keys: ``group_accuracy``, ``retention``, and each analysis plot
    (``<run>__<plot>.png``, copied by the report) as ``mechanism/<run>/<plot>``."""
    figures = {}
    for name in summary.get("plots") or []:
        stem = Path(name).stem
        run, sep, plot = stem.partition("__")
        key = f"mechanism/{run}/{plot}" if sep else stem
        figures["mechanism/patching" if stem == "mechanism_patching" else key] = Path(out_dir) / name
    return figures


def summary_tables(summary: dict[str, Any]) -> dict[str, dict[str, list[Any]]]:
    """The per-group tables of a summary, one row per (variant, group) and per (student, group):
    :data:`GROUP_TABLE` (challenge accuracy of every variant by bias group) and, when the study has
    students, :data:`RETENTION_TABLE` (student / teacher accuracy by group, with its 95% interval where
    there is one). Long tables: MLflow's table view sorts and filters them, ``mlflow.load_table`` stacks
    them across runs."""
    groups: dict[str, list[Any]] = {"variant": [], "role": [], "group": [], "accuracy": [], "accuracy_std": [],
                                    "n_seeds": []}
    for name, entry in summary["variants"].items():
        stds = entry.get("by_group_std") or {}
        for group, accuracy in sorted((entry.get("by_group") or {}).items()):
            if accuracy is None:
                continue
            for column, value in zip(groups, (name, entry.get("role"), group, accuracy, stds.get(group),
                                              len(entry.get("seeds") or [])), strict=True):
                groups[column].append(value)
    tables = {GROUP_TABLE: groups}
    retention: dict[str, list[Any]] = {"student": [], "teacher": [], "group": [], "retention": [], "ci_low": [],
                                       "ci_high": [], "meaningful": []}
    for name, entry in (summary.get("transfer") or {}).items():
        cis = entry.get("by_group_retention_ci95") or {}
        for group, value in sorted((entry.get("by_group_retention") or {}).items()):
            if value is None:
                continue
            ci = cis.get(group) or (None, None)
            for column, cell in zip(retention, (name, entry.get("teacher"), group, value, ci[0], ci[1],
                                                bool(entry.get("meaningful"))), strict=True):
                retention[column].append(cell)
    if retention["student"]:
        tables[RETENTION_TABLE] = retention
    return tables


def summary_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """The study run's metrics: each variant's headline numbers, each student's robustness retention and the
    activation-patching findings (``mechanism/...``, :func:`debiaskd.core.mechanism.mechanism_metrics`)."""
    metrics: dict[str, float] = {}
    for variant, entry in summary["variants"].items():
        for key in HEADLINE:
            if isinstance(entry.get(key), int | float):
                metrics[f"{variant}/{key}"] = entry[key]
    for variant, entry in summary.get("transfer", {}).items():
        if isinstance(entry.get("robustness_retention"), int | float):
            metrics[f"{variant}/robustness_retention"] = entry["robustness_retention"]
    if summary.get("mechanism"):
        from debiaskd.core.mechanism import mechanism_metrics  # pandas (core.metrics): slow; jobs.registry imports this

        metrics.update(mechanism_metrics(summary["mechanism"]))
    return metrics


def register_candidates(cfg: StudyConfig, summary: dict[str, Any], tracker: Tracker) -> dict[str, Any]:
    """Register the debiased teacher and the candidate student (alias ``challenger``) with evidence.

    The registered weights are one seed's (the first of the study's seeds the variant ran with), and
    so is the evidence the gate reads: ``metric.*`` is that seed's evaluation, ``teacher.*`` the
    teacher's on the same seed; the means over seeds go under ``mean.metric.*`` / ``mean.teacher.*``
    for the record only. The gate's thresholds are stored as ``gate.threshold.*``, so a later
    ``promote`` re-applies them. ``data_hash`` is the content hash of the registered seed's data and
    ``data_version`` the version its training run logged (:mod:`debiaskd.tracking.lineage`: git revision,
    DVC hash of ``data/``, content hash).
    """
    variants = summary["variants"]
    teacher_name, student_name = f"{cfg.model_prefix}-teacher", f"{cfg.model_prefix}-student"
    teacher = variants.get("teacher_debiased")
    candidate = summary.get("candidate")
    study_run_id = tracker.study_run_id
    out: dict[str, Any] = {"teacher": None, "student": None}
    if not teacher or not teacher.get("model_uri"):
        return out

    def own(entry: dict[str, Any], seed: str) -> dict[str, Any]:
        per_seed = entry.get("per_seed") or {}
        if per_seed:
            return per_seed.get(seed) or {}
        return {**{k: entry.get(k) for k in GATE_KEYS}, "by_group": entry.get("by_group") or {},
                "mlflow_run_id": entry.get("mlflow_run_id"), "model_uri": entry.get("model_uri")}

    def data_of(seed: str) -> str:  # the dataset version the registered seed trained and was evaluated on
        return (summary.get("data_hashes") or {}).get(seed) or summary.get("data_hash", "")

    def version_of(run_id: str | None, data_hash: str) -> str:
        # the data version the training run logged; computed here for a run that logged none
        logged = tracker.run_params(run_id).get("data.version") if run_id else None
        return logged or current_data_version(data_hash)

    def first_seed(entry: dict[str, Any]) -> str:
        seeds = entry.get("seeds") or sorted(int(k) for k in (entry.get("per_seed") or {"0": None}))
        return str(seeds[0])

    t_seed = first_seed(teacher)
    t_own = own(teacher, t_seed)
    t_tags = {f"metric.{k}": t_own.get(k) for k in GATE_KEYS}
    t_tags.update({f"mean.metric.{k}": teacher.get(k) for k in GATE_KEYS})
    t_run = t_own.get("mlflow_run_id") or teacher["mlflow_run_id"]
    t_tags.update({"run_id": t_run, "variant": "teacher_debiased", "seed": t_seed, "data_hash": data_of(t_seed),
                   "data_version": version_of(t_run, data_of(t_seed)), "study_run_id": study_run_id})
    t_version = tracker.register(t_own.get("model_uri") or teacher["model_uri"], teacher_name, t_tags)
    out["teacher"] = {"name": teacher_name, "version": t_version, "seed": t_seed}
    if not candidate:
        return out
    student = variants[candidate]
    seed = first_seed(student)
    s_own = own(student, seed)
    t_same = own(teacher, seed)  # the teacher this seed's student was distilled from / compared with
    if not s_own.get("model_uri"):
        return out
    s_tags: dict[str, Any] = {f"metric.{k}": s_own.get(k) for k in GATE_KEYS}
    s_tags.update({f"teacher.{k}": t_same.get(k) for k in GATE_KEYS})
    s_tags.update({f"mean.metric.{k}": student.get(k) for k in GATE_KEYS})
    s_tags.update({f"mean.teacher.{k}": teacher.get(k) for k in GATE_KEYS})
    s_tags.update({"run_id": s_own["mlflow_run_id"], "variant": candidate, "seed": seed,
                   "teacher_version": t_version, "teacher_seed": seed, "teacher_run_id": t_same.get("mlflow_run_id"),
                   "teacher_name": teacher_name, "data_hash": data_of(seed),
                   "data_version": version_of(s_own["mlflow_run_id"], data_of(seed)), "study_run_id": study_run_id})
    s_ch, t_ch = s_own.get("challenge_accuracy"), t_same.get("challenge_accuracy")
    s_tags["retention"] = (s_ch / t_ch) if s_ch is not None and t_ch else None
    t_groups, s_groups = t_same.get("by_group") or {}, s_own.get("by_group") or {}
    for group, tv in t_groups.items():
        sv = s_groups.get(group)
        s_tags[f"retention.{group}"] = (sv / tv) if sv is not None and tv else None
    transfer = summary.get("transfer", {}).get(candidate, {})
    s_tags["mean.retention"] = transfer.get("robustness_retention")
    for group, value in (transfer.get("by_group_retention") or {}).items():
        s_tags[f"mean.retention.{group}"] = value
    s_tags.update(threshold_tags(cfg.gate))
    s_version = tracker.register(s_own["model_uri"], student_name, s_tags)
    tracker.set_alias(student_name, CHALLENGER, s_version)
    decision = tracker.promote(student_name, s_version, cfg.gate, dry_run=True)
    out["student"] = {"name": student_name, "version": s_version, "variant": candidate, "seed": seed,
                      "gate": decision.to_dict()}
    return out
