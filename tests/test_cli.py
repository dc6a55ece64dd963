"""The command line: help, exit codes, compile and submit (against a fake local endpoint)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
import yaml

from debiaskd.cli import main


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "debiaskd", *args], capture_output=True, text=True, timeout=300)


def test_help_lists_every_command():
    proc = cli("--help")
    assert proc.returncode == 0
    for command in ("run", "data", "evaluate", "analyze", "compile", "submit", "compare", "promote"):
        assert command in proc.stdout
    assert "--preset" in cli("run", "--help").stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "--preset", "huge"], "unknown preset"),
        (["run", "--task", "audio"], "--task"),
        (["run", "--set", "distill.alpha=7"], "distill.alpha"),
        (["compile", "--out", "x.yaml", "--set", "nli_model.bogus=1"], "nli_model.bogus"),
        (["data", "validate", "mnli:/does/not/exist.tsv"], "/does/not/exist.tsv"),
        (["evaluate", "--model", "/no/such/model", "--data", "generated:challenge"], "/no/such/model"),
    ],
)
def test_user_errors_exit_2_without_traceback(args, needle, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(args)
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert needle in captured.err
    assert "Traceback" not in captured.err + captured.out


def test_unknown_option_is_a_usage_error(capsys):
    assert main(["run", "--no-such-flag"]) == 2


def test_compile_writes_ir_yaml(tmp_path):
    out = tmp_path / "p.yaml"
    assert main(["compile", "--preset", "smoke", "--out", str(out)]) == 0
    spec = next(yaml.safe_load_all(out.read_text()))
    assert spec["pipelineInfo"]["name"] == "debiaskd-nli-study"


class _FakeKfp(BaseHTTPRequestHandler):
    calls: ClassVar[list] = []
    states: ClassVar[list] = []  # what GET /runs/run-123 answers, one state per call (the last repeats)

    def _send(self, obj):
        body = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.calls.append(("GET", self.path, b""))
        if "/runs/run-123" in self.path:
            state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
            self._send({"run_id": "run-123", "display_name": "r", "experiment_id": "exp-1", "state": state})
            return
        self._send({"multi_user": False} if "healthz" in self.path else {"experiments": []})

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.calls.append(("POST", self.path, body))
        if self.path.endswith("/experiments"):
            self._send({"experiment_id": "exp-1", "display_name": "x"})
        else:
            self._send({"run_id": "run-123", "display_name": "r", "experiment_id": "exp-1"})

    def log_message(self, *args):
        pass


def test_submit_creates_a_run_on_the_endpoint(capsys):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeKfp)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert main(["submit", "--host", host, "--preset", "paper", "--experiment", "study-x"]) == 0
    finally:
        server.shutdown()
    assert "run-123" in capsys.readouterr().out
    posts = {path: body for method, path, body in _FakeKfp.calls if method == "POST"}
    assert json.loads(posts["/apis/v2beta1/experiments"])["display_name"] == "study-x"
    run = json.loads(posts["/apis/v2beta1/runs"])
    assert run["experiment_id"] == "exp-1"
    assert "nvidia.com/gpu" in json.dumps(run["pipeline_spec"])


@pytest.fixture
def fake_kfp(monkeypatch):
    from debiaskd.pipeline import submit

    real = submit.wait_for_run
    monkeypatch.setattr(submit, "wait_for_run", lambda *a, **k: real(*a, **{**k, "poll_seconds": 0.01}))
    _FakeKfp.calls.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeKfp)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize(("states", "code"), [(["PENDING", "RUNNING", "SUCCEEDED"], 0),
                                               (["RUNNING", "FAILED"], 1), (["CANCELED"], 1)])
def test_submit_wait_follows_the_run_and_exits_with_its_outcome(fake_kfp, states, code, capsys):
    _FakeKfp.states = list(states)
    args = ["submit", "--host", fake_kfp, "--preset", "paper", "--service-account", "debiaskd-pipeline", "--wait"]
    assert main(args) == code
    captured = capsys.readouterr()
    assert f"run run-123: {states[-1]}" in captured.err
    run = json.loads(next(body for method, path, body in _FakeKfp.calls
                          if method == "POST" and path == "/apis/v2beta1/runs"))
    assert run["service_account"] == "debiaskd-pipeline"
    assert sum(1 for method, path, _ in _FakeKfp.calls if method == "GET" and "/runs/run-123" in path) == len(states)


def test_submit_wait_gives_up_after_its_timeout(fake_kfp, capsys):
    _FakeKfp.states = ["RUNNING"]
    assert main(["submit", "--host", fake_kfp, "--preset", "smoke", "--wait", "--wait-timeout", "0"]) == 2
    assert "still RUNNING" in capsys.readouterr().err


def test_submit_to_unreachable_endpoint_is_a_clear_error(capsys):
    assert main(["submit", "--host", "http://127.0.0.1:9", "--preset", "smoke"]) == 2
    assert "127.0.0.1:9" in capsys.readouterr().err


def test_run_takes_seeds_and_ends_with_how_to_open_the_mlflow_ui(tmp_path, capsys, monkeypatch):
    """`--seed` repeats (dvc.yaml's study stage passes params.yaml's seeds so) and wins over --set; after the
    results, the `mlflow ui` command for the run's sqlite store and the link to its experiment's training
    runs. The study itself is stood in for: the smoke run in test_pipeline_run.py checks the http case."""
    from debiaskd.pipeline import local_run
    from debiaskd.tracking import service as tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id = tracking.ensure_experiment(uri, "cli-hint")
    seen = {}

    def run_local(cfg, out_dir, tracking_uri=None, **kwargs):
        seen["seeds"] = list(cfg.seeds)
        return {"variants": {}, "promoted": None, "tracking_uri": uri}

    monkeypatch.setattr(local_run, "run_local", run_local)
    assert main(["run", "--preset", "smoke", "--out", str(tmp_path / "run"), "--set", "tracking.experiment=cli-hint",
                 "--set", "seeds=[9]", "--seed", "3", "--seeds", "5"]) == 0
    assert seen["seeds"] == [3, 5]
    out = capsys.readouterr().out
    assert f"MLflow UI: mlflow ui --backend-store-uri {uri}" in out
    link = f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
    assert link in out.splitlines()[-1]  # one line, unbroken, whatever the terminal's width
