"""Warm workers for the local runner: pipeline tasks run in processes forked from one that has
already imported torch, transformers, MLflow and Great Expectations.

kfp's SubprocessRunner starts a fresh Python for every task, and each task spent 5–9 s importing
libraries before a second of work on the smoke preset. ``debiaskd run`` starts one warm server
(:func:`serving`); a component calls its core step through :func:`call`, which hands the call, the
task's working directory, environment, stdout and stderr to the server over a Unix socket. The
server forks a child that runs the step and sends back its return value or its exception, so the
task's logs, outputs, errors and exit status are what they would have been in-process.

Calls and replies are JSON (nothing is unpickled); the socket sits in a folder only this user can
open, and the server runs only functions of the ``debiaskd`` package. Without a server (on a
Kubeflow cluster, or with ``debiaskd run --no-warm``) :func:`call` runs the step in the task's own
process. The server never runs torch code itself: a process is forked only
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
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: the socket a task's :func:`call` connects to; unset means "run in this process"
SOCKET_ENV = "DEBIASKD_WARM_SOCKET"
#: modules imported by the server, in the order tasks first need them (``module:name`` also loads a
#: lazy attribute); tasks that arrive meanwhile are forked between two imports (and import what is
#: still missing themselves)
PRELOAD = (
    "debiaskd.steps", "debiaskd.data.store", "debiaskd.data.generate_nli", "mlflow", "debiaskd.tracking",
    "great_expectations", "debiaskd.data.validate", "debiaskd.data.augment", "torch", "debiaskd.models",
    "transformers:AutoConfig,AutoModelForSequenceClassification,AutoTokenizer,"  # transformers loads lazily:
    "BertConfig,BertForSequenceClassification,BertTokenizerFast",  # name what the models use
    "debiaskd.train", "debiaskd.distill", "debiaskd.evaluate", "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store", "IPython", "debiaskd.mlflow_model",
    "debiaskd.report", "debiaskd.analysis.run", "matplotlib.pyplot",
)
_HEADER = struct.Struct("!Q")
#: the only functions a warm worker runs: this package's
ALLOWED = ("debiaskd.",)


def call(target: str, *args: Any, **kwargs: Any) -> Any:
    """Run ``module:function`` with these arguments in a warm worker if one serves this task, else here."""
    path = os.environ.get(SOCKET_ENV)
    if path:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(path)
        except OSError as exc:
            conn.close()
            print(f"debiaskd: warm worker unavailable ({exc}); running {target} in this process", file=sys.stderr)
        else:
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
    from debiaskd.errors import DebiaskdError, GateRefused

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
        socket.send_fds(conn, [_HEADER.pack(len(payload))], [sys.stdout.fileno(), sys.stderr.fileno()])
        conn.sendall(payload)
        reply = json.loads(_recv_message(conn))
    except (EOFError, ConnectionError):
        raise RuntimeError(f"the warm worker running {target} ended without a result "
                           "(killed, or out of memory?)") from None
    if "error" in reply:
        raise _rebuild_error(reply["error"], target)
    return reply["value"]


def _recv_exact(conn: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = conn.recv(min(left, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _recv_message(conn: socket.socket) -> bytes:
    (size,) = _HEADER.unpack(_recv_exact(conn, _HEADER.size))
    return _recv_exact(conn, size)


def _send_message(conn: socket.socket, payload: bytes) -> None:
    conn.sendall(_HEADER.pack(len(payload)) + payload)


# --------------------------------------------------------------------------- the server

def serve(path: str, preload: tuple[str, ...] | None = None) -> None:
    """Listen on ``path``, import ``preload`` (default :data:`PRELOAD`, then :func:`fill_caches`),
    serving any task that arrives between two imports, then fork one child per task until
    terminated or orphaned."""
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


def probe(message: str | None = None, env: tuple[str, ...] = ()) -> dict[str, Any]:
    """What a step sees where it runs (a health check of the warm worker): prints ``message`` to the
    task's stdout and returns the process id, working directory and the named environment variables."""
    if message is not None:
        print(message)
    return {"pid": os.getpid(), "cwd": os.getcwd(), "env": {name: os.environ.get(name) for name in env}}


def fill_caches() -> None:
    """Fill the caches libraries build on first use, once for every task (no torch computation here:
    see the module docstring)."""
    from mlflow.utils import requirements_utils
    from transformers import conversion_mapping

    requirements_utils._init_modules_to_packages_map()  # every module's distribution, read when logging a model
    conversion_mapping.get_checkpoint_conversion_mapping("bert")  # ~1,000 regexes compiled when saving a model


def _serve_pending(listener: socket.socket, children: set[int], timeout: float) -> None:
    """Fork a child for each waiting task (waiting at most ``timeout`` for one); reap finished ones."""
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


def _child(conn: socket.socket, listener: socket.socket) -> None:
    """In a forked child: take over the task's stdout, stderr, directory and environment; run; reply."""
    code = 0
    try:
        listener.close()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        header, fds, _, _ = socket.recv_fds(conn, _HEADER.size, 2)
        header += _recv_exact(conn, _HEADER.size - len(header)) if len(header) < _HEADER.size else b""
        request = json.loads(_recv_exact(conn, _HEADER.unpack(header)[0]))
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
        started = time.perf_counter()
        failed = True
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
        _send_message(conn, payload)
        outcome = "failed" if failed else "ran"
        os.write(server_log, f"{outcome} {request['target']} in {time.perf_counter() - started:.2f} s "
                             f"(pid {os.getpid()})\n".encode())
    except BaseException:  # report, then leave without running the server's cleanup
        traceback.print_exc()
        code = 1
    finally:
        os._exit(code)


@contextlib.contextmanager
def serving(log_path: str | Path | None = None, preload: tuple[str, ...] | None = None,
            timeout: float = 30.0) -> Iterator[str]:
    """Start a warm server for the duration of the block, with this process's environment, and
    point :data:`SOCKET_ENV` at it; yields the socket path. Its log (what it preloaded, how long
    each import and each task took) goes to ``log_path``; ``preload`` replaces :data:`PRELOAD`."""
    folder = tempfile.mkdtemp(prefix="debiaskd-warm-")
    path = os.path.join(folder, "socket")
    log = open(log_path, "w", encoding="utf-8") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "debiaskd.warm", path, *(preload or ())], stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
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


if __name__ == "__main__":  # python -m debiaskd.warm SOCKET [MODULE ...]
    serve(sys.argv[1], tuple(sys.argv[2:]) or None)
