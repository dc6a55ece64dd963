"""Warm workers for the local runner: pipeline tasks run in processes forked from one that has
already imported torch, transformers, MLflow and Great Expectations.

kfp's SubprocessRunner starts a fresh Python for every task, and each task spent 5–9 s importing
libraries before a second of work on the smoke preset. ``debiaskd run`` starts one warm server
(:func:`serving`) and hands it work in two ways, each with the caller's working directory,
environment, stdout and stderr, over a Unix socket; the server forks a child per request:

- a whole task: with ``run_modules`` (``debiaskd run`` names kfp's executor) the server also
  writes a stand-in ``python`` (:mod:`debiaskd.runtime.launcher`) and points ``sys.executable`` at it
  for the block, so the task's ``python -m kfp.dsl.executor_main ARGS`` runs in a child, which
  sends back its exit status;
- one step: :func:`call` sends ``module:function`` and its arguments; the child sends back the
  return value or the exception.

Either way the task's logs, outputs, errors and exit status are what they would have been in its own
process. Calls and replies are JSON (nothing is unpickled); the socket sits in a folder only this user
can open, and the server runs only functions of the ``debiaskd`` package and the modules it was
started with. Without a server (on a Kubeflow cluster, or with ``debiaskd run --no-warm``) tasks start
their own interpreter and :func:`call` runs the step in the calling process. The server never runs
torch code itself: a process is forked only before any thread pool or accelerator has started.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import runpy
import select
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from debiaskd.runtime import launcher as warm_launcher
from debiaskd.runtime.launcher import SOCKET_ENV, recv_exact, recv_message, send_message

#: modules imported by the server, in the order tasks first need them (``module:name`` also loads a
#: lazy attribute); tasks that arrive meanwhile are forked between two imports (and import what is
#: still missing themselves)
PRELOAD = (
    "debiaskd.jobs.steps", "debiaskd.data.store", "debiaskd.data.build", "debiaskd.data.generate_nli", "mlflow",
    "debiaskd.tracking.service", "great_expectations", "debiaskd.data.validate", "debiaskd.data.augment", "torch",
    "debiaskd.training.models",
    "transformers:AutoConfig,AutoModelForSequenceClassification,AutoTokenizer,"  # transformers loads lazily:
    "BertConfig,BertForSequenceClassification,BertTokenizerFast",  # name what the models use
    "debiaskd.training.loop", "debiaskd.training.distill", "debiaskd.training.variant",
    "debiaskd.evaluation.evaluate", "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store", "IPython", "debiaskd.tracking.pyfunc",
    "debiaskd.reporting.report", "debiaskd.analysis.run", "matplotlib.pyplot",
)
#: the only functions a warm worker runs: this package's (and, as ``python -m``, the modules named
#: when the server started)
ALLOWED = ("debiaskd.",)
#: environment variable naming those modules (comma-separated) in the server
MODULES_ENV = "DEBIASKD_WARM_MODULES"


def call(target: str, *args: Any, **kwargs: Any) -> Any:
    """Run ``module:function`` with these arguments in a warm worker if one serves this task, else here."""
    path = os.environ.get(SOCKET_ENV)
    conn = warm_launcher.connect(path, f"running {target} in this process") if path else None
    if conn is not None:
        with conn:
            return _remote(conn, target, args, kwargs)
    return _resolve(target)(*args, **kwargs)


def _resolve(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def _to_json(value: Any) -> Any:
    """What a step takes and returns, as JSON: paths become strings, numpy scalars and arrays numbers
    and lists; anything else is refused (a TypeError) rather than sent as an unreadable string."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    for method in ("item", "tolist"):  # numpy scalars, numpy arrays
        if callable(getattr(value, method, None)) and type(value).__module__ == "numpy":
            return getattr(value, method)()
    raise TypeError(f"{type(value).__name__} cannot be sent between a task and its warm worker")


def _encode(data: Any) -> bytes:
    return json.dumps(data, default=_to_json).encode("utf-8")


def _error_fields(exc: BaseException) -> dict[str, Any]:
    fields: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc)}
    for name in ("message", "file", "rule", "examples", "reasons"):
        if hasattr(exc, name):
            fields[name] = getattr(exc, name)
    return fields


def _rebuild_error(fields: dict[str, Any], target: str) -> BaseException:
    """The step's exception, as the task would have raised it: the user-facing kinds keep their type
    and fields (the CLI maps them to exit codes); any other comes back as a RuntimeError naming it."""
    from debiaskd.core.errors import DebiaskdError, GateRefused

    if fields["type"] == "DebiaskdError":
        return DebiaskdError(fields["message"], file=fields.get("file"), rule=fields.get("rule"),
                             examples=fields.get("examples"))
    if fields["type"] == "GateRefused":
        return GateRefused(list(fields.get("reasons") or []))
    return RuntimeError(f"{target} raised {fields['type']}: {fields['message']} (traceback above)")


def _remote(conn: socket.socket, target: str, args: tuple, kwargs: dict) -> Any:
    env = {k: v for k, v in os.environ.items() if k != SOCKET_ENV}
    payload = _encode({"target": target, "args": args, "kwargs": kwargs, "cwd": os.getcwd(), "env": env})
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        warm_launcher.send_request(conn, payload, (sys.stdout.fileno(), sys.stderr.fileno()))
        reply = json.loads(recv_message(conn))
    except (EOFError, ConnectionError):
        raise RuntimeError(f"the warm worker running {target} ended without a result "
                           "(killed, or out of memory?)") from None
    if "error" in reply:
        raise _rebuild_error(reply["error"], target)
    return reply["value"]


# --------------------------------------------------------------------------- the server

def serve(path: str, preload: tuple[str, ...] | None = None, modules: tuple[str, ...] = ()) -> None:
    """Listen on ``path``, import ``modules`` (run as ``python -m``) and ``preload`` (default
    :data:`PRELOAD`, then :func:`fill_caches`), serving any request that arrives between two imports,
    then fork one child per request until terminated or orphaned."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    parent = os.getppid()
    children: set[int] = set()

    def _stop(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    try:
        for item in (*modules, *(preload or PRELOAD)):
            _serve_pending(listener, children, modules, 0.0)
            started = time.perf_counter()
            try:
                _import(item)
                print(f"preloaded {item} in {time.perf_counter() - started:.2f} s", flush=True)
            except Exception as exc:  # a task imports what it needs anyway
                print(f"could not preload {item}: {exc!r}", flush=True)
        if preload is None:
            try:
                started = time.perf_counter()
                fill_caches()
                print(f"filled caches in {time.perf_counter() - started:.2f} s", flush=True)
            except Exception as exc:  # a library changed its internals: tasks fill them themselves
                print(f"could not fill caches: {exc!r}", flush=True)
        import threading

        print(f"ready: {threading.active_count()} Python thread(s)", flush=True)
        while os.getppid() == parent:
            _serve_pending(listener, children, modules, 0.5)
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


def probe(message: str | None = None, env: tuple[str, ...] = ()) -> dict[str, Any]:
    """What a step sees where it runs (a health check of the warm worker): prints ``message`` to the
    task's stdout and returns the process id, working directory and the named environment variables."""
    if message is not None:
        print(message)
    return {"pid": os.getpid(), "cwd": os.getcwd(), "env": {name: os.environ.get(name) for name in env}}


def fill_caches() -> None:
    """Fill the caches libraries build on first use, once for every task (no torch computation here:
    see the module docstring)."""
    from transformers import conversion_mapping

    # (MLflow's module-to-package map is no longer filled here: logged models name their requirements,
    # so MLflow does not infer them, and the map was reachable only through a private function)
    conversion_mapping.get_checkpoint_conversion_mapping("bert")  # ~1,000 regexes compiled when saving a model


def _serve_pending(listener: socket.socket, children: set[int], modules: tuple[str, ...], timeout: float) -> None:
    """Fork a child for each waiting request (waiting at most ``timeout`` for one); reap finished ones."""
    while select.select([listener], [], [], timeout)[0]:
        conn, _ = listener.accept()
        pid = os.fork()
        if pid == 0:
            _child(conn, listener, modules)  # never returns
        conn.close()
        children.add(pid)
        timeout = 0.0
    for pid in list(children):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            children.discard(pid)


def _take_over(conn: socket.socket) -> tuple[dict[str, Any], int]:
    """Receive a request and become its caller: stdout, stderr, working directory, environment.
    Returns the request and a descriptor of the server's own log."""
    size = warm_launcher.HEADER.size
    header, fds, _, _ = socket.recv_fds(conn, size, 2)
    header += recv_exact(conn, size - len(header)) if len(header) < size else b""
    request = json.loads(recv_exact(conn, warm_launcher.HEADER.unpack(header)[0]))
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


def _child(conn: socket.socket, listener: socket.socket, modules: tuple[str, ...]) -> None:
    """In a forked child: take over the caller, run the function or module, reply, leave."""
    code = 0
    try:
        listener.close()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        request, server_log = _take_over(conn)
        started = time.perf_counter()
        if "module" in request:
            if request["module"] not in modules:
                send_message(conn, json.dumps({"refused": f"this server runs only {', '.join(modules) or 'functions'}"})
                             .encode("utf-8"))
                return
            what = _describe(request["module"], request["argv"])
            status = _run_module(request["module"], request["argv"])
            payload, failed = json.dumps({"exit": status}).encode("utf-8"), status != 0
        else:
            what, failed = request["target"], True
            try:
                if not request["target"].startswith(ALLOWED):
                    raise PermissionError(f"a warm worker runs only functions of {', '.join(ALLOWED)}")
                payload = _encode({"value": _resolve(request["target"])(*request["args"], **request["kwargs"])})
                failed = False
            except BaseException as exc:  # the task re-raises it
                traceback.print_exc()
                payload = json.dumps({"error": _error_fields(exc)}, default=str).encode("utf-8")
        sys.stdout.flush()
        sys.stderr.flush()
        send_message(conn, payload)
        outcome = "failed" if failed else "ran"
        os.write(server_log, f"{outcome} {what} in {time.perf_counter() - started:.2f} s "
                             f"(pid {os.getpid()})\n".encode())
    except BaseException:  # report, then leave without running the server's cleanup
        traceback.print_exc()
        code = 1
    finally:
        os._exit(code)


def _run_module(module: str, argv: list[str]) -> int:
    """``python -m module argv`` in this (forked) process, up to the exit status a fresh interpreter
    would have: non-daemon threads joined and exit handlers run, but no module teardown."""
    import atexit
    import logging
    import threading

    os.environ.pop(SOCKET_ENV, None)  # the task's own calls run here
    for handler in list(logging.root.handlers):  # a fresh interpreter starts with none
        logging.root.removeHandler(handler)
    sys.argv = [module, *argv]
    sys.path[0] = os.getcwd()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        status = 0
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not isinstance(exc.code, int | None):
            print(exc.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        status = 1
    # what the interpreter does on exit, in its order: threading's exit hooks (they stop idle
    # thread pools) and the wait for non-daemon threads, then the atexit handlers
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()
    return status


def _describe(module: str, argv: list[str]) -> str:
    """A log label: the module and, for kfp's executor, the component function it ran."""
    if "--function_to_execute" in argv[:-1]:
        return f"task {argv[argv.index('--function_to_execute') + 1]} (-m {module})"
    return f"-m {module}"


@contextlib.contextmanager
def serving(log_path: str | Path | None = None, preload: tuple[str, ...] | None = None,
            timeout: float = 30.0, run_modules: tuple[str, ...] = (),
            env: dict[str, str] | None = None) -> Iterator[str]:
    """Start a warm server for the duration of the block, with this process's environment (plus
    ``env``), and point :data:`SOCKET_ENV` at it; yields the socket path. Its log (what it preloaded,
    how long each import and each task took) goes to ``log_path``; ``preload`` replaces :data:`PRELOAD`.

    With ``run_modules``, subprocesses this process starts as ``sys.executable -m MODULE`` (one of
    them) during the block run in warm workers too: ``sys.executable`` points at a stand-in
    interpreter (:mod:`debiaskd.runtime.launcher`) until the block ends."""
    folder = tempfile.mkdtemp(prefix="debiaskd-warm-")
    path = os.path.join(folder, "socket")
    log = open(log_path, "w", encoding="utf-8") if log_path else subprocess.DEVNULL  # noqa: SIM115
    server_env = {**os.environ, **(env or {}), MODULES_ENV: ",".join(run_modules)}
    proc = subprocess.Popen([sys.executable, "-m", "debiaskd.runtime.warm", path, *(preload or ())], stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=server_env)
    previous = os.environ.get(SOCKET_ENV)
    interpreter = sys.executable
    try:
        deadline = time.monotonic() + timeout
        while not os.path.exists(path):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the warm worker did not start (see {log_path or 'its log'})")
            time.sleep(0.02)
        os.environ[SOCKET_ENV] = path
        if run_modules:
            sys.executable = _write_launcher(folder, interpreter)
        yield path
    finally:
        sys.executable = interpreter
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
        for name in ("socket", "python"):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(folder, name))
        with contextlib.suppress(OSError):
            os.rmdir(folder)


def _write_launcher(folder: str, interpreter: str) -> str:
    """An executable ``python`` in ``folder`` that runs :mod:`debiaskd.runtime.launcher` with the standard
    library only (``-I -S``: no site-packages, environment or script directory on its path)."""
    launcher = os.path.join(folder, "python")
    with open(launcher, "w", encoding="utf-8") as fh:
        fh.write(f"#!/bin/sh\nexec {shlex.quote(interpreter)} -I -S {shlex.quote(warm_launcher.__file__)} \"$@\"\n")
    os.chmod(launcher, 0o700)
    return launcher


def main(argv: list[str]) -> None:
    """``python -m debiaskd.runtime.warm SOCKET [PRELOAD ...]`` (modules to run as ``-m`` in $DEBIASKD_WARM_MODULES).

    Leaves with ``os._exit`` once the server has stopped and reaped its children: tearing down the
    modules it imported took about 4 s, which ``debiaskd run`` would wait for."""
    code = 0
    try:
        modules = tuple(filter(None, os.environ.get(MODULES_ENV, "").split(",")))
        serve(argv[0], tuple(argv[1:]) or None, modules)
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
