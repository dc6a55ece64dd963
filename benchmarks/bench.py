"""debiaskd benchmarks: every figure measured side by side in one process run.

    python benchmarks/bench.py [--quick] [--default-run] --json FILE

Writes (INTERFACE.md) ``kd_cached_vs_online_epoch_ratio``, ``train_vs_hf_trainer_throughput_ratio``,
``eval_vs_fixed_padding_throughput_ratio``, ``pipeline_overhead_ratio``, ``peak_rss_mb``, the raw
figures behind each ratio and the machine they ran on. ``--default-run`` also times the whole
``default`` study (about 10 minutes on 2 cores) and takes ``peak_rss_mb`` from it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def machine() -> dict:
    import torch

    info = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    try:
        with open("/proc/meminfo") as fh:
            info["memory_gb"] = round(int(fh.readline().split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return info


DIRECT = """
import sys
from debiaskd.core.config import load_config
from debiaskd.jobs.inprocess import run_inprocess
cfg = load_config("smoke", overrides=sys.argv[3:])
run_inprocess(cfg, sys.argv[1], sys.argv[2])
"""


def bench_pipeline_overhead(quick: bool) -> dict:
    """`debiaskd run` on smoke (kfp.local, a task per step) vs the same steps called directly.

    Both sides are timed as a fresh process from the command line (``direct_seconds``: a Python
    script calling :func:`debiaskd.jobs.inprocess.run_inprocess`), so each pays for its own imports and exit.
    ``direct_inprocess_seconds`` repeats the direct call inside this process, which earlier
    benchmarks have already given torch, transformers and MLflow: what the steps cost with no
    imports at all (the ratio's definition before 2026-11-28).
    """
    from debiaskd.core.config import load_config
    from debiaskd.jobs.inprocess import run_inprocess

    overrides = ["analysis.enabled=false"] if quick else []
    cfg = load_config("smoke", overrides=overrides)
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", DIRECT, str(tmp / "direct"), f"sqlite:///{tmp / 'direct.db'}",
                        *overrides], check=True, capture_output=True)
        direct = time.perf_counter() - t0
        cmd = [sys.executable, "-m", "debiaskd", "run", "--preset", "smoke", "--out", str(tmp / "kfp"),
               "--tracking-uri", f"sqlite:///{tmp / 'kfp.db'}"]
        for o in overrides:
            cmd += ["--set", o]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        pipeline = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-2000:])
        t0 = time.perf_counter()
        run_inprocess(cfg, tmp / "inprocess", f"sqlite:///{tmp / 'inprocess.db'}")
        inprocess = time.perf_counter() - t0
    return {"direct_seconds": round(direct, 2), "pipeline_seconds": round(pipeline, 2),
            "ratio": round(pipeline / direct, 3), "direct_inprocess_seconds": round(inprocess, 2),
            "ratio_vs_inprocess": round(pipeline / inprocess, 3)}


def bench_default_run() -> dict:
    """The whole default study through `debiaskd run`: wall time and peak resident memory."""
    out = Path(tempfile.mkdtemp(prefix="bench-default-"))
    try:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "debiaskd", "run", "--out", str(out / "run")],
                              capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-2000:])
        summary = json.loads((out / "run" / "summary.json").read_text())
        return {"default_run_seconds": round(seconds, 1), "peak_rss_mb": summary.get("peak_rss_mb")}
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny models and data (about a minute each)")
    parser.add_argument("--default-run", action="store_true", help="also time the whole default study")
    parser.add_argument("--json", type=Path, required=True, help="write the results here")
    args = parser.parse_args()

    from bench_eval import bench_eval_vs_fixed_padding
    from bench_train import bench_kd_cached_vs_online, bench_train_vs_hf_trainer

    results: dict = {"machine": machine(), "quick": args.quick, "date": time.strftime("%Y-%m-%d %H:%M")}
    steps = [
        ("kd_cached_vs_online", lambda: bench_kd_cached_vs_online(args.quick)),
        ("train_vs_hf_trainer", lambda: bench_train_vs_hf_trainer(args.quick)),
        ("eval_vs_fixed_padding", lambda: bench_eval_vs_fixed_padding(args.quick)),
        ("pipeline_overhead", lambda: bench_pipeline_overhead(args.quick)),
    ]
    if args.default_run:
        steps.append(("default_run", bench_default_run))
    for name, fn in steps:
        print(f"[bench] {name} …", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        results[name] = fn()
        print(f"[bench] {name}: {results[name]} ({time.perf_counter() - t0:.0f}s)", file=sys.stderr, flush=True)
    results["kd_cached_vs_online_epoch_ratio"] = results["kd_cached_vs_online"]["ratio"]
    results["train_vs_hf_trainer_throughput_ratio"] = results["train_vs_hf_trainer"]["ratio"]
    results["eval_vs_fixed_padding_throughput_ratio"] = results["eval_vs_fixed_padding"]["ratio"]
    results["pipeline_overhead_ratio"] = results["pipeline_overhead"]["ratio"]
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    results["peak_rss_mb"] = (results.get("default_run", {}).get("peak_rss_mb")
                              or round(max(own, children), 1))
    results["peak_rss_source"] = "default run" if args.default_run else "this benchmark process and its children"
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(json.dumps({k: v for k, v in results.items() if not isinstance(v, dict)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
