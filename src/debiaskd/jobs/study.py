"""Start and end the study's parent MLflow run (the pipeline's first task and its exit task)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Literal

from debiaskd.core.errors import DebiaskdError
from debiaskd.jobs.base import Job, write_json
from debiaskd.reporting.html import folder_page
from debiaskd.tracking.service import CHAMPION, STUDY_KEY_TAG

#: kfp's final pipeline states (``dsl.PipelineTaskFinalStatus.state``) → MLflow run statuses
FINAL_STATUS = {"SUCCEEDED": "FINISHED", "FAILED": "FAILED", "CANCELLED": "KILLED"}


class StartStudyJob(Job):
    """Create the parent MLflow run of one study; returns its id (also written to ``out_dir``).

    ``key`` (the pipeline run's study key) is tagged on the run so that :class:`EndStudyJob`, the
    pipeline's exit task, finds it again without any input from inside the pipeline."""

    KIND: Literal["start_study"] = "start_study"
    name: str
    out_dir: Path | None = None
    key: str = ""

    def run(self) -> str:
        self.tracker.require_uri()
        run_id = self.tracker.start_study(self.config, self.name, self.key).study_run_id
        if self.out_dir is not None:
            write_json(self.out_dir / "study.json", {"run_id": run_id, "name": self.name})
        return run_id


class EndStudyJob(Job):
    """The pipeline's exit task: end the study run tagged ``key`` — ``FINISHED`` when the pipeline
    succeeded, ``FAILED`` (with its variant runs still running) otherwise — and, after success, copy
    the study's report (summary.json, report.md, plots) from MLflow into ``report_dir``.

    Returns ``{"status": the MLflow status it set ("" when no study run had been started), "page": one
    self-contained HTML page of the report (None unless the report was copied and ``page`` is set)}``.
    """

    KIND: Literal["end_study"] = "end_study"
    key: str
    state: str
    report_dir: Path | None = None
    page: bool = False

    def run(self) -> dict[str, str | None]:
        cfg = self.config
        uri = self.tracker.require_uri()
        status = FINAL_STATUS.get(self.state, "FAILED")
        study = self.tracker.find_study(cfg.experiment_name, self.key)
        if study is None:
            if status == "FINISHED":
                raise DebiaskdError(f"no study run tagged {STUDY_KEY_TAG}={self.key}", file=uri,
                                    rule="study run started")
            return {"status": "", "page": None}
        study.end_study(status)
        page = None
        if self.report_dir is not None and status == "FINISHED":
            staging = self.report_dir.parent / f".{self.report_dir.name}.download"
            local = study.download_artifacts("report", staging)
            shutil.copytree(local, self.report_dir, dirs_exist_ok=True)
            shutil.rmtree(staging, ignore_errors=True)
            self._record_promotion(study, self.report_dir / "summary.json")
            self._record_promotion(study, self.report_dir / "sweep.json")
            if self.page:
                page = folder_page(self.report_dir, f"debiaskd {cfg.task} study ({cfg.preset})")
        return {"status": status, "page": page}

    @staticmethod
    def _record_promotion(study, summary_file: Path) -> None:
        """Fill the copied summary's (or sweep.json's) ``promoted``: the champion, if it is this study's candidate (the
        promote task ran, the gate passed and no other promotion moved the alias since)."""
        if not summary_file.is_file():
            return
        summary = json.loads(summary_file.read_text(encoding="utf-8"))
        registration = summary.get("registration") or {}
        # a study registers a teacher and a student; a sweep (sweep.json) its best robust cell alone
        student = registration.get("student") if "student" in registration or "teacher" in registration \
            else (registration or None)
        promoted = None
        if student and student["gate"]["passed"]:
            champion = study.alias_version(student["name"], CHAMPION)
            if champion is not None and str(champion.version) == str(student["version"]):
                promoted = {"name": student["name"], "version": str(champion.version), "alias": CHAMPION}
        summary["promoted"] = promoted
        tmp = summary_file.with_name(f".{summary_file.name}.tmp")
        tmp.write_text(json.dumps(summary, indent=2, sort_keys=False, default=str), encoding="utf-8")
        tmp.replace(summary_file)
