"""MLflow tracking and the registry against a real `mlflow server` over HTTP."""

from __future__ import annotations

import threading

import pytest

from debiaskd.core.config import GateConfig, load_config
from debiaskd.core.errors import DebiaskdError, GateRefused
from debiaskd.core.gate import GATE_KEYS
from debiaskd.tracking import service as tracking
from debiaskd.training.models import build_nli_teacher, load_model, save_model

TEACHER = {"in_distribution_accuracy": 0.8, "challenge_accuracy": 0.6, "worst_group_accuracy": 0.4,
           "challenge_auc": 0.7, "heuristic_reliance": 0.3, "in_distribution_majority_rate": 0.34,
           "in_distribution_kappa": 0.7}
#: the evidence beside the three headline numbers, for a student that learned the task
COMPETENT = {"challenge_auc": 0.7, "heuristic_reliance": 0.25, "in_distribution_majority_rate": 0.34,
             "in_distribution_kappa": 0.65}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    cfg = load_config("smoke")
    model, tok = build_nli_teacher(cfg.nli_model, 0)
    path = tmp_path_factory.mktemp("model") / "m"
    save_model(model, path, {"task": "nli", "variant": "student_kd", "label_names": ["entailment", "neutral",
                                                                                       "contradiction"]}, tok)
    return path


def _register(uri, name, model_dir, metrics, experiment="registry-test"):
    cfg = load_config("smoke", overrides=[f"tracking.experiment={experiment}"])
    parent = tracking.start_study_run(uri, cfg, "study")
    run = tracking.start_variant_run(uri, parent, "student_kd", 0, "student")
    tracking.log_metrics(uri, run, {"challenge/lexical_overlap/non-entailment/accuracy": 0.5})
    model_uri = tracking.log_model(uri, run, model_dir)
    metrics = {**COMPETENT, **metrics}
    tags = {f"metric.{k}": metrics[k] for k in GATE_KEYS}
    tags.update({f"teacher.{k}": TEACHER[k] for k in GATE_KEYS})
    tags["run_id"] = run
    version = tracking.register_model(uri, model_uri, name, tags)
    return run, model_uri, version


def test_runs_metrics_and_registered_model_roundtrip(mlflow_server, model_dir, tmp_path):
    uri = mlflow_server.uri
    run, _model_uri, version = _register(uri, "rt-student", model_dir, {
        "in_distribution_accuracy": 0.79, "challenge_accuracy": 0.58, "worst_group_accuracy": 0.35})
    c = tracking.client(uri)
    got = c.get_run(run)
    assert got.data.metrics["challenge/lexical_overlap/non-entailment/accuracy"] == 0.5
    assert got.data.tags["debiaskd.variant"] == "student_kd"
    assert "mlflow.parentRunId" in got.data.tags
    mv = c.get_model_version("rt-student", version)
    assert mv.tags["metric.challenge_accuracy"] == "0.58" and mv.tags["run_id"] == run
    # the registered model reloads offline into a working debiaskd model folder
    local = tracking.resolve_model(uri, "models:/rt-student/" + version, tmp_path / "dl")
    loaded = load_model(local)
    assert loaded.meta["variant"] == "student_kd"


def test_gate_promotes_passing_and_refuses_failing_leaving_champion(mlflow_server, model_dir):
    uri = mlflow_server.uri
    name = "gate-student"
    _, _, good = _register(uri, name, model_dir, {"in_distribution_accuracy": 0.79, "challenge_accuracy": 0.58,
                                                   "worst_group_accuracy": 0.35})
    decision = tracking.promote(uri, name, good, GateConfig())
    assert decision.passed
    assert str(tracking.alias_version(uri, name, "champion").version) == good
    _, _, bad = _register(uri, name, model_dir, {"in_distribution_accuracy": 0.45, "challenge_accuracy": 0.70,
                                                  "worst_group_accuracy": 0.50})
    with pytest.raises(GateRefused) as refused:
        tracking.promote(uri, name, bad, GateConfig())
    assert any("floor" in r for r in refused.value.reasons)
    assert str(tracking.alias_version(uri, name, "champion").version) == good
    tags = tracking.client(uri).get_model_version(name, bad).tags
    assert tags["gate.decision"] == "refused" and tags["gate.check.competent"] == "false"


def test_racing_promotions_end_on_a_passing_version(mlflow_server, model_dir):
    uri = mlflow_server.uri
    name = "race-student"
    metrics = {"in_distribution_accuracy": 0.79, "challenge_accuracy": 0.58, "worst_group_accuracy": 0.35}
    versions = [_register(uri, name, model_dir, metrics)[2] for _ in range(2)]
    results: dict[str, object] = {}

    def go(v):
        try:
            results[v] = tracking.promote(uri, name, v, GateConfig(require_not_worse_than_champion=False))
        except Exception as exc:  # recorded and checked below
            results[v] = exc

    threads = [threading.Thread(target=go, args=(v,)) for v in versions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = str(tracking.alias_version(uri, name, "champion").version)
    assert final in versions
    assert all(getattr(r, "passed", False) for r in results.values())
    loser = next(v for v in versions if v != final)
    # the loser either ran first (and was overwritten) or saw the race and said so
    assert results[loser].passed


def test_unreachable_server_fails_with_clear_error():
    uri = "http://127.0.0.1:9"  # nothing listens on the discard port
    with pytest.raises(DebiaskdError) as err:
        tracking.log_metrics(uri, "0" * 32, {"a": 1.0})
    assert "127.0.0.1:9" in str(err.value) and "tracking server reachable" in str(err.value)


def test_unknown_experiment_in_compare_is_a_user_error(mlflow_server):
    with pytest.raises(DebiaskdError):
        tracking.study_runs(mlflow_server.uri, "no-such-experiment")


def test_promote_command_exits_3_when_refused_and_0_when_passing(mlflow_server, model_dir, capsys):
    from debiaskd.cli import main

    uri = mlflow_server.uri
    name = "cli-student"
    _, _, good = _register(uri, name, model_dir, {"in_distribution_accuracy": 0.79, "challenge_accuracy": 0.58,
                                                   "worst_group_accuracy": 0.35})
    _, _, bad = _register(uri, name, model_dir, {"in_distribution_accuracy": 0.30, "challenge_accuracy": 0.70,
                                                  "worst_group_accuracy": 0.50})
    assert main(["promote", "--model", name, "--version", bad, "--tracking-uri", uri, "--dry-run"]) == 3
    assert tracking.alias_version(uri, name, "champion") is None  # a dry run changes nothing
    assert main(["promote", "--model", name, "--version", good, "--tracking-uri", uri]) == 0
    assert main(["promote", "--model", name, "--version", bad, "--tracking-uri", uri]) == 3
    assert "promotion refused" in capsys.readouterr().err
    assert str(tracking.alias_version(uri, name, "champion").version) == good


def _png(path, colour):
    from PIL import Image

    Image.new("RGB", (40, 30), colour).save(path)
    return path


def test_figures_and_tables_reach_the_study_run_once(mlflow_server, tmp_path):
    """Figures become MLflow images (keys, step 0) and tables MLflow tables; logging them again (a summary
    step run a second time on the same study run) adds nothing: log_table would append rows."""
    import pandas as pd
    from PIL import Image

    from debiaskd.tracking.tracker import Tracker

    uri = mlflow_server.uri
    tracker = Tracker(uri=uri, study_run_id=tracking.start_study_run(
        uri, load_config("smoke", overrides=["tracking.experiment=figures-test"]), "study"))
    figures = {"group_accuracy": _png(tmp_path / "g.png", "red"),
               "mechanism/student_kd-s0/attention": _png(tmp_path / "a.png", "blue"),
               "retention": tmp_path / "missing.png"}  # a plot the report could not draw is left out
    assert sorted(tracker.log_figures(figures)) == ["group_accuracy", "mechanism/student_kd-s0/attention"]
    assert tracker.log_figures(figures) == []
    c = tracking.client(uri)
    run = c.get_run(tracker.study_run_id)
    assert run.data.tags[tracking.FIGURES_TAG] == "group_accuracy,mechanism/student_kd-s0/attention"
    assert run.data.tags["mlflow.loggedImages"].lower() == "true"  # MLflow's mark: the UI shows image charts
    images = sorted(a.path for a in c.list_artifacts(tracker.study_run_id, "images") if a.path.endswith(".png"))
    assert len(images) == 2  # one per key, not one per call
    local = tracking.download_artifacts(uri, tracker.study_run_id, images[0], tmp_path / "dl")
    assert Image.open(local).getpixel((0, 0)) in ((255, 0, 0), (0, 0, 255))

    table = {"variant": ["teacher_debiased", "student_kd"], "group": ["lexical_overlap/non-entailment"] * 2,
             "accuracy": [0.6, 0.5], "ci_low": [None, 0.4]}
    assert tracker.log_table(table, "tables/group_accuracy.json") is True
    assert tracker.log_table(table, "tables/group_accuracy.json") is False
    loaded = c.load_table(run.info.experiment_id, "tables/group_accuracy.json", run_ids=[tracker.study_run_id])
    pd.testing.assert_frame_equal(loaded.reset_index(drop=True), pd.DataFrame(table), check_dtype=False)


def test_the_data_set_input_names_the_data_version(mlflow_server):
    """The training data set's source is the data version (no path inside a task's container)."""
    import json

    import pandas as pd

    from debiaskd.tracking.lineage import data_version

    uri = mlflow_server.uri
    cfg = load_config("smoke", overrides=["tracking.experiment=lineage-test"])
    run = tracking.start_variant_run(uri, tracking.start_study_run(uri, cfg, "study"), "student_kd", 0, "student")
    version = data_version("ab" * 32, "cd" * 20, "ef" * 16 + ".dir")
    frame = pd.DataFrame({"premise": ["A man sleeps."], "hypothesis": ["A man rests."], "label": [0]})
    tracking.log_dataset(uri, run, frame, "train", "ab" * 32, version, "training")
    got = tracking.client(uri).get_run(run)
    [inp] = got.inputs.dataset_inputs
    assert json.loads(inp.dataset.source) == {"uri": version}
    assert inp.dataset.digest == ("ab" * 32)[:36] and inp.dataset.name == "train"
    assert got.info.status == "RUNNING"  # logging the input leaves the run open for its evaluation


@pytest.mark.parametrize(("uri", "expected"), [
    ("sqlite:////runs/my run/mlflow.db",
     ["MLflow UI: mlflow ui --backend-store-uri 'sqlite:////runs/my run/mlflow.db'   (serves http://127.0.0.1:5000)",
      "  runs: http://127.0.0.1:5000/#/experiments/7/runs?workflowType=machine_learning"]),
    ("http://mlflow.example:5000/",
     ["MLflow UI: http://mlflow.example:5000",
      "  runs: http://mlflow.example:5000/#/experiments/7/runs?workflowType=machine_learning"]),
    ("https://user:secret@mlflow.example",
     ["MLflow UI: https://mlflow.example",
      "  runs: https://mlflow.example/#/experiments/7/runs?workflowType=machine_learning"]),
    ("postgresql://mlflow:secret@db:5432/mlflow",
     ["MLflow UI: mlflow ui --backend-store-uri 'postgresql://mlflow:***@db:5432/mlflow'   "
      "(serves http://127.0.0.1:5000)",
      "  runs: http://127.0.0.1:5000/#/experiments/7/runs?workflowType=machine_learning"]),
])
def test_the_ui_hint_opens_the_experiments_training_runs(uri, expected):
    assert tracking.ui_hint(uri, "7") == expected
    assert "secret" not in "\n".join(tracking.ui_hint(uri, "7"))


def test_the_ui_hint_without_an_experiment_gives_the_ui_only():
    assert tracking.ui_hint("sqlite:////r/mlflow.db", None) == [
        "MLflow UI: mlflow ui --backend-store-uri sqlite:////r/mlflow.db   (serves http://127.0.0.1:5000)"]
