"""The study pipeline end to end through kfp.local against a real MLflow server (smoke preset)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from debiaskd.core.config import VARIANTS
from debiaskd.tracking import service as tracking

pytestmark = pytest.mark.slow
SUMMARY_KEYS = {"in_distribution_accuracy", "challenge_accuracy", "worst_group_accuracy", "challenge_auc",
                "heuristic_reliance", "by_group", "mlflow_run_id", "model_uri", "role", "method"}


def debiaskd(*args: str, timeout: int = 1200) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "debiaskd", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def smoke_run(mlflow_server, tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke") / "run"
    proc = debiaskd("run", "--preset", "smoke", "--out", str(out), "--tracking-uri", mlflow_server.uri,
                    "--set", "tracking.experiment=e2e-smoke", "--set", "tracking.model_prefix=e2e")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return out, proc, mlflow_server.uri


def test_outputs_follow_the_interface(smoke_run):
    out, proc, _ = smoke_run
    summary = json.loads((out / "summary.json").read_text())
    assert summary["preset"] == "smoke" and summary["task"] == "nli" and summary["seeds"] == [0]
    assert set(summary["variants"]) == set(VARIANTS)
    for name, entry in summary["variants"].items():
        assert set(entry) >= SUMMARY_KEYS, name
        assert 0.0 <= entry["challenge_accuracy"] <= 1.0
        assert any(g.endswith("/non-entailment") for g in entry["by_group"])
    assert set(summary["transfer"]) == {v for v in VARIANTS if v.startswith("student_")}
    kd = summary["transfer"]["student_kd"]
    assert "robustness_retention" in kd and kd["by_group_retention"]
    report = (out / "report.md").read_text()
    assert "student_kd_all" in report and "McNemar" in report
    for png in summary["plots"]:
        assert (out / png).is_file() and (out / png).stat().st_size > 1000
    assert (out / "kfp").is_dir() and (out / "resolved_config.yaml").is_file()
    assert "student_kd_teacher_init" in proc.stdout  # the printed results table
    warm_log = (out / "warm.log").read_text()  # every task's job ran in a warm worker ...
    jobs = [line.split()[2] for line in warm_log.splitlines() if line.startswith("ran job ")]
    assert jobs.count("train_variant") == len(VARIANTS)
    assert {"prepare_data", "validate_data", "collect_evaluations", "summarize"} <= set(jobs)
    assert "failed" not in warm_log and "warm worker unavailable" not in (out / "kfp.log").read_text()
    assert "ready: 1 Python thread(s)" in warm_log  # ... forked while the server had no other thread


def test_mlflow_holds_runs_metrics_artifacts_and_registry(smoke_run):
    out, _, uri = smoke_run
    summary = json.loads((out / "summary.json").read_text())
    rows = tracking.study_runs(uri, "e2e-smoke")
    assert {r["variant"] for r in rows} == set(VARIANTS)
    assert all(r["status"] == "FINISHED" for r in rows)
    kd = next(r for r in rows if r["variant"] == "student_kd")
    assert "challenge/lexical_overlap/non-entailment/accuracy" in kd["metrics"]
    assert "test/accuracy" in kd["metrics"]
    c = tracking.client(uri)
    artifacts = {a.path for a in c.list_artifacts(kd["run_id"], "evaluation")}
    assert any(p.endswith("predictions.npz") for p in artifacts)
    reg = summary["registration"]
    student = c.get_model_version(reg["student"]["name"], reg["student"]["version"])
    assert student.tags["run_id"] == summary["variants"][reg["student"]["variant"]]["mlflow_run_id"]
    assert "teacher.challenge_accuracy" in student.tags
    # the data version: the dataset's content hash, the same the training run logged as a parameter
    trained_on = c.get_run(student.tags["run_id"]).data.params["data.content_hash"]
    assert student.tags["data_hash"] == summary["data_hash"] == trained_on and len(trained_on) >= 12
    # the version carries its own seed's evidence and the thresholds it was registered with
    assert student.tags["seed"] == "0" and "gate.threshold.min_kappa" in student.tags
    # the smoke thresholds are loose, but a student no better than the majority class (tiny smoke students
    # are constant predictors) is refused all the same; the old assertion that it passed is what issue 17
    # called wrong
    gate = reg["student"]["gate"]  # the summary step's dry run; promote tags the version only when it runs
    decision = "passed" if gate["passed"] else "refused"
    acc = float(student.tags["metric.in_distribution_accuracy"])
    if acc <= float(student.tags["metric.in_distribution_majority_rate"]):
        assert decision == "refused" and gate["checks"]["above_majority"] is False
    if decision == "passed":
        assert student.tags["gate.decision"] == "passed"
    assert str(tracking.alias_version(uri, reg["student"]["name"], "challenger").version) == reg["student"]["version"]
    if decision == "passed":
        assert summary["promoted"] == {"name": "e2e-student", "version": reg["student"]["version"],
                                       "alias": "champion"}
    else:
        assert summary["promoted"] is None and tracking.alias_version(uri, "e2e-student", "champion") is None
    teacher = c.get_model_version(reg["teacher"]["name"], reg["teacher"]["version"])
    assert teacher.tags["variant"] == "teacher_debiased"


def test_mlflow_shows_figures_tables_and_data_versions_and_run_says_where(smoke_run):
    """After the results, `run` prints the server and the link to the experiment's training runs; the study
    run holds the report's plots as MLflow images and the per-group tables as MLflow tables; the training
    runs' data set inputs and the registered versions name the data version."""
    from debiaskd.tracking import lineage

    out, proc, uri = smoke_run
    summary = json.loads((out / "summary.json").read_text())
    c = tracking.client(uri)
    experiment_id = c.get_experiment_by_name("e2e-smoke").experiment_id
    assert f"MLflow UI: {uri}" in proc.stdout
    assert f"{uri}/#/experiments/{experiment_id}/runs?workflowType=machine_learning" in proc.stdout

    study_id = c.get_run(summary["variants"]["student_kd"]["mlflow_run_id"]).data.tags["mlflow.parentRunId"]
    keys = set(c.get_run(study_id).data.tags[tracking.FIGURES_TAG].split(","))
    assert {"group_accuracy", "retention"} <= keys
    assert len(keys) == len(summary["plots"])  # the analysis plots too, as mechanism/<run>/<plot>
    assert summary.get("analysis") and any(key.startswith("mechanism/") for key in keys)
    assert len([a for a in c.list_artifacts(study_id, "images") if a.path.endswith(".png")]) == len(keys)
    groups = c.load_table(experiment_id, "tables/group_accuracy.json", run_ids=[study_id])
    expected = {(name, group): acc for name, entry in summary["variants"].items()
                for group, acc in entry["by_group"].items() if acc is not None}
    assert len(groups) == len(expected)
    assert {(r.variant, r.group): r.accuracy for r in groups.itertuples()} == pytest.approx(expected)
    retention = c.load_table(experiment_id, "tables/retention.json", run_ids=[study_id])
    assert set(retention["student"]) == {name for name, entry in summary["transfer"].items()
                                         if any(v is not None for v in entry["by_group_retention"].values())}

    root = lineage.checkout_root()
    # the data step records the version of the data it validated, per seed, on the study run
    validated = lineage.parse_data_version(c.get_run(study_id).data.tags["debiaskd.data_version.seed-0"])
    assert validated["git"] == lineage.git_revision(root) and validated["dvc"] == lineage.dvc_data_hash(root)
    assert validated["data"] and len(validated["data"]) >= 12
    for reg in summary["registration"].values():
        version = c.get_model_version(reg["name"], reg["version"])
        trained = c.get_run(version.tags["run_id"])
        assert version.tags["data_version"] == trained.data.params["data.version"]
        parts = lineage.parse_data_version(version.tags["data_version"])
        assert parts == {"git": lineage.git_revision(root), "dvc": lineage.dvc_data_hash(root),
                         "data": trained.data.params["data.content_hash"]}
        [data_set] = trained.inputs.dataset_inputs
        assert json.loads(data_set.dataset.source) == {"uri": version.tags["data_version"]}


def _task_outputs(out: Path, task: str) -> list[dict]:
    """What a task's executor reported for its artifacts (the metadata the Kubeflow UI reads)."""
    found = []
    for path in sorted((out / "kfp").glob(f"*/**/{task}*/executor_output.json")):  # train-model, train-model-2
        found.append(json.loads(path.read_text())["artifacts"])
    return found


def test_kubeflow_ui_artifacts_are_single_files_metrics_and_confusion_matrices(smoke_run):
    """Each HTML artifact is one self-contained page, each Markdown one .md file; the headline scalars
    are Metrics and every trained variant has a confusion matrix as ClassificationMetrics."""
    import base64
    import re

    out, _, _ = smoke_run
    root = next((out / "kfp").glob("debiaskd-nli-study-*"))
    for html_file in [root / "end-study" / "report", root / "summarize-study" / "report",
                      *root.glob("**/analyze-model*/analysis")]:
        assert html_file.is_file(), html_file
        page = html_file.read_text(encoding="utf-8")
        assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
        images = re.findall(r'<img src="([^"]+)"', page)
        assert images and all(src.startswith("data:image/png;base64,") for src in images), html_file
        assert base64.b64decode(images[0].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "student_kd_all" in (root / "end-study" / "report").read_text(encoding="utf-8")
    markdown = next(root.glob("for-loop-2-iteration-0/validate-data/report")).read_text(encoding="utf-8")
    assert markdown.startswith("# Data validation: passed")
    docs = next(root.glob("for-loop-2-iteration-0/validate-data/data_docs")).read_text(encoding="utf-8")
    assert docs.startswith("<!DOCTYPE html>") and "nli_train" in docs and "Data validation" in docs
    assert not re.findall(r'<script|<link|(?:src|href)="(?!#|data:)', docs)  # one file that loads nothing
    trained = _task_outputs(out, "train-model") + _task_outputs(out, "train-student")
    assert len(trained) == len(VARIANTS)
    totals = set()
    for artifacts in trained:
        metrics = artifacts["metrics"]["artifacts"][0]["metadata"]
        assert {"in_distribution_accuracy", "challenge_accuracy", "challenge_auc"} <= set(metrics)
        matrix = artifacts["confusion"]["artifacts"][0]["metadata"]["confusionMatrix"]
        assert [a["displayName"] for a in matrix["annotationSpecs"]] == ["entailment", "neutral", "contradiction"]
        assert [len(r["row"]) for r in matrix["rows"]] == [3, 3, 3]
        totals.add(sum(sum(r["row"]) for r in matrix["rows"]))
    assert len(totals) == 1 and totals.pop() > 0  # every model scored on the same test split


def test_the_study_run_ends_finished_with_an_end_time(smoke_run):
    """The pipeline's exit task ends the parent run; MLflow shows it FINISHED with a duration."""
    out, _, uri = smoke_run
    summary = json.loads((out / "summary.json").read_text())
    c = tracking.client(uri)
    parent_id = c.get_run(summary["variants"]["student_kd"]["mlflow_run_id"]).data.tags["mlflow.parentRunId"]
    parent = c.get_run(parent_id)
    assert parent.data.tags["debiaskd.kind"] == "study"
    assert parent.info.status == "FINISHED"
    assert parent.info.end_time is not None and parent.info.end_time >= parent.info.start_time
    assert all(r["status"] == "FINISHED" for r in tracking.study_runs(uri, "e2e-smoke", parent_id))


def test_rerun_with_same_dir_reuses_finished_steps(smoke_run):
    out, _, uri = smoke_run
    before = json.loads((out / "summary.json").read_text())
    proc = debiaskd("run", "--preset", "smoke", "--out", str(out), "--tracking-uri", uri,
                    "--set", "tracking.experiment=e2e-smoke", "--set", "tracking.model_prefix=e2e")
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (out / "kfp.log").read_text()
    executed = [line for line in log.splitlines() if "Executing task" in line]
    # every step was reused from kfp's cache: nothing trained or evaluated again; only the exit task,
    # never cached, ran to end the (reused) study run again
    assert len(executed) == 1 and "end-study" in executed[0], executed
    after = json.loads((out / "summary.json").read_text())
    assert after["variants"]["student_kd"]["challenge_accuracy"] == before["variants"]["student_kd"][
        "challenge_accuracy"]


def test_failed_validation_stops_before_training_and_registers_nothing(mlflow_server, tmp_path):
    bad = tmp_path / "bad_mnli.tsv"
    bad.write_text("index\tpremise\thypothesis\tgold_label\n0\tA man sleeps.\tA man rests.\tentailment\n"
                   "1\tA dog runs.\t\tmaybe\n2\tA cat sits.\tAn animal sits.\tneutral\n")
    out = tmp_path / "run"
    proc = debiaskd("run", "--preset", "smoke", "--out", str(out), "--tracking-uri", mlflow_server.uri,
                    "--set", "tracking.experiment=e2e-bad", "--set", "tracking.model_prefix=e2e-bad",
                    "--set", f"nli_data.train=mnli:{bad}")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "bad_mnli.tsv" in proc.stderr and "Traceback" not in proc.stderr
    assert not (out / "summary.json").exists()
    c = tracking.client(mlflow_server.uri)
    assert not c.search_registered_models("name LIKE 'e2e-bad%'")
    study = c.search_runs([c.get_experiment_by_name("e2e-bad").experiment_id], "tags.`debiaskd.kind` = 'study'")
    assert [r.info.status for r in study] == ["FAILED"]  # rejected, and not left RUNNING
    log = (out / "kfp.log").read_text()
    assert "train-model" not in log and "train-student" not in log


def test_a_rejected_run_on_the_default_store_ends_failed_with_its_artifacts_under_out(tmp_path):
    """Bad data, default (sqlite) tracking: exit 2, and the study run in DIR/mlflow.db is FAILED with its
    artifacts (the resolved config) under DIR, nothing in the working directory."""
    bad = tmp_path / "bad_mnli.tsv"
    bad.write_text("index\tpremise\thypothesis\tgold_label\n0\tA man sleeps.\tA man rests.\tentailment\n"
                   "1\tA dog runs.\t\tmaybe\n2\tA cat sits.\tAn animal sits.\tneutral\n")
    import os

    out, cwd = tmp_path / "run", tmp_path / "cwd"
    cwd.mkdir()
    # the default store: no MLFLOW_TRACKING_URI (mlflow.set_tracking_uri in this process exports one)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.run([sys.executable, "-m", "debiaskd", "run", "--preset", "smoke", "--out", str(out),
                           "--set", f"nli_data.train=mnli:{bad}"], capture_output=True, text=True, timeout=1200,
                          cwd=cwd, env=env)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert list(cwd.iterdir()) == []  # no ./mlruns, no ./mlflow.db
    c = tracking.client(f"sqlite:///{out / 'mlflow.db'}")
    exp = c.get_experiment_by_name("debiaskd-nli")
    [study] = c.search_runs([exp.experiment_id], "tags.`debiaskd.kind` = 'study'")
    assert study.info.status == "FAILED" and study.info.end_time is not None
    assert study.info.artifact_uri.startswith((out / "mlruns").as_uri())
    assert list((out / "mlruns").rglob("resolved_config.yaml"))
    assert not c.search_registered_models()


FAULT = """
import os

if os.environ.get("DEBIASKD_TEST_FAULT"):
    from debiaskd.jobs.train import TrainJob

    real = TrainJob.train

    def train(self):
        if self.variant == os.environ["DEBIASKD_TEST_FAULT"]:
            raise RuntimeError(f"injected fault while training {self.variant}")
        return real(self)

    TrainJob.train = train
"""


def test_a_failed_training_task_leaves_the_study_run_failed_and_registers_nothing(mlflow_server, tmp_path):
    """A task that crashes (not a user error) mid-study: the exit task still ends the study run, FAILED,
    with the variant runs that were still running; nothing is registered or promoted."""
    import os

    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(FAULT)  # every task's interpreter (and the warm server) loads it
    env = {**os.environ, "DEBIASKD_TEST_FAULT": "student_kd",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(hooks), os.environ.get("PYTHONPATH")]))}
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "debiaskd", "run", "--preset", "smoke", "--out", str(out),
                           "--tracking-uri", mlflow_server.uri, "--set", "tracking.experiment=e2e-fail",
                           "--set", "tracking.model_prefix=e2e-fail", "--set", "variants=[student_erm,student_kd]",
                           "--set", "analysis.enabled=false"], capture_output=True, text=True, timeout=1200, env=env)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "the pipeline failed" in proc.stderr
    assert "injected fault while training student_kd" in (out / "kfp.log").read_text()
    assert not (out / "summary.json").exists()
    c = tracking.client(mlflow_server.uri)
    exp = c.get_experiment_by_name("e2e-fail")
    runs = c.search_runs([exp.experiment_id])
    studies = [r for r in runs if r.data.tags.get("debiaskd.kind") == "study"]
    assert len(studies) == 1
    assert studies[0].info.status == "FAILED" and studies[0].info.end_time is not None
    assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"]
    assert not c.search_registered_models("name LIKE 'e2e-fail%'")


def test_a_conf_reg_study_runs_end_to_end_on_the_erm_teachers_logits(mlflow_server, tmp_path):
    """`--set debias.nli_method=conf_reg`: the ERM teacher is trained, shares its logits on the training
    rows once, and the debiased teacher and the conf_reg students calibrate against them."""
    out = tmp_path / "run"
    proc = debiaskd("run", "--preset", "smoke", "--out", str(out), "--tracking-uri", mlflow_server.uri,
                    "--set", "tracking.experiment=e2e-confreg", "--set", "tracking.model_prefix=e2e-confreg",
                    "--set", "debias.nli_method=conf_reg", "--set", "variants=[student_kd_debiased,student_debiased]",
                    "--set", "analysis.enabled=false")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["variants"]) == {"teacher_erm", "teacher_debiased", "student_debiased", "student_kd_debiased"}
    assert summary["variants"]["teacher_debiased"]["method"] == "conf_reg"
    rows = tracking.study_runs(mlflow_server.uri, "e2e-confreg")
    assert {r["variant"] for r in rows} == set(summary["variants"]) and all(r["status"] == "FINISHED" for r in rows)
    root = next((out / "kfp").glob("debiaskd-nli-study-*"))
    erm = [p for p in root.glob("**/train-model*/model/result.json")
           if json.loads(p.read_text())["variant"] == "teacher_erm"]
    assert len(erm) == 1 and list((erm[0].parent / "teacher_cache").glob("logits-*.npy"))  # shared once
    assert not list(root.glob("**/reference_cache/*.npy"))  # every reader found them there


def test_postgres_backend(postgres_mlflow_server, tmp_path):
    """The same pipeline, fewer variants, on MLflow backed by PostgreSQL, each step in its task's own
    process (--no-warm, as on a cluster)."""
    out = tmp_path / "run"
    proc = debiaskd("run", "--preset", "smoke", "--out", str(out), "--tracking-uri", postgres_mlflow_server.uri,
                    "--set", "tracking.experiment=e2e-pg", "--set", "variants=[student_kd]",
                    "--set", "analysis.enabled=false", "--no-warm")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (out / "warm.log").exists()
    rows = tracking.study_runs(postgres_mlflow_server.uri, "e2e-pg")
    assert {r["variant"] for r in rows} == {"teacher_debiased", "student_kd"}
    assert Path(out / "summary.json").is_file()
