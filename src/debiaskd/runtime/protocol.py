"""The warm workers' wire protocol, standard library only (a task's process imports it to hand over
its job, so it must stay light).

A request is one length-prefixed JSON message, ``{"kind", "fields", "cwd", "env"}``, sent with the
task's stdout and stderr attached (``SCM_RIGHTS``, :func:`socket.send_fds`); the reply is one
JSON message, ``{"value": …}`` or ``{"error": {"type", "message", …}}``. Nothing is unpickled.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
from typing import Any

from debiaskd.core.errors import DebiaskdError, GateRefused

#: where the server listens; unset means "no warm workers for this process"
SOCKET_ENV = "DEBIASKD_WARM_SOCKET"
HEADER = struct.Struct("!Q")


def recv_exact(conn: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = conn.recv(min(left, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def recv_message(conn: socket.socket) -> bytes:
    (size,) = HEADER.unpack(recv_exact(conn, HEADER.size))
    return recv_exact(conn, size)


def send_message(conn: socket.socket, payload: bytes) -> None:
    conn.sendall(HEADER.pack(len(payload)) + payload)


def send_request(conn: socket.socket, payload: bytes, fds: tuple[int, int] = (1, 2)) -> None:
    """Send a request (JSON bytes) with the caller's stdout and stderr attached."""
    socket.send_fds(conn, [HEADER.pack(len(payload))], list(fds))
    conn.sendall(payload)


def recv_request(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """The request and the two descriptors sent with it (the caller's stdout and stderr)."""
    header, fds, _, _ = socket.recv_fds(conn, HEADER.size, 2)
    header += recv_exact(conn, HEADER.size - len(header)) if len(header) < HEADER.size else b""
    return json.loads(recv_exact(conn, HEADER.unpack(header)[0])), list(fds)


def connect(path: str) -> socket.socket | None:
    """A connection to the server at ``path``, or None (saying so on stderr)."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
    except OSError as exc:
        conn.close()
        print(f"debiaskd: warm worker unavailable ({exc}); running the job in this process", file=sys.stderr)
        return None
    return conn


def to_json(value: Any) -> Any:
    """What a job takes and returns, as JSON: paths become strings, numpy scalars and arrays numbers
    and lists; anything else is refused (a TypeError) rather than sent as an unreadable string."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    for method in ("item", "tolist"):  # numpy scalars, numpy arrays
        if callable(getattr(value, method, None)) and type(value).__module__ == "numpy":
            return getattr(value, method)()
    raise TypeError(f"{type(value).__name__} cannot be sent between a task and its warm worker")


def encode(data: Any) -> bytes:
    return json.dumps(data, default=to_json).encode("utf-8")


def error_fields(exc: BaseException) -> dict[str, Any]:
    """An exception as JSON: its type, message and the fields of debiaskd's user-facing errors."""
    fields: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc)}
    for name in ("message", "file", "rule", "examples", "reasons"):
        if hasattr(exc, name):
            fields[name] = getattr(exc, name)
    return fields


def rebuild_error(fields: dict[str, Any], kind: str) -> BaseException:
    """The job's exception as the task raises it: the user-facing kinds keep their type and fields
    (the CLI maps them to exit codes); any other comes back as a RuntimeError naming it."""
    if fields["type"] == "DebiaskdError":
        return DebiaskdError(fields["message"], file=fields.get("file"), rule=fields.get("rule"),
                             examples=fields.get("examples"))
    if fields["type"] == "GateRefused":
        return GateRefused(list(fields.get("reasons") or []))
    return RuntimeError(f"job {kind} raised {fields['type']}: {fields['message']} (traceback above)")


def remote(conn: socket.socket, kind: str, fields: dict[str, Any]) -> Any:
    """Run job ``kind`` in the server behind ``conn`` with this process's directory, environment and
    output streams; its result, or its exception re-raised here."""
    env = {k: v for k, v in os.environ.items() if k != SOCKET_ENV}
    payload = encode({"kind": kind, "fields": fields, "cwd": os.getcwd(), "env": env})
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        send_request(conn, payload, (sys.stdout.fileno(), sys.stderr.fileno()))
        reply = json.loads(recv_message(conn))
    except (EOFError, ConnectionError):
        raise RuntimeError(f"the warm worker running job {kind} ended without a result "
                           "(killed, or out of memory?)") from None
    if "error" in reply:
        raise rebuild_error(reply["error"], kind)
    return reply["value"]
