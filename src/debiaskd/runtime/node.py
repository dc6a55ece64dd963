"""What each node of a TrainJob runs: its training command, with the node's system metrics in MLflow.

    python -m debiaskd.runtime.node [--run-id RUN] -- python -m torch.distributed.run ...

With ``--run-id`` (the variant's MLflow run, which the launching task started) and MLflow reachable
(``MLFLOW_TRACKING_URI`` from the Secret the TrainJob passes), the node samples its own CPU, memory and,
in the CUDA image (``pynvml``), every GPU's utilisation and memory into that run as
``system/trainjob-node-<rank>/...`` while the command runs; the command's exit code is the node's. A
monitor that cannot start never fails training.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys

MODULE = "debiaskd.runtime.node"


def node_id() -> str:
    """This node's name in the metrics: its torchrun node rank (``PET_NODE_RANK``, set by the runtime)."""
    return f"trainjob-node-{os.environ.get('PET_NODE_RANK', '0')}"


def monitor(run_id: str | None):
    """The system-metrics monitor of this node (nothing without a run or a tracking server)."""
    if not run_id or not os.environ.get("MLFLOW_TRACKING_URI"):
        return contextlib.nullcontext()
    # MLflow: slow to import, and only a node that reports its metrics needs it
    from debiaskd.tracking import service

    return service.system_metrics(run_id, node_id=node_id())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--run-id", default=None, help="the MLflow run the node's system metrics go to")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the training command")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command to run (give it after --)")
    with monitor(args.run_id):
        return subprocess.run(command, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
