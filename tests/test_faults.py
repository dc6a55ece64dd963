"""Faults: training killed at random points, MLflow unreachable or stopped mid-run, unwritable outputs.

(Two promotions racing for the same model are covered in ``tests/test_tracking.py``.)
"""

from __future__ import annotations

import random
import signal
import threading
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import MlflowServer, free_port
from debiaskd.cli import main
from debiaskd.core.config import load_config
from debiaskd.core.errors import DebiaskdError
from debiaskd.jobs.data import PrepareDataJob
from debiaskd.jobs.report import CollectJob
from debiaskd.jobs.study import StartStudyJob
from debiaskd.jobs.train import TrainJob
from debiaskd.tracking import service as tracking
from debiaskd.tracking.tracker import Tracker
from debiaskd.training.loop import CHECKPOINT_DIR
from test_resume import SCRIPT, _checkpoint_step, _reference_in_process, _run

# ------------------------------------------------------------------ (a) SIGKILL at random points
NLI_STEPS = 12  # test_resume's NLI script: 96 rows, batch 16, 2 epochs, checkpoint every 2 steps


@pytest.mark.slow
def test_training_killed_at_seeded_random_points_resumes_to_the_same_weights(tmp_path):
    script = tmp_path / "train_script.py"
    script.write_text(SCRIPT)
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    _reference_in_process("nli", reference)
    rng = random.Random(20250)
    done, kills = 0, 0
    while kills < 3:
        remaining = NLI_STEPS - done
        if remaining < 3:
            break
        kill_at = rng.randint(2, remaining - 1)  # a process-local optimizer step, before it runs
        assert _run(script, "nli", resumed, tmp_path, kill_at=kill_at) == -signal.SIGKILL
        step = _checkpoint_step(resumed)
        # the checkpoint never runs ahead of the work done and never goes back
        assert done <= step <= done + kill_at - 1
        assert not (resumed / "model.safetensors").exists()
        done, kills = step, kills + 1
    assert kills == 3
    _run(script, "nli", resumed, tmp_path)
    assert not (resumed / CHECKPOINT_DIR).exists()
    assert (resumed / "model.safetensors").read_bytes() == (reference / "model.safetensors").read_bytes()


# ------------------------------------------------------------- (b) MLflow unreachable / erroring
@pytest.fixture
def fast_retries(monkeypatch):
    """No HTTP-level retries inside MLflow; record the backoff sleeps of :func:`tracking._call`."""
    import time

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    sleeps: list[float] = []
    monkeypatch.setattr(tracking, "time", types.SimpleNamespace(sleep=sleeps.append, time=time.time))
    return sleeps


def test_unreachable_server_retries_with_backoff_then_names_the_uri(fast_retries):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(DebiaskdError) as info:
        tracking.set_tags(uri, "0" * 32, {"debiaskd.kind": "study"})
    assert uri in str(info.value)
    assert info.value.rule == "tracking server reachable"
    assert fast_retries == [1.0, 2.0]  # three attempts, exponential backoff between them
    with pytest.raises(DebiaskdError, match=uri.replace(".", r"\.")):
        tracking.ensure_experiment(uri, "debiaskd-nli")


class _Unavailable(BaseHTTPRequestHandler):
    hits = 0

    def _answer(self) -> None:
        type(self).hits += 1
        body = b'{"error_code": "TEMPORARILY_UNAVAILABLE", "message": "maintenance"}'
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args) -> None:
        pass


def test_server_answering_503_is_retried_then_fails_the_step(fast_retries):
    _Unavailable.hits = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Unavailable)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    uri = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(DebiaskdError) as info:
            tracking.log_metrics(uri, "0" * 32, {"challenge/accuracy": 0.5})
    finally:
        server.shutdown()
        server.server_close()
    assert uri in str(info.value) and "after 3 attempts" in str(info.value)
    assert _Unavailable.hits == 3
    assert fast_retries == [1.0, 2.0]


# ------------------------------------------------------- (c) a real server stopped mid-run
@pytest.mark.slow
def test_server_stopped_mid_run_fails_loudly_and_leaves_the_registry_clean(tmp_path, fast_retries):
    root = tmp_path / "mlflow"
    root.mkdir()
    server = MlflowServer(f"sqlite:///{root / 'mlflow.db'}", root / "artifacts", root / "server.log").start()
    try:
        cfg = load_config("smoke", overrides=["variants=[teacher_erm]", "tracking.register_models=true"])
        uri = server.uri
        data = tmp_path / "data"
        PrepareDataJob(config=cfg, out_dir=data).run()
        parent = StartStudyJob(config=cfg, tracker=Tracker(uri=uri), name="study-fault",
                               out_dir=tmp_path / "study").run()
        tracker = Tracker(uri=uri, study_run_id=parent)
        job = TrainJob(config=cfg, tracker=tracker, variant="teacher_erm", seed=0, dataset_dir=data,
                       model_dir=tmp_path / "train", eval_dir=tmp_path / "eval", progress=False)
        trained = job.train()
        assert trained["run_id"] and trained["model_uri"]

        server.stop()
        with pytest.raises(DebiaskdError) as info:
            job.evaluate()
        assert uri in str(info.value) and info.value.rule == "tracking server reachable"
        # registering or promoting while the server is down fails too, and changes nothing
        name = f"{cfg.model_prefix}-student"
        with pytest.raises(DebiaskdError, match="register"):
            tracking.register_model(uri, trained["model_uri"], name, {"metric.accuracy": 0.9})
        with pytest.raises(DebiaskdError):
            tracking.set_alias(uri, name, tracking.CHAMPION, "1")

        server.start()  # same port, same backend
        c = tracking.client(uri)
        run = c.get_run(trained["run_id"])
        assert not any(k.startswith("challenge") for k in run.data.metrics)
        # nothing downstream can register a model from it
        with pytest.raises(DebiaskdError, match="no finished, evaluated run"):
            CollectJob(config=cfg, tracker=tracker, seed=0, out_dir=tmp_path / "collected").run()
        for model in c.search_registered_models():
            for version in c.search_model_versions(f"name = '{model.name}'"):
                tags = dict(version.tags or {})
                assert any(k.startswith("metric.") for k in tags), f"{model.name} v{version.version} lacks evidence"
            champion = tracking.alias_version(uri, model.name, tracking.CHAMPION)
            if champion is not None:
                assert dict(champion.tags or {}).get("gate.decision") == "passed"
    finally:
        server.stop()


def test_logging_a_model_does_not_mark_the_run_finished(tmp_path):
    """A variant run stays RUNNING until evaluation ends it, so a crash leaves it visibly unfinished."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = load_config("smoke")
    parent = tracking.start_study_run(uri, cfg, "study")
    run_id = tracking.start_variant_run(uri, parent, "teacher_erm", 0, "teacher")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "debiaskd.json").write_text("{}")
    tracking.log_model(uri, run_id, model_dir)
    assert tracking.client(uri).get_run(run_id).info.status == "RUNNING"


# ------------------------------------------------------------ (e) unwritable output directory
def test_run_into_an_unwritable_folder_exits_2_naming_it(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    target = blocker / "out"  # unwritable even for root: its parent is a regular file
    code = main(["run", "--preset", "smoke", "--out", str(target)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert "writable output" in err and str(blocker) in "".join(err.split())


def test_data_generate_into_an_unwritable_folder_exits_2(tmp_path, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    code = main(["data", "generate", "--preset", "smoke", "--out", str(blocker / "data")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert str(blocker) in "".join(err.split())


def test_write_dataset_failing_midway_leaves_no_half_written_folder(tmp_path, monkeypatch):
    from debiaskd.data import build, store

    cfg = load_config("smoke")
    good = build.build_dataset(cfg, tmp_path / "good", "nli")
    ds = store.read_dataset(good)
    before = {p.name: p.read_bytes() for p in good.iterdir()}
    calls = {"n": 0}
    original = Path.write_bytes

    def flaky_write(self: Path, data: bytes) -> int:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        return original(self, data)

    monkeypatch.setattr(Path, "write_bytes", flaky_write)
    # a fresh target: nothing at all is left behind
    with pytest.raises((OSError, DebiaskdError)):  # DebiaskdError once disk errors are wrapped
        store.write_dataset(tmp_path / "fresh", "nli", dict(ds.splits))
    assert not (tmp_path / "fresh").exists()
    # an existing target: the previous complete version survives untouched
    calls["n"] = 0
    with pytest.raises((OSError, DebiaskdError)):
        store.write_dataset(good, "nli", dict(ds.splits), {"second": True})
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in good.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good"]  # no temp or backup folders
    assert store.read_dataset(good).content_hash == ds.content_hash
