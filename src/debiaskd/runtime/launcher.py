"""The ``python`` kfp's local runner starts for each task while warm workers serve a run.

kfp's SubprocessRunner runs a task as ``sh -c '… python3 -m kfp.dsl.executor_main ARGS'``, with
``python3`` replaced by ``sys.executable``. :func:`debiaskd.runtime.warm.serving` (``launch_tasks=True``)
points that at a two-line shell script that runs this file as ``python -I -S warm_launcher.py``:
the standard library only, so it starts in a few tens of milliseconds instead of the half second a
task's own interpreter spends importing kfp and debiaskd. It hands the executor's arguments, the
task's working directory, environment, stdout and stderr to the warm server, which runs kfp's
executor in a child forked from a process that already imported kfp, debiaskd, torch and the rest,
and exits with that child's exit status. Any other command, or no server to reach, runs the real
interpreter with the same arguments, as if this file were not there.

It also holds the socket framing both sides use (:mod:`debiaskd.runtime.warm` imports it from here), since
this file cannot import the package.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys

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
    """Send a request (JSON bytes) with the caller's stdout and stderr attached (SCM_RIGHTS)."""
    socket.send_fds(conn, [HEADER.pack(len(payload))], list(fds))
    conn.sendall(payload)


def connect(path: str, instead: str) -> socket.socket | None:
    """A connection to the server at ``path``, or None (saying on stderr that it will do ``instead``)."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
    except OSError as exc:
        conn.close()
        print(f"debiaskd: warm worker unavailable ({exc}); {instead}", file=sys.stderr)
        return None
    return conn


def forward(path: str, module: str, argv: list[str]) -> int | None:
    """Run ``python -m module argv`` in a warm worker; its exit status, or None where the server
    cannot be reached or does not run ``module`` (the caller then starts the real interpreter)."""
    conn = connect(path, "starting a fresh Python for this task")
    if conn is None:
        return None
    env = {k: v for k, v in os.environ.items() if k != SOCKET_ENV}
    request = {"module": module, "argv": argv, "cwd": os.getcwd(), "env": env}
    with conn:
        try:
            send_request(conn, json.dumps(request).encode("utf-8"))
            reply = json.loads(recv_message(conn))
        except (EOFError, ConnectionError):
            print(f"debiaskd: the warm worker running {module} ended without a result (killed, or out of "
                  "memory?)", file=sys.stderr)
            return 1
    return None if "refused" in reply else int(reply["exit"])


def main(argv: list[str]) -> int:
    """``python ARGV``: through the warm server for ``-m MODULE ...`` where one serves, else the real one."""
    path = os.environ.get(SOCKET_ENV)
    if path and len(argv) >= 2 and argv[0] == "-m":
        code = forward(path, argv[1], argv[2:])
        if code is not None:
            return code
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *argv])  # never returns


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
