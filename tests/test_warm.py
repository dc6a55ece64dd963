"""Warm workers: a task's step runs in a process forked from a server that preloaded libraries,
with the task's directory, environment, output streams, return value and exceptions."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from debiaskd import warm
from debiaskd.errors import DebiaskdError

LIGHT = ("debiaskd.errors",)  # the unit tests need no heavy preload
PROBE = "debiaskd.warm:probe"


@pytest.fixture
def server(tmp_path):
    log = tmp_path / "warm.log"
    with warm.serving(log, preload=LIGHT) as path:
        yield path, log


def test_without_a_server_the_step_runs_in_this_process(monkeypatch):
    monkeypatch.delenv(warm.SOCKET_ENV, raising=False)
    assert warm.call(PROBE)["pid"] == os.getpid()


def test_an_unreachable_server_falls_back_to_this_process(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(warm.SOCKET_ENV, str(tmp_path / "no-such-socket"))
    assert warm.call(PROBE)["pid"] == os.getpid()
    assert "warm worker unavailable" in capsys.readouterr().err


def test_each_call_runs_in_its_own_forked_child(server):
    with ThreadPoolExecutor(4) as pool:
        pids = [r["pid"] for r in pool.map(lambda _: warm.call(PROBE), range(4))]
    assert len(set(pids)) == 4 and os.getpid() not in pids


def test_the_child_takes_the_callers_directory_and_environment(server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DEBIASKD_WARM_TEST", "set after the server started")
    seen = warm.call(PROBE, env=("DEBIASKD_WARM_TEST", warm.SOCKET_ENV))
    assert seen["cwd"] == str(tmp_path)
    assert seen["env"]["DEBIASKD_WARM_TEST"] == "set after the server started"
    assert seen["env"][warm.SOCKET_ENV] is None  # a step cannot fork itself another worker


def test_values_cross_as_json_and_what_cannot_is_refused(server):
    assert warm.call("debiaskd.study:run_name", "student_kd", 3) == "student_kd-s3"
    with pytest.raises(RuntimeError, match="StudyConfig cannot be sent"):
        warm.call("debiaskd.config:load_config", "smoke")  # a pydantic object, not JSON


def test_only_functions_of_this_package_run(server):
    with pytest.raises(RuntimeError, match="PermissionError"):
        warm.call("os:getpid")


def test_a_user_error_keeps_its_type_file_rule_and_examples(server):
    with pytest.raises(DebiaskdError) as info:
        warm.call("debiaskd.config:load_config", "no-such-preset")
    assert info.value.rule == "preset" and "no-such-preset" in str(info.value)


def test_the_childs_output_goes_to_the_calling_task(server):
    path, log = server
    env = {**os.environ, warm.SOCKET_ENV: path}
    code = ("from debiaskd import warm\nwarm.call('debiaskd.warm:probe', 'hello from a warm worker')\n"
            "warm.call('debiaskd.config:load_config', 'no-such-preset')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 1
    assert proc.stdout.strip() == "hello from a warm worker"
    assert "no-such-preset" in proc.stderr and "DebiaskdError" in proc.stderr
    text = log.read_text()
    assert "ran debiaskd.warm:probe" in text and "failed debiaskd.config:load_config" in text


def test_a_worker_that_dies_is_a_clear_error(tmp_path, monkeypatch):
    """A listener that hangs up without replying stands in for a child killed mid-step."""
    path = str(tmp_path / "s")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)

    def hang_up() -> None:
        conn, _ = listener.accept()
        conn.recv(1 << 16)
        conn.close()

    threading.Thread(target=hang_up, daemon=True).start()
    monkeypatch.setenv(warm.SOCKET_ENV, path)
    with pytest.raises(RuntimeError, match="ended without a result"):
        warm.call(PROBE)
    listener.close()


def test_the_server_stops_and_cleans_up_with_its_block(tmp_path):
    log = tmp_path / "warm.log"
    with warm.serving(log, preload=LIGHT) as path:
        assert os.path.exists(path) and os.environ[warm.SOCKET_ENV] == path
        assert oct(os.stat(os.path.dirname(path)).st_mode & 0o777) == "0o700"  # only this user connects
        deadline = time.monotonic() + 60
        while "ready" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
    assert not os.path.exists(path) and warm.SOCKET_ENV not in os.environ
    assert "ready: 1 Python thread(s)" in log.read_text()
