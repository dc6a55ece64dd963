"""The jobs: typed, validated once, run through one entry point; thin components that import nothing heavy."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from debiaskd.core.config import StudyConfig, load_config
from debiaskd.core.errors import DebiaskdError
from debiaskd.jobs.base import ERROR_FILE_ENV
from debiaskd.jobs.registry import JOBS, make_job, run_job
from debiaskd.jobs.report import GROUP_TABLE, RETENTION_TABLE, report_figures, summary_tables
from debiaskd.jobs.study import EndStudyJob
from debiaskd.jobs.train import TrainJob
from debiaskd.tracking.tracker import Tracker


def _config_text() -> str:
    return json.dumps(load_config("smoke").to_dict(), sort_keys=True, separators=(",", ":"))


def test_every_kind_is_a_frozen_job_built_from_plain_json(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert set(JOBS) == {"start_study", "end_study", "prepare_data", "validate_data", "augment_data",
                         "train_variant", "analyze_pair", "collect_evaluations", "summarize", "promote_challenger",
                         "summarize_sweep"}
    job = make_job("train_variant", {"config": _config_text(), "variant": "student_kd", "seed": "0",
                                     "dataset_dir": str(tmp_path / "d"), "model_dir": str(tmp_path / "m"),
                                     "eval_dir": str(tmp_path / "e"), "teacher": str(tmp_path / "t"),
                                     "tracker": {"uri": "sqlite:///x.db", "study_run_id": "abc"}})
    assert isinstance(job, TrainJob) and isinstance(job.config, StudyConfig) and job.seed == 0
    assert job.config.preset == "smoke" and job.teacher == tmp_path / "t" and job.tracker.active
    with pytest.raises(ValidationError):
        job.seed = 1  # frozen: validated once, never changed
    with pytest.raises(ValidationError):  # a field no job has
        make_job("prepare_data", {"config": _config_text(), "out_dir": "x", "tracking_uri": "y"})
    with pytest.raises(ValueError, match="unknown job kind"):
        run_job("train", {})


def test_the_tracker_is_plain_fields_and_an_empty_uri_means_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    tracker = Tracker.model_validate({"uri": "", "study_run_id": ""})
    assert tracker.uri == "http://mlflow.example:5000" and tracker.study_run_id is None and not tracker.active
    assert Tracker.model_validate_json(tracker.for_study("r1").model_dump_json()) == tracker.for_study("r1")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    with pytest.raises(DebiaskdError, match="no MLflow tracking URI"):
        Tracker().require_uri()


def test_a_user_error_is_recorded_once_under_its_step(tmp_path, monkeypatch) -> None:
    errors = tmp_path / "errors.jsonl"
    monkeypatch.setenv(ERROR_FILE_ENV, str(errors))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    fields = {"config": _config_text(), "variant": "no_such_variant", "seed": 0, "dataset_dir": str(tmp_path),
              "model_dir": str(tmp_path / "m"), "eval_dir": str(tmp_path / "e")}
    with pytest.raises(DebiaskdError, match="unknown or unselected variant"):
        run_job("train_variant", fields)
    with pytest.raises(DebiaskdError, match="no MLflow tracking URI"):
        run_job("start_study", {"config": _config_text(), "name": "study"})
    lines = [json.loads(line) for line in errors.read_text().splitlines()]
    assert [line["step"] for line in lines] == ["train_variant", "start_study"]
    assert "no_such_variant" in lines[0]["message"]


def test_components_and_the_registry_import_nothing_heavy() -> None:
    code = ("import sys, debiaskd.components, debiaskd.components.train, debiaskd.jobs.registry, "
            "debiaskd.runtime.dispatch; "
            "print(sorted(m for m in ('torch', 'mlflow', 'pandas', 'great_expectations', 'transformers') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


class _Study:
    """The study run's tracker, as far as the exit task asks it: where ``champion`` points."""

    def __init__(self, champion: str | None) -> None:
        self.champion = champion

    def alias_version(self, name: str, alias: str):
        assert (name, alias) == ("p-student", "champion")
        return None if self.champion is None else SimpleNamespace(version=self.champion)


@pytest.mark.parametrize(("champion", "passed", "expected"), [
    (None, True, None),  # the promote task did not move the alias
    ("2", True, None),  # the champion is another version (an earlier study's, or another promotion won)
    ("3", True, {"name": "p-student", "version": "3", "alias": "champion"}),
    ("3", False, None),  # the gate refused this study's candidate
])
def test_the_exit_task_records_the_champion_only_if_it_is_this_studys_candidate(tmp_path, champion, passed,
                                                                                 expected) -> None:
    summary = tmp_path / "summary.json"
    student = {"name": "p-student", "version": "3", "gate": {"passed": passed}}
    summary.write_text(json.dumps({"preset": "smoke", "registration": {"student": student}, "promoted": None}))
    EndStudyJob._record_promotion(_Study(champion), summary)
    written = json.loads(summary.read_text())
    assert written["promoted"] == expected
    assert list(written) == ["preset", "registration", "promoted"]  # the report's key order is kept


SUMMARY = {
    "plots": ["group_accuracy.png", "retention.png", "student_kd-s0__attention_heatmap.png"],
    "variants": {
        "teacher_debiased": {"role": "teacher", "seeds": [0, 1],
                             "by_group": {"lexical_overlap/non-entailment": 0.6, "lexical_overlap/entailment": 0.9},
                             "by_group_std": {"lexical_overlap/non-entailment": 0.05}},
        "student_kd": {"role": "student", "seeds": [0, 1],
                       "by_group": {"lexical_overlap/non-entailment": 0.3, "lexical_overlap/entailment": None}},
    },
    "transfer": {"student_kd": {"teacher": "teacher_debiased", "meaningful": False,
                                "by_group_retention": {"lexical_overlap/non-entailment": 0.5,
                                                       "lexical_overlap/entailment": None},
                                "by_group_retention_ci95": {"lexical_overlap/non-entailment": [0.4, 0.6]}}},
}


def test_the_summary_tables_have_one_row_per_variant_and_group() -> None:
    """What the summary step logs with log_table: every measured (variant, group) and (student, group)."""
    tables = summary_tables(SUMMARY)
    assert set(tables) == {GROUP_TABLE, RETENTION_TABLE}
    groups = tables[GROUP_TABLE]
    rows = list(zip(*groups.values(), strict=True))
    assert list(groups) == ["variant", "role", "group", "accuracy", "accuracy_std", "n_seeds"]
    assert rows == [("teacher_debiased", "teacher", "lexical_overlap/entailment", 0.9, None, 2),
                    ("teacher_debiased", "teacher", "lexical_overlap/non-entailment", 0.6, 0.05, 2),
                    ("student_kd", "student", "lexical_overlap/non-entailment", 0.3, None, 2)]  # no None row
    retention = tables[RETENTION_TABLE]
    assert list(zip(*retention.values(), strict=True)) == [
        ("student_kd", "teacher_debiased", "lexical_overlap/non-entailment", 0.5, 0.4, 0.6, False)]
    assert RETENTION_TABLE not in summary_tables({**SUMMARY, "transfer": {}})  # a study without students


def test_the_report_plots_become_image_keys(tmp_path) -> None:
    assert report_figures(tmp_path, SUMMARY) == {
        "group_accuracy": tmp_path / "group_accuracy.png", "retention": tmp_path / "retention.png",
        "mechanism/student_kd-s0/attention_heatmap": tmp_path / "student_kd-s0__attention_heatmap.png"}
