"""Model FLOPs utilisation (MFU) of teacher training, through the library's own training loop.

MFU = the model FLOPs the training executes per second ÷ the peak matrix-multiply rate measured on the
same machine, in the same dtype and with the same threads, in the same run:

* **model FLOPs**: counted by PyTorch's ``torch.utils.flop_counter.FlopCounterMode`` over a whole training
  run of ``--steps`` optimizer steps (forward and backward of every batch, with its real padded length:
  matrix products, attention and the like; elementwise work and the optimizer are not counted, as is
  usual for MFU). The count is taken in a first run; a second, identical run (same seed, same batches,
  no counter) is timed: the loop's own training seconds, model loading and tokenising left out.
* **peak**: the best of several square ``torch.matmul`` products (2·n³ FLOPs each) after a warm-up:
  fp32 on the CPU; bf16 on a GPU when ``--bf16`` (the loop then trains under bf16 autocast).

Shapes:

* ``minilm``: the ``default`` preset's teacher (the packaged all-MiniLM-L6-v2: 6 layers, width 384);
* ``bert-base``: the ``paper`` preset's teacher shape (12 layers, width 768, 12 heads, feed-forward 3072,
  BERT's vocabulary) built at random (nothing is downloaded), ``max_length`` 128 like ``paper``.

Both train on the ``default`` preset's generated NLI training split (short sentences: batches are padded
to their longest pair, so sequences are far shorter than ``max_length``; see RESULTS.md).

    python benchmarks/bench_mfu.py [--shape minilm|bert-base] [--steps 20] [--batch-size 32]
                                   [--device cpu|cuda] [--bf16] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from debiaskd.core.config import load_config
from debiaskd.core.study import variant_specs
from debiaskd.data.build import build_dataset
from debiaskd.data.store import read_dataset
from debiaskd.training.loop import fit
from debiaskd.training.recipe import Recipe

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import machine  # the benchmarks' one description of the machine
from bench_ddp import cpus

SHAPES: dict[str, list[str]] = {
    "minilm": [],
    "bert-base": ["nli_model.teacher=tiny", "nli_model.tiny_layers=12", "nli_model.tiny_hidden=768",
                  "nli_model.tiny_heads=12", "nli_model.max_length=128"],
}



def matmul_peak(device: str, dtype: torch.dtype, n: int, reps: int = 8) -> float:
    """The best rate (FLOP/s) of ``reps`` n×n matrix products after two warm-ups."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for i in range(reps + 2):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        torch.matmul(a, b)
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def train_once(cfg: Any, train: Any, out: Path, count: bool) -> tuple[float, float, int]:
    """One training run: (model FLOPs counted or 0, the loop's training seconds, examples seen)."""
    recipe = Recipe.build(variant_specs(cfg)["teacher_erm"], cfg)
    if count:
        with FlopCounterMode(display=False) as counter:
            result = fit(recipe, train, None, 0, out, progress=False, resume=False)
        flops = float(counter.get_total_flops())
    else:
        result = fit(recipe, train, None, 0, out, progress=False, resume=False)
        flops = 0.0
    seconds = sum(h["train_seconds"] for h in result.history)
    examples = round(sum(h["train_seconds"] * h["examples_per_second"] for h in result.history))
    return flops, seconds, examples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="minilm", help="the teacher's shape")
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per run")
    parser.add_argument("--batch-size", type=int, default=32, help="examples per step (grad_accum 1)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast and a bf16 peak (CUDA only)")
    parser.add_argument("--matmul-n", type=int, default=None, help="peak product size (2048 CPU, 8192 GPU)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    if args.bf16 and args.device != "cuda":
        parser.error("--bf16 needs --device cuda (the loop autocasts to bf16 on CUDA only)")
    threads = cpus()
    torch.set_num_threads(threads)
    overrides = [*SHAPES[args.shape], f"teacher_train.max_steps={args.steps}",
                 f"teacher_train.batch_size={args.batch_size}", "teacher_train.grad_accum=1",
                 "teacher_train.epochs=1", f"teacher_train.device={args.device}",
                 f"teacher_train.num_threads={threads}", f"teacher_train.bf16={str(args.bf16).lower()}",
                 "teacher_train.checkpoint_every=null"]
    cfg = load_config("default", overrides=overrides)
    with tempfile.TemporaryDirectory(prefix="bench-mfu-") as tmp:
        build_dataset(cfg, Path(tmp) / "data", "nli")
        train = read_dataset(Path(tmp) / "data").splits["train"]
        flops, _, counted_examples = train_once(cfg, train, Path(tmp) / "counted", count=True)
        _, seconds, examples = train_once(cfg, train, Path(tmp) / "timed", count=False)
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    n = args.matmul_n or (8192 if args.device == "cuda" else 2048)
    peak = matmul_peak(args.device, dtype, n)
    achieved = flops / seconds
    figures = {
        "shape": args.shape, "device": args.device, "dtype": "bf16 autocast" if args.bf16 else "fp32",
        "steps": args.steps, "batch_size": args.batch_size, "examples": examples,
        "same_batches_counted_and_timed": counted_examples == examples,
        "model_gflop_per_example": flops / max(examples, 1) / 1e9,
        "train_seconds": seconds, "examples_per_second": examples / seconds,
        "achieved_gflops": achieved / 1e9, "matmul_peak_gflops": peak / 1e9, "matmul_n": n,
        "mfu": achieved / peak,
        "machine": {**machine(), "threads": threads, "load_average": os.getloadavg()},
    }
    text = json.dumps(figures, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
