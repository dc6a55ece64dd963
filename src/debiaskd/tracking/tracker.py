"""The tracker a job holds: one MLflow store and, inside it, one study (the parent run).

A :class:`Tracker` is two plain fields (``uri``, ``study_run_id``), so it travels inside a job as JSON
(a kfp component passes ``{"uri": ..., "study_run_id": ...}``); every method goes through
:mod:`debiaskd.tracking.service`, whose calls retry with backoff and fail with a clear error. Methods
that act on "the" run default to the study run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from debiaskd.core.config import GateConfig, StudyConfig
from debiaskd.core.errors import DebiaskdError
from debiaskd.tracking import service


class Tracker(BaseModel):
    """Where a job logs: the tracking URI (given, else ``$MLFLOW_TRACKING_URI``, else none) and the
    study run. Without a URI, or without a study run, the logging methods that need them are not called
    by the jobs (:attr:`active`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    uri: str | None = None
    study_run_id: str | None = None

    @field_validator("uri", mode="before")
    @classmethod
    def _resolve_uri(cls, value: str | None) -> str | None:
        """An empty URI means the cluster's secret (``$MLFLOW_TRACKING_URI``), when one is set."""
        return value or os.environ.get("MLFLOW_TRACKING_URI") or None

    @field_validator("study_run_id", mode="before")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value or None

    # ------------------------------------------------------------------ state
    @property
    def active(self) -> bool:
        """A store and a study run to log into."""
        return bool(self.uri and self.study_run_id)

    def require_uri(self) -> str:
        if self.uri is None:
            raise DebiaskdError("no MLflow tracking URI: pass --tracking-uri or set MLFLOW_TRACKING_URI",
                                rule="tracking configured")
        return self.uri

    def for_study(self, run_id: str | None) -> Tracker:
        """The same store, tracking the study run ``run_id``."""
        return self.model_copy(update={"study_run_id": run_id or None})

    def _run(self, run_id: str | None) -> str:
        run = run_id or self.study_run_id
        if run is None:
            raise DebiaskdError("no MLflow run to log into", file=self.uri, rule="study run started")
        return run

    # ------------------------------------------------------------------ study
    def start_study(self, cfg: StudyConfig, name: str, key: str = "") -> Tracker:
        """Create the study (parent) run, tagged with ``key`` when given; returns a tracker of it."""
        uri = self.require_uri()
        run_id = service.start_study_run(uri, cfg, name, {service.STUDY_KEY_TAG: key} if key else None)
        return self.for_study(run_id)

    def find_study(self, experiment: str, key: str) -> Tracker | None:
        """A tracker of the study run tagged ``key``, or None when none was started."""
        run_id = service.find_study_run(self.require_uri(), experiment, key)
        return None if run_id is None else self.for_study(run_id)

    def end_study(self, status: str) -> list[str]:
        """End the study run (and, after a failure, its variant runs still running)."""
        return service.end_study_run(self.require_uri(), self._run(None), status)

    def study_runs(self, experiment: str) -> list[dict[str, Any]]:
        """The variant runs of this study, with their metrics."""
        return service.study_runs(self.require_uri(), experiment, self.study_run_id)

    # ------------------------------------------------------------------- runs
    def start_variant(self, variant: str, seed: int, role: str, params: dict[str, Any] | None = None) -> str:
        """A nested run of the study for one variant and seed; returns its id."""
        return service.start_variant_run(self.require_uri(), self._run(None), variant, seed, role, params)

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        service.end_run(self.require_uri(), run_id, status)

    def log_metrics(self, metrics: dict[str, Any], run_id: str | None = None, step: int | None = None) -> None:
        service.log_metrics(self.require_uri(), self._run(run_id), metrics, step=step)

    def set_tags(self, tags: dict[str, Any], run_id: str | None = None) -> None:
        service.set_tags(self.require_uri(), self._run(run_id), tags)

    def log_artifacts(self, path: str | Path, artifact_path: str | None = None, run_id: str | None = None) -> None:
        service.log_artifacts(self.require_uri(), self._run(run_id), path, artifact_path)

    def log_dataset(self, run_id: str, frame: Any, name: str, digest: str, source: str, context: str) -> None:
        service.log_dataset(self.require_uri(), run_id, frame, name, digest, source, context)

    def run_params(self, run_id: str | None = None) -> dict[str, str]:
        """The parameters the run logged."""
        return service.run_params(self.require_uri(), self._run(run_id))

    def log_figures(self, figures: dict[str, str | Path], run_id: str | None = None) -> list[str]:
        """Log PNG files as MLflow images under their keys (once per key and run); returns the keys logged."""
        return service.log_figures(self.require_uri(), self._run(run_id), figures)

    def log_table(self, data: dict[str, list[Any]], artifact_file: str, run_id: str | None = None) -> bool:
        """Log a table (columns of equal length) as an MLflow table, unless the run holds it already."""
        return service.log_table(self.require_uri(), self._run(run_id), data, artifact_file)

    def log_model(self, run_id: str, model_dir: str | Path, task: str) -> str:
        return service.log_model(self.require_uri(), run_id, model_dir, task)

    def system_metrics(self, run_id: str):
        """Context manager sampling CPU/RAM (and GPU) into ``run_id``."""
        return service.system_metrics(run_id)

    def has_artifacts(self, artifact_path: str, run_id: str | None = None) -> bool:
        """Whether ``artifact_path`` of the run holds anything."""
        return bool(service.list_artifacts(self.require_uri(), self._run(run_id), artifact_path))

    def download_artifacts(self, artifact_path: str, dst: str | Path, run_id: str | None = None) -> Path:
        return service.download_artifacts(self.require_uri(), self._run(run_id), artifact_path, dst)

    # --------------------------------------------------------------- registry
    def register(self, model_uri: str, name: str, tags: dict[str, Any]) -> str:
        return service.register_model(self.require_uri(), model_uri, name, tags)

    def set_alias(self, name: str, alias: str, version: str) -> None:
        service.set_alias(self.require_uri(), name, alias, version)

    def alias_version(self, name: str, alias: str):
        return service.alias_version(self.require_uri(), name, alias)

    def promote(self, name: str, version: str | None, gate: GateConfig, dry_run: bool = False):
        return service.promote(self.require_uri(), name, version, gate, dry_run=dry_run)
