"""Data-parallel training: 2 processes vs 1 on the same global batch, and the time spent in all-reduce.

Trains the default preset's teacher (the packaged MiniLM, ERM) for a fixed number of optimizer steps
on the default preset's generated NLI training split, with ``batch_size`` × ``grad_accum`` = the
global batch (``grad_accum`` 2, so each of 2 processes runs one whole batch a step), on the CPU, the
machine's cores shared equally (1 process: all the threads; 2 processes: half each):

* ``one``: one process, the ordinary loop (no torchrun);
* ``ddp``: 2 processes under torchrun (gloo), DDP's own all-reduce (overlapped with the backward pass);
* ``ddp_timed``: the same with a DDP communication hook that runs each bucket's all-reduce synchronously
  and times it (``register_comm_hook``): the seconds in all-reduce, waiting for the slower rank
  included; the difference between ``ddp_timed`` and ``ddp`` is what giving up the overlap costs.

Examples/s are training examples over the loop's training time (model loading and tokenising left out).

    python benchmarks/bench_ddp.py [--steps 20] [--set KEY=VALUE ...] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))
from bench import machine  # noqa: E402 (the benchmarks' one description of the machine)


def cpus() -> int:
    """The cores this process may use (its affinity where the OS tells it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def worker(steps: int, batch_size: int, threads: int, timed: bool, out: Path, sets: list[str]) -> None:
    """One rank (or the lone process): train, then rank 0 writes what it measured."""
    # torch and the library: only the workers train (the parent only launches them)
    import torch
    import torch.distributed as dist

    from debiaskd.core.config import load_config
    from debiaskd.core.study import variant_specs
    from debiaskd.data.build import build_dataset
    from debiaskd.data.store import read_dataset
    from debiaskd.training import distributed, loop
    from debiaskd.training.loop import fit
    from debiaskd.training.recipe import Recipe

    world = distributed.init_from_env()
    comm = {"seconds": 0.0, "calls": 0, "bytes": 0}

    # no annotations: DDP's register_comm_hook compares them with dist.GradBucket and torch.futures.Future,
    # and this module's postponed annotations would be strings
    def timed_allreduce(state, bucket):
        tensor = bucket.buffer()
        t0 = time.perf_counter()
        dist.all_reduce(tensor)
        tensor.div_(dist.get_world_size())
        state["seconds"] += time.perf_counter() - t0
        state["calls"] += 1
        state["bytes"] += tensor.numel() * tensor.element_size()
        fut: torch.futures.Future = torch.futures.Future()
        fut.set_result(tensor)
        return fut

    class TimedDDP(torch.nn.parallel.DistributedDataParallel):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.register_comm_hook(comm, timed_allreduce)

    if timed:
        loop.DistributedDataParallel = TimedDDP  # the benchmark's instrument, not the library's behaviour
    cfg = load_config("default", overrides=[
        f"teacher_train.max_steps={steps}", f"teacher_train.batch_size={batch_size}", "teacher_train.grad_accum=2",
        "teacher_train.epochs=1", "teacher_train.device=cpu", f"teacher_train.num_threads={threads}",
        "teacher_train.checkpoint_every=null", *sets])
    data = out.parent / "data"
    with distributed.main_first(world):
        if world.main and not data.exists():
            build_dataset(cfg, data, "nli")
    train = read_dataset(data).splits["train"]
    spec = variant_specs(cfg)["teacher_erm"]
    result = fit(Recipe.build(spec, cfg), train, None, 0, out.parent / f"model-{world.size}-{timed}",
                 progress=False, resume=False)
    train_seconds = sum(h["train_seconds"] for h in result.history)
    record = {"rank": world.rank, "train_seconds": train_seconds, "comm": dict(comm),
              "examples_per_second": result.examples_per_second}
    records = [record]
    if world.distributed:
        records = [None] * world.size
        dist.all_gather_object(records, record)
    if world.main:
        out.write_text(json.dumps({"processes": world.size, "threads_per_process": threads, "ranks": records,
                                   "examples_per_second": result.examples_per_second,
                                   "train_seconds": train_seconds}, indent=1))
    distributed.shutdown()


def _launch(processes: int, steps: int, batch_size: int, timed: bool, tmp: Path, sets: list[str]) -> dict[str, Any]:
    threads = max(1, cpus() // processes)
    out = tmp / f"result-{processes}-{timed}.json"
    args = ["--worker", "--steps", str(steps), "--batch-size", str(batch_size), "--threads", str(threads),
            "--out", str(out)] + (["--timed"] if timed else []) + [f"--set={s}" for s in sets]
    if processes == 1:
        cmd = [sys.executable, str(HERE), *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               str(HERE), *args]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    subprocess.run(cmd, check=True, env=env)
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per run")
    parser.add_argument("--batch-size", type=int, default=32, help="per micro-batch (global: 2 ×)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for the teacher (repeatable), e.g. nli_model.teacher=tiny")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--timed", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.steps, args.batch_size, args.threads, args.timed, args.out, args.sets)
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-ddp-") as tmp:
        one = _launch(1, args.steps, args.batch_size, False, Path(tmp), args.sets)
        ddp = _launch(2, args.steps, args.batch_size, False, Path(tmp), args.sets)
        timed = _launch(2, args.steps, args.batch_size, True, Path(tmp), args.sets)
    comm = [r["comm"]["seconds"] for r in timed["ranks"]]
    figures = {
        "model": "minilm (default preset teacher)", "overrides": args.sets, "steps": args.steps,
        "global_batch": 2 * args.batch_size,
        "one_process_examples_per_second": one["examples_per_second"],
        "two_process_examples_per_second": ddp["examples_per_second"],
        "speedup": ddp["examples_per_second"] / one["examples_per_second"],
        "timed_two_process_examples_per_second": timed["examples_per_second"],
        "allreduce_seconds_per_rank": comm, "train_seconds_timed": timed["train_seconds"],
        "allreduce_share_of_training": max(comm) / timed["train_seconds"],
        "allreduce_calls_per_rank": timed["ranks"][0]["comm"]["calls"],
        "allreduce_mb_per_step": timed["ranks"][0]["comm"]["bytes"] / args.steps / 2**20,
        "machine": {**machine(), "cpus_usable": cpus(), "load_average": os.getloadavg()},
        "raw": {"one": one, "ddp": ddp, "ddp_timed": timed},
    }
    text = json.dumps(figures, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
