"""Shared fixtures: paths, a real `mlflow server` subprocess, PostgreSQL when available."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import pytest

os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.pop("MLFLOW_TRACKING_URI", None)
# The tools this environment installed (dvc, hadolint, ruff, the mlflow CLI, uvicorn for `mlflow models
# serve`) come first on PATH, as in an activated venv: `PYTHON=/new/venv/bin/python make test` does not
# activate it, and what a test starts must be this environment's, not whatever else is on PATH.
_SCRIPTS = sysconfig.get_path("scripts")
if _SCRIPTS and _SCRIPTS not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = os.pathsep.join(filter(None, [_SCRIPTS, os.environ.get("PATH")]))

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float = 90.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited early with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


class MlflowServer:
    """A real `mlflow server` process on a loopback port (stop/start to simulate outages)."""

    def __init__(self, backend_uri: str, artifacts: Path, log: Path) -> None:
        self.backend_uri, self.artifacts, self.log = backend_uri, artifacts, log
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> MlflowServer:
        cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.backend_uri,
               "--artifacts-destination", str(self.artifacts), "--serve-artifacts",
               "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        self.proc = subprocess.Popen(cmd, stdout=self.log.open("ab"), stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        wait_http(f"{self.uri}/health", proc=self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            import signal

            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc = None


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real MLflow tracking server over HTTP with a sqlite backend."""
    root = tmp_path_factory.mktemp("mlflow-sqlite")
    server = MlflowServer(f"sqlite:///{root / 'mlflow.db'}", root / "artifacts", root / "server.log").start()
    yield server
    server.stop()


def _postgres_uri() -> str | None:
    """A PostgreSQL database for MLflow, created on the local cluster that .ci/run starts."""
    if shutil.which("psql") is None:
        return None
    db = "debiaskd_test_" + str(os.getpid())
    try:
        subprocess.run(["su", "postgres", "-c", f"psql -q -c 'CREATE DATABASE {db}'"], check=True,
                       capture_output=True, timeout=20)
        subprocess.run(["su", "postgres", "-c", "psql -q -c \"ALTER USER postgres PASSWORD 'postgres'\""],
                       check=True, capture_output=True, timeout=20)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError):
        return None
    return f"postgresql+psycopg2://postgres:postgres@127.0.0.1:5432/{db}"  # SQLAlchemy 2.1 defaults to psycopg 3


@pytest.fixture(scope="session")
def postgres_mlflow_server(tmp_path_factory):
    """MLflow over HTTP with a PostgreSQL backend (skipped where no PostgreSQL runs)."""
    uri = _postgres_uri()
    if uri is None:
        pytest.skip("PostgreSQL is not running here (.ci/run starts it with `pg_ctlcluster 15 main start`)")
    root = tmp_path_factory.mktemp("mlflow-pg")
    server = MlflowServer(uri, root / "artifacts", root / "server.log").start()
    yield server
    server.stop()
