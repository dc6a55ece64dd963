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

from debiaskd.core.errors import DebiaskdError
from debiaskd.runtime import warm

LIGHT = ("debiaskd.core.errors",)  # the unit tests need no heavy preload
PROBE = "debiaskd.runtime.warm:probe"


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
    assert warm.call("debiaskd.core.study:run_name", "student_kd", 3) == "student_kd-s3"
    with pytest.raises(RuntimeError, match="StudyConfig cannot be sent"):
        warm.call("debiaskd.core.config:load_config", "smoke")  # a pydantic object, not JSON


def test_only_functions_of_this_package_run(server):
    with pytest.raises(RuntimeError, match="PermissionError"):
        warm.call("os:getpid")


def test_a_user_error_keeps_its_type_file_rule_and_examples(server):
    with pytest.raises(DebiaskdError) as info:
        warm.call("debiaskd.core.config:load_config", "no-such-preset")
    assert info.value.rule == "preset" and "no-such-preset" in str(info.value)


def test_the_childs_output_goes_to_the_calling_task(server):
    path, log = server
    env = {**os.environ, warm.SOCKET_ENV: path}
    code = ("from debiaskd.runtime import warm\nwarm.call('debiaskd.runtime.warm:probe', 'hello from a warm worker')\n"
            "warm.call('debiaskd.core.config:load_config', 'no-such-preset')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 1
    assert proc.stdout.strip() == "hello from a warm worker"
    assert "no-such-preset" in proc.stderr and "DebiaskdError" in proc.stderr
    text = log.read_text()
    assert "ran debiaskd.runtime.warm:probe" in text and "failed debiaskd.core.config:load_config" in text


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


# ------------------------------------------------- whole tasks: `sys.executable -m MODULE` in a worker

POOL_MODULE = '''
import concurrent.futures, os, sys
pool = concurrent.futures.ThreadPoolExecutor(2)  # left idle and open, as libraries leave theirs
print("answer", pool.submit(lambda: 6 * 7).result(), os.getpid(), os.environ.get("DEBIASKD_WARM_TEST"))
print("args", *sys.argv[1:])
sys.exit(int(sys.argv[1]))
'''


@pytest.fixture
def module_server(tmp_path, monkeypatch):
    (tmp_path / "warm_pool_probe.py").write_text(POOL_MODULE)
    monkeypatch.chdir(tmp_path)  # `-m warm_pool_probe` is found in the task's directory, as python finds it
    log = tmp_path / "warm.log"
    real = sys.executable
    with warm.serving(log, preload=LIGHT, run_modules=("warm_pool_probe",)) as path:
        yield path, log, real
    assert sys.executable == real  # the stand-in interpreter is only for the block


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DEBIASKD_WARM_TEST": "the task's"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, env=env)


def test_a_named_module_runs_in_a_worker_with_the_tasks_arguments_output_and_exit_status(module_server):
    path, log, real = module_server
    assert sys.executable != real and os.path.dirname(sys.executable) == os.path.dirname(path)
    proc = _run("-m", "warm_pool_probe", "3", "two words")
    assert proc.returncode == 3, proc.stderr  # sys.exit(3), after the idle pool was shut down
    words = proc.stdout.split()
    assert words[:2] == ["answer", "42"] and words[3] == "the"  # its environment, not the server's
    assert "args 3 two words" in proc.stdout
    assert f"pid {words[2]})" in log.read_text()  # the worker that ran it logged it
    assert "ran -m warm_pool_probe" not in log.read_text()  # exit status 3 counts as a failure
    assert "failed -m warm_pool_probe" in log.read_text()


def test_other_commands_run_in_the_real_interpreter(module_server):
    _, log, _ = module_server
    proc = _run("-c", "import sys; print(sys.flags.isolated, sys.flags.no_site)")
    assert proc.returncode == 0 and proc.stdout.split() == ["0", "0"]  # not the launcher's -I -S
    proc = _run("-m", "json.tool", "--help")  # a module the server was not started for
    assert proc.returncode == 0 and "usage" in proc.stdout
    assert "json.tool" not in log.read_text()


def test_without_a_server_the_launcher_starts_the_real_interpreter(tmp_path, monkeypatch, capfd):
    from debiaskd.runtime import launcher as warm_launcher

    monkeypatch.setenv(warm.SOCKET_ENV, str(tmp_path / "no-such-socket"))
    assert warm_launcher.forward(str(tmp_path / "no-such-socket"), "json.tool", []) is None
    assert "warm worker unavailable" in capfd.readouterr().err
