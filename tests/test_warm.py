"""Warm workers: a task's job runs in a process forked from a server that preloaded libraries, with
the task's directory, environment, output streams, result and exceptions; without a server, in the
task's own process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from debiaskd.runtime import dispatch, protocol, warm

LIGHT = ("debiaskd.core.errors",)  # the unit tests need no heavy preload


@pytest.fixture
def server(tmp_path):
    log = tmp_path / "warm.log"
    with warm.serving(log, preload=LIGHT) as path:
        yield path, log


def test_without_a_server_the_job_runs_in_this_process(monkeypatch):
    monkeypatch.delenv(protocol.SOCKET_ENV, raising=False)
    assert dispatch.execute(dispatch.PROBE)["pid"] == os.getpid()


def test_an_unreachable_server_falls_back_to_this_process(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(protocol.SOCKET_ENV, str(tmp_path / "no-such-socket"))
    assert dispatch.execute(dispatch.PROBE)["pid"] == os.getpid()
    assert "warm worker unavailable" in capsys.readouterr().err


def test_each_job_runs_in_its_own_forked_child(server):
    with ThreadPoolExecutor(4) as pool:
        pids = [r["pid"] for r in pool.map(lambda _: dispatch.execute(dispatch.PROBE), range(4))]
    assert len(set(pids)) == 4 and os.getpid() not in pids


def test_the_child_takes_the_callers_directory_and_environment(server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DEBIASKD_WARM_TEST", "set after the server started")
    seen = dispatch.execute(dispatch.PROBE, env=["DEBIASKD_WARM_TEST", protocol.SOCKET_ENV])
    assert seen["cwd"] == str(tmp_path)
    assert seen["env"]["DEBIASKD_WARM_TEST"] == "set after the server started"
    assert seen["env"][protocol.SOCKET_ENV] is None  # a job cannot fork itself another worker


def test_fields_cross_as_json_and_what_cannot_is_refused(server):
    assert dispatch.execute(dispatch.PROBE, env=("HOME",))["env"]["HOME"] == os.environ.get("HOME")
    with pytest.raises(TypeError, match="object cannot be sent"):
        dispatch.execute(dispatch.PROBE, message=object())


def test_an_unknown_job_kind_is_refused_by_name(server):
    with pytest.raises(Exception, match="no-such-job"):
        dispatch.execute("no-such-job")


def test_the_childs_output_goes_to_the_calling_task(server):
    path, log = server
    env = {**os.environ, protocol.SOCKET_ENV: path}
    code = ("from debiaskd.runtime import dispatch\n"
            "dispatch.execute('probe', message='hello from a warm worker')\n"
            "dispatch.execute('probe', no_such_field=1)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 1
    assert proc.stdout.strip() == "hello from a warm worker"
    assert "TypeError" in proc.stderr  # the job's traceback reaches the task's stderr, and it fails there
    text = log.read_text()
    assert "ran job probe" in text and "failed job probe" in text


def test_a_worker_that_dies_is_a_clear_error(tmp_path, monkeypatch):
    """A listener that hangs up without replying stands in for a child killed mid-job."""
    path = str(tmp_path / "s")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)

    def hang_up() -> None:
        conn, _ = listener.accept()
        conn.recv(1 << 16)
        conn.close()

    threading.Thread(target=hang_up, daemon=True).start()
    monkeypatch.setenv(protocol.SOCKET_ENV, path)
    with pytest.raises(RuntimeError, match="ended without a result"):
        dispatch.execute(dispatch.PROBE)
    listener.close()


def test_the_server_stops_and_cleans_up_with_its_block(tmp_path):
    log = tmp_path / "warm.log"
    with warm.serving(log, preload=LIGHT) as path:
        assert os.path.exists(path) and os.environ[protocol.SOCKET_ENV] == path
        assert oct(os.stat(os.path.dirname(path)).st_mode & 0o777) == "0o700"  # only this user connects
        deadline = time.monotonic() + 60
        while "ready" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
    assert not os.path.exists(path) and protocol.SOCKET_ENV not in os.environ
    assert not os.path.exists(os.path.dirname(path))
    assert "ready: 1 Python thread(s)" in log.read_text()


def test_the_task_side_imports_nothing_heavy():
    """A component's process only hands its job over: the dispatch module must stay light."""
    code = ("import sys, debiaskd.runtime.dispatch\n"
            "heavy = {'torch', 'mlflow', 'pandas', 'great_expectations', 'transformers', 'numpy'}\n"
            "print(sorted(heavy & set(sys.modules)))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr
