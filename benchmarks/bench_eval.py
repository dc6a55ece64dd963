"""Evaluation throughput: dynamic padding + length-sorted batches vs fixed padding to ``max_length``.

Both run side by side in one process on the same model (the packaged MiniLM teacher), the
same pairs (the embedded benchmark's test and challenge splits), batch size, thread count
and ``torch.inference_mode``; the only difference is the batching. Each is warmed up once,
then timed ``repeats`` times interleaved; the best time counts. ``quick``: 128 pairs, one repeat.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch

from debiaskd.core.config import load_config
from debiaskd.data.schema import NLI_LABELS
from debiaskd.evaluation.inference import predict_proba
from debiaskd.training.models import LoadedModel, build_nli_teacher


def _pairs(n: int, seed: int = 0) -> tuple[pd.DataFrame, str]:
    """Evaluation pairs as the study sees them: the embedded test + challenge splits."""
    from debiaskd.data.generate_nli import generate_nli

    per_subcase = max(2, n // 60)
    cfg = load_config("default").nli_data.model_copy(
        update={"n_test": max(10, n // 2), "n_challenge_per_subcase": per_subcase, "seed": seed})
    data = generate_nli(cfg)
    frame = pd.concat([data["test"], data["challenge"]], ignore_index=True)
    frame = frame.sample(n=min(n, len(frame)), random_state=seed).reset_index(drop=True)
    return frame, "embedded benchmark test + challenge"


def bench_eval_vs_fixed_padding(quick: bool) -> dict:
    """Examples/s of :func:`predict_proba` with and without dynamic padding; ``ratio`` = dynamic / fixed."""
    cfg = load_config("default")
    n, repeats, batch_size = (128, 1, 64) if quick else (1536, 3, cfg.eval.batch_size)
    max_length = cfg.nli_model.max_length
    model, tokenizer = build_nli_teacher(cfg.nli_model, 0)
    loaded = LoadedModel(model.eval(), {"task": "nli", "label_names": list(NLI_LABELS)}, tokenizer)
    frame, source = _pairs(n)
    lengths = np.array([len(ids) for ids in tokenizer(frame["premise"].tolist(), frame["hypothesis"].tolist(),
                                                        truncation=True, max_length=max_length)["input_ids"]])

    def run(fixed: bool, rows: pd.DataFrame = frame) -> tuple[float, np.ndarray]:
        t0 = time.perf_counter()
        probs = predict_proba(loaded, rows, batch_size=batch_size, max_length=max_length, device="cpu",
                              fixed_padding=fixed)
        return time.perf_counter() - t0, probs

    run(False, frame.head(16))
    run(True, frame.head(16))  # warm-up
    dyn_times, fixed_times = [], []
    for _ in range(repeats):
        t, p_dyn = run(False)
        dyn_times.append(t)
        t, p_fixed = run(True)
        fixed_times.append(t)
    dyn, fixed = min(dyn_times), min(fixed_times)
    return {
        "model": "packaged MiniLM (6 layers, 384 wide)",
        "data": source,
        "n": len(frame),
        "batch_size": batch_size,
        "max_length": max_length,
        "mean_tokens": round(float(lengths.mean()), 1),
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "dynamic_seconds": round(dyn, 3),
        "fixed_seconds": round(fixed, 3),
        "dynamic_examples_per_second": round(len(frame) / dyn, 1),
        "fixed_examples_per_second": round(len(frame) / fixed, 1),
        "max_abs_prob_difference": float(np.abs(p_dyn - p_fixed).max()),
        "ratio": round(fixed / dyn, 3),
    }


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(bench_eval_vs_fixed_padding("--quick" in sys.argv), indent=2))
