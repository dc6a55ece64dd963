"""Warm workers for the local runner: each pipeline task's job runs in a process forked from one that
has already imported torch, transformers, MLflow and Great Expectations.

kfp's SubprocessRunner starts a fresh Python for every task, and each task spent 5–9 s importing
libraries before a second of work on the smoke preset. ``debiaskd run`` starts one warm server
(:func:`serving`) for the length of the run and points ``$DEBIASKD_WARM_SOCKET`` at it; the tasks
it starts inherit that variable, and each component hands its job to
:func:`debiaskd.runtime.dispatch.execute`, which sends the job's kind and fields, with the task's
working directory, environment, stdout and stderr, over a Unix socket (:mod:`debiaskd.runtime.protocol`).
The server forks a child per job; the child takes over the task's streams, directory and
environment, runs the job and sends back its result or its exception, then leaves. The task's logs,
outputs, errors and exit status are what they would have been in its own process.

Everything here stands on documented interfaces: the standard library's ``os.fork``, ``socket.send_fds``
/ ``recv_fds`` and ``os._exit`` (the documented way for a forked child to leave without running
the parent's cleanup), and kfp's own contract that a component is a Python function. The socket sits
in a folder only this user can open, requests are JSON (nothing is unpickled) and the server runs
only job kinds of this package. The server never runs torch code itself: a process is forked only
before any thread pool or accelerator has started.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from debiaskd.runtime import dispatch, protocol
from debiaskd.runtime.protocol import SOCKET_ENV, send_message

#: modules imported by the server, in the order jobs first need them (``module:name`` also loads a
#: lazy attribute); jobs that arrive meanwhile are forked between two imports (and import what is
#: still missing themselves)
PRELOAD = (
    "debiaskd.jobs.registry", "debiaskd.data.store", "debiaskd.data.build", "debiaskd.data.generate_nli",
    "debiaskd.tasks", "mlflow",
    "debiaskd.tracking.service", "great_expectations", "debiaskd.data.validate", "debiaskd.data.augment", "torch",
    "debiaskd.training.models",
    "transformers:AutoConfig,AutoModelForSequenceClassification,AutoTokenizer,"  # transformers loads lazily:
    "BertConfig,BertForSequenceClassification,BertTokenizerFast",  # name what the models use
    "debiaskd.training.loop", "debiaskd.training.distill", "debiaskd.training.variant",
    "debiaskd.evaluation.evaluate", "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store", "IPython", "debiaskd.tracking.pyfunc",
    "debiaskd.reporting.report", "debiaskd.analysis.run", "matplotlib.pyplot",
)


def serve(path: str, preload: tuple[str, ...] | None = None) -> None:
    """Listen on ``path``, import ``preload`` (default :data:`PRELOAD`, then :func:`fill_caches`),
    serving any job that arrives between two imports, then fork one child per job until terminated
    or orphaned."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    parent = os.getppid()
    children: set[int] = set()

    def _stop(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    try:
        for item in preload or PRELOAD:
            _serve_pending(listener, children, 0.0)
            started = time.perf_counter()
            try:
                _import(item)
                print(f"preloaded {item} in {time.perf_counter() - started:.2f} s", flush=True)
            except Exception as exc:  # a job imports what it needs anyway
                print(f"could not preload {item}: {exc!r}", flush=True)
        if preload is None:
            try:
                started = time.perf_counter()
                fill_caches()
                print(f"filled caches in {time.perf_counter() - started:.2f} s", flush=True)
            except Exception as exc:  # a library changed: jobs fill them themselves
                print(f"could not fill caches: {exc!r}", flush=True)
        print(f"ready: {threading.active_count()} Python thread(s)", flush=True)
        while os.getppid() == parent:
            _serve_pending(listener, children, 0.5)
    finally:
        listener.close()
        with contextlib.suppress(OSError):
            os.unlink(path)
        for pid in children:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
        for pid in children:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def _import(item: str) -> None:
    module, _, names = item.partition(":")
    imported = importlib.import_module(module)
    for name in filter(None, names.split(",")):
        getattr(imported, name)


def fill_caches() -> None:
    """Fill the caches libraries build on first use, once for every task (no torch computation here:
    see the module docstring)."""
    from transformers import conversion_mapping  # transformers: slow (~1.5 s), only the warm server fills caches

    # (MLflow's module-to-package map is no longer filled here: logged models name their requirements,
    # so MLflow does not infer them, and the map was reachable only through a private function)
    conversion_mapping.get_checkpoint_conversion_mapping("bert")  # ~1,000 regexes compiled when saving a model


def _serve_pending(listener: socket.socket, children: set[int], timeout: float) -> None:
    """Fork a child for each waiting job (waiting at most ``timeout`` for one); reap finished ones."""
    while select.select([listener], [], [], timeout)[0]:
        conn, _ = listener.accept()
        pid = os.fork()
        if pid == 0:
            _child(conn, listener)  # never returns
        conn.close()
        children.add(pid)
        timeout = 0.0
    for pid in list(children):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            children.discard(pid)


def _take_over(conn: socket.socket) -> tuple[dict[str, Any], int]:
    """Receive a job and become its task: stdout, stderr, working directory, environment.
    Returns the request and a descriptor of the server's own log."""
    request, fds = protocol.recv_request(conn)
    sys.stdout.flush()
    sys.stderr.flush()
    server_log = os.dup(1)
    for fd, target in zip(fds, (1, 2), strict=True):
        os.dup2(fd, target)
        os.close(fd)
    sys.stdout.reconfigure(line_buffering=True)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    return request, server_log


def _child(conn: socket.socket, listener: socket.socket) -> None:
    """In a forked child: take over the task, run its job, reply, leave (``os._exit``: a forked child
    must not run the server's cleanup)."""
    code = 0
    try:
        listener.close()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        request, server_log = _take_over(conn)
        kind, started, failed = str(request["kind"]), time.perf_counter(), True
        try:
            payload = protocol.encode({"value": dispatch.run_here(kind, request["fields"])})
            failed = False
        except BaseException as exc:  # the task re-raises it
            traceback.print_exc()
            payload = json.dumps({"error": protocol.error_fields(exc)}, default=str).encode("utf-8")
        sys.stdout.flush()
        sys.stderr.flush()
        send_message(conn, payload)
        outcome = "failed" if failed else "ran"
        os.write(server_log, f"{outcome} job {kind}{_describe(request['fields'])} in "
                             f"{time.perf_counter() - started:.2f} s (pid {os.getpid()})\n".encode())
    except BaseException:  # report, then leave
        traceback.print_exc()
        code = 1
    finally:
        os._exit(code)


def _describe(fields: dict[str, Any]) -> str:
    """A log label for a job: the variant (and seed) it trains or analyses, where it has one."""
    named = [f"{k}={fields[k]}" for k in ("variant", "seed", "model") if isinstance(fields.get(k), str | int)]
    return f" ({', '.join(named)})" if named else ""


@contextlib.contextmanager
def serving(log_path: str | Path | None = None, preload: tuple[str, ...] | None = None,
            timeout: float = 30.0, env: dict[str, str] | None = None) -> Iterator[str]:
    """Start a warm server for the duration of the block, with this process's environment (plus
    ``env``), and point :data:`SOCKET_ENV` at it for the processes started meanwhile; yields the
    socket path. Its log (what it preloaded, how long each import and each job took) goes to
    ``log_path``; ``preload`` replaces :data:`PRELOAD`."""
    folder = tempfile.mkdtemp(prefix="debiaskd-warm-")
    path = os.path.join(folder, "socket")
    log = open(log_path, "w", encoding="utf-8") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "debiaskd.runtime.warm", path, *(preload or ())], stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    previous = os.environ.get(SOCKET_ENV)
    try:
        deadline = time.monotonic() + timeout
        while not os.path.exists(path):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the warm worker did not start (see {log_path or 'its log'})")
            time.sleep(0.02)
        os.environ[SOCKET_ENV] = path
        yield path
    finally:
        if previous is None:
            os.environ.pop(SOCKET_ENV, None)
        else:
            os.environ[SOCKET_ENV] = previous
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log is not subprocess.DEVNULL:
            log.close()
        with contextlib.suppress(OSError):
            os.unlink(path)
        with contextlib.suppress(OSError):
            os.rmdir(folder)


def main(argv: list[str]) -> None:
    """``python -m debiaskd.runtime.warm SOCKET [PRELOAD ...]``.

    Leaves with ``os._exit`` once the server has stopped and reaped its children: tearing down the
    modules it imported took about 4 s, which ``debiaskd run`` would wait for."""
    code = 0
    try:
        serve(argv[0], tuple(argv[1:]) or None)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    main(sys.argv[1:])
