"""Train one variant with N data-parallel processes: torchrun's entry point, and the launcher the job calls.

    python -m torch.distributed.run --standalone --nproc_per_node=N -m debiaskd.training.launch --spec FILE

``FILE`` (JSON, written by :func:`train_in_processes`) holds everything one training needs:
``variant``, ``config`` (the :class:`~debiaskd.core.config.StudyConfig` as a dict), ``seed``,
``dataset_dir``, ``out_dir``, ``teacher_dir``, ``reference_dir`` (training folders' models, or null),
``progress``, and where to answer: ``result`` (rank 0 writes the
:class:`~debiaskd.training.loop.TrainResult` there as JSON) and ``error`` (a user error, such as bad
training data, is written there so the launcher raises it again as a
:class:`~debiaskd.core.errors.DebiaskdError`). Every rank joins the process group
(:func:`debiaskd.training.distributed.init_from_env`), reads the data set and makes the very call the
single-process path makes, :func:`debiaskd.training.variant.train_variant_model`; the loop does the rest.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from debiaskd.core.config import StudyConfig
from debiaskd.core.errors import DebiaskdError
from debiaskd.core.study import variant_specs
from debiaskd.data.store import read_dataset
from debiaskd.training import distributed
from debiaskd.training.loop import TrainResult
from debiaskd.training.variant import train_variant_model

MODULE = "debiaskd.training.launch"
SPEC_FILE, RESULT_FILE, ERROR_FILE = "spec.json", "result.json", "error.json"
USER_ERROR_EXIT = 2


class DistributedTrainingFailed(RuntimeError):
    """A training process under torchrun failed (its own output, streamed above, says why)."""


def train_from_spec(spec: dict[str, Any]) -> TrainResult:
    """One rank's training: the data set read, then :func:`train_variant_model` as in one process."""
    cfg = StudyConfig.model_validate(spec["config"])
    specs = variant_specs(cfg)
    if spec["variant"] not in specs:
        raise DebiaskdError(f"unknown or unselected variant '{spec['variant']}'", file="variants", rule="study design")
    ds = read_dataset(spec["dataset_dir"])

    def folder(key: str) -> Path | None:
        return Path(spec[key]) if spec.get(key) else None

    return train_variant_model(specs[spec["variant"]], cfg, ds.splits, int(spec["seed"]), spec["out_dir"],
                               teacher_dir=folder("teacher_dir"), reference_dir=folder("reference_dir"),
                               progress=bool(spec.get("progress", True)))


def _write_json(path: str | Path, data: dict[str, Any]) -> None:
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    """torchrun's entry point (every rank runs it)."""
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--spec", type=Path, required=True, help="the JSON file describing the training")
    args = parser.parse_args(argv)
    spec = json.loads(args.spec.read_text(encoding="utf-8"))
    world = distributed.init_from_env()
    try:
        result = train_from_spec(spec)
    except DebiaskdError as exc:  # a user error: the launcher raises it again, with its exit code 2
        if world.main and spec.get("error"):
            _write_json(spec["error"], {"message": exc.message, "file": exc.file, "rule": exc.rule,
                                        "examples": [str(e) for e in exc.examples]})
        print(f"rank {world.rank}: {exc}", file=sys.stderr)
        return USER_ERROR_EXIT
    finally:
        distributed.shutdown()
    if world.main and spec.get("result"):
        _write_json(spec["result"], {"model_dir": str(result.model_dir), "history": result.history,
                                     "best_epoch": result.best_epoch, "seconds": result.seconds,
                                     "examples_per_second": result.examples_per_second})
    return 0


def torchrun_command(processes: int, spec_file: str | Path) -> list[str]:
    """The command that trains ``spec_file``'s variant with ``processes`` processes on this machine."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
            "-m", MODULE, "--spec", str(spec_file)]


def train_in_processes(processes: int, variant: str, cfg: StudyConfig, seed: int, dataset_dir: str | Path,
                       out_dir: str | Path, *, teacher_dir: str | Path | None = None,
                       reference_dir: str | Path | None = None, progress: bool = True,
                       env: dict[str, str] | None = None) -> TrainResult:
    """Train ``variant`` as :func:`train_variant_model` would, with ``processes`` data-parallel processes
    under torchrun (a subprocess whose output streams through); raises :class:`DistributedTrainingFailed`
    when a rank fails (rerunning resumes from the last checkpoint), or the ranks' user error."""
    if processes < 1:
        raise DebiaskdError(f"processes must be at least 1; got {processes}", rule="usage")
    work = Path(out_dir) / "launch"
    work.mkdir(parents=True, exist_ok=True)
    result_file, error_file, spec_file = work / RESULT_FILE, work / ERROR_FILE, work / SPEC_FILE
    for stale in (result_file, error_file):
        stale.unlink(missing_ok=True)
    _write_json(spec_file, {
        "variant": variant, "config": cfg.to_dict(), "seed": seed, "dataset_dir": str(dataset_dir),
        "out_dir": str(out_dir), "teacher_dir": str(teacher_dir) if teacher_dir else None,
        "reference_dir": str(reference_dir) if reference_dir else None, "progress": progress,
        "result": str(result_file), "error": str(error_file),
    })
    env = dict(os.environ if env is None else env)
    if "OMP_NUM_THREADS" not in env:  # each rank its share of this process's threads (torchrun would say 1)
        env["OMP_NUM_THREADS"] = str(max(1, torch.get_num_threads() // processes))
    sys.stdout.flush()
    sys.stderr.flush()
    code = subprocess.run(torchrun_command(processes, spec_file), env=env, check=False).returncode
    if error_file.is_file():
        err = json.loads(error_file.read_text(encoding="utf-8"))
        raise DebiaskdError(err["message"], file=err.get("file"), rule=err.get("rule"), examples=err.get("examples"))
    if code != 0 or not result_file.is_file():
        raise DistributedTrainingFailed(
            f"training '{variant}' (seed {seed}) with {processes} processes under torchrun failed (exit code "
            f"{code}); the failing rank's output is above. Running it again resumes from the last checkpoint "
            f"(*_train.checkpoint_every) in {Path(out_dir) / 'model'}")
    res = json.loads(result_file.read_text(encoding="utf-8"))
    return TrainResult(Path(res["model_dir"]), res["history"], int(res["best_epoch"]), float(res["seconds"]),
                       float(res["examples_per_second"]))


if __name__ == "__main__":
    sys.exit(main())
