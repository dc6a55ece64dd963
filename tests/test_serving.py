"""Serving the champion: `mlflow models serve` answers premise/hypothesis pairs with labels and probabilities."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

import numpy as np
import pandas as pd
import pytest

from conftest import free_port, wait_http
from debiaskd.core.config import load_config
from debiaskd.tracking import service as tracking
from debiaskd.training.models import build_nli_teacher, build_vision_model, save_model

NLI_LABELS = ["entailment", "neutral", "contradiction"]


def _registered(tmp_path, model_dir, task: str, name: str) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = load_config("smoke", overrides=["tracking.experiment=serving"])
    parent = tracking.start_study_run(uri, cfg, "study")
    run = tracking.start_variant_run(uri, parent, "student_kd", 0, "student")
    model_uri = tracking.log_model(uri, run, model_dir, task)
    version = tracking.register_model(uri, model_uri, name, {"variant": "student_kd"})
    tracking.set_alias(uri, name, tracking.CHAMPION, version)
    return uri


@pytest.mark.slow
def test_mlflow_models_serve_answers_with_labels_and_probabilities(tmp_path):
    cfg = load_config("smoke")
    model, tok = build_nli_teacher(cfg.nli_model, 0)
    save_model(model, tmp_path / "m", {"task": "nli", "variant": "student_kd", "label_names": NLI_LABELS}, tok)
    uri = _registered(tmp_path, tmp_path / "m", "nli", "serve-student")
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri}
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m",
                             "models:/serve-student@champion", "--env-manager", "local", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=open(tmp_path / "serve.log", "wb"), cwd=tmp_path)  # noqa: SIM115
    try:
        wait_http(f"http://127.0.0.1:{port}/ping", timeout=180, proc=proc)
        pairs = [{"premise": "The doctor saw the lawyer near the bank.", "hypothesis": "The doctor saw the lawyer."},
                 {"premise": "Nobody slept.", "hypothesis": "The artist did not sleep."}]
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations",
                                         data=json.dumps({"dataframe_records": pairs}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as resp:
            answer = json.loads(resp.read())
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    predictions = answer["predictions"]
    assert len(predictions) == 2
    for row in predictions:
        assert row["label"] in NLI_LABELS
        probs = [row[f"p_{name}"] for name in NLI_LABELS]
        assert abs(sum(probs) - 1.0) < 1e-4 and row["confidence"] == pytest.approx(max(probs))
        assert row["label"] == NLI_LABELS[int(np.argmax(probs))]


def test_logged_models_carry_signatures_and_input_examples(tmp_path):
    """NLI and vision models: a signature (inputs, label, confidence, one probability per class) and an
    input example the model answers."""
    import mlflow

    cfg = load_config("smoke")
    model, tok = build_nli_teacher(cfg.nli_model, 0)
    save_model(model, tmp_path / "nli", {"task": "nli", "variant": "student_kd", "label_names": NLI_LABELS}, tok)
    vision = build_vision_model("cnn_small", 8, 10, 0)
    save_model(vision, tmp_path / "vision", {"task": "vision", "variant": "student_kd", "arch": "cnn_small",
                                             "width": 8, "num_classes": 10,
                                             "label_names": [str(i) for i in range(10)]})
    for task, folder, columns in (("nli", "nli", ["premise", "hypothesis"]), ("vision", "vision", None)):
        _registered(tmp_path / task, tmp_path / folder, task, f"sig-{task}")
        pyfunc = mlflow.pyfunc.load_model("models:/sig-" + task + "@champion")
        schema = pyfunc.metadata.get_input_schema()
        if columns:
            assert schema.input_names() == columns
        else:
            assert schema.is_tensor_spec() and schema.inputs[0].shape == (-1, 3, -1, -1)
        outputs = pyfunc.metadata.get_output_schema().input_names()
        assert outputs[:2] == ["label", "confidence"] and len(outputs) == (5 if task == "nli" else 12)
        example = pyfunc.metadata.load_input_example(mlflow.artifacts.download_artifacts(
            f"models:/sig-{task}@champion", dst_path=str(tmp_path / f"dl-{task}")))
        assert isinstance(example, pd.DataFrame if task == "nli" else np.ndarray)
        answer = pyfunc.predict(example)
        assert list(answer.columns) == outputs and len(answer) == 1
