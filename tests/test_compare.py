"""`debiaskd compare` reads as a person needs it in an 80-column terminal."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from debiaskd.core.config import load_config
from debiaskd.tracking import service as tracking

GROUPS = ("lexical_overlap/entailment", "lexical_overlap/non-entailment", "subsequence/entailment",
          "subsequence/non-entailment", "constituent/entailment", "constituent/non-entailment",
          "negation/entailment", "negation/non-entailment")


def _study(tmp_path) -> str:
    """A study with two teachers and two students (seeds 0 and 1), every metric a real run logs."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = load_config("smoke", overrides=["tracking.experiment=compare-test"])
    parent = tracking.start_study_run(uri, cfg, "study")
    for seed in (0, 1):
        for variant, role, challenge in (("teacher_erm", "teacher", 0.55), ("teacher_debiased", "teacher", 0.62),
                                         ("student_kd", "student", 0.31), ("student_kd_teacher_init", "student", 0.6)):
            run = tracking.start_variant_run(uri, parent, variant, seed, role)
            metrics = {"test/accuracy": 0.8, "challenge/accuracy": challenge, "challenge/auc": 0.61,
                       "challenge/worst_group_accuracy": 0.123, "challenge/heuristic_reliance": -0.25,
                       "system/cpu_utilization_percentage": 93.0, "train/loss": 0.4,
                       "challenge/subcase/ln_passive/accuracy": 0.2}
            metrics.update({f"challenge/{g}/accuracy": 0.5 for g in GROUPS})
            tracking.log_metrics(uri, run, metrics)
            tracking.end_run(uri, run)
    return uri


def _compare(uri: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "80"}
    return subprocess.run([sys.executable, "-m", "debiaskd", "compare", "--experiment", "compare-test",
                           "--tracking-uri", uri, *args], capture_output=True, text=True, env=env, timeout=120)


def test_headline_columns_fit_80_columns(tmp_path):
    uri = _study(tmp_path)
    proc = _compare(uri)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in proc.stdout  # nothing cut short
    header = next(line for line in lines if line.split()[:2] == ["variant", "seed"])
    assert header.split() == ["variant", "seed", "ID", "chall.", "AUC", "worst", "rel.", "ret."]
    assert "system" not in proc.stdout and "cpu" not in proc.stdout and "ln_passive" not in proc.stdout
    row = next(line.split() for line in lines if line.split()[:2] == ["student_kd", "1"])
    # accuracies in %, AUC and reliance as they are, retention = 0.31 / teacher_debiased's 0.62
    assert row[2:] == ["80.0", "31.0", "0.61", "12.3", "-0.25", "0.50"]
    init = next(line.split() for line in lines if line.split()[:2] == ["student_kd_teacher_init", "0"])
    assert init[-1] == "0.97"
    teacher = next(line.split() for line in lines if line.split()[:2] == ["teacher_erm", "0"])
    assert teacher[-1] == "–"  # a teacher keeps no retention


def test_groups_on_request_still_fit_and_json_keeps_every_metric(tmp_path):
    uri = _study(tmp_path)
    out = tmp_path / "rows.json"
    proc = _compare(uri, "--groups", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80 and "…" not in proc.stdout
    header = next(line.split() for line in lines if line.split()[:2] == ["variant", "seed"] and "conE" in line)
    assert header[2:] == ["conE", "conN", "lexE", "lexN", "negE", "negN", "subE", "subN"]
    rows = json.loads(out.read_text())
    assert len(rows) == 8 and "system/cpu_utilization_percentage" in rows[0]["metrics"]
