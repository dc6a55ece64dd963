"""A training subprocess killed with SIGKILL and restarted ends with the weights of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from debiaskd.training.loop import CHECKPOINT_DIR, CHECKPOINT_FILE, load_checkpoint

SCRIPT = textwrap.dedent('''
    import os, sys, time
    import numpy as np, pandas as pd, torch
    from debiaskd.core.config import load_config
    from debiaskd.data.schema import NLI_COLUMNS, NLI_LABELS, ImageSplit
    from debiaskd.core.study import variant_specs
    from debiaskd.training.loop import fit
    from debiaskd.training.recipe import Recipe
    from debiaskd.training.rows import Sources


    def park_at(kill_at, marker):
        """Stop the process before its ``kill_at``-th optimizer step, so the test can SIGKILL it there."""
        calls = {"n": 0}
        original_step = torch.optim.AdamW.step

        def step(self, *args, **kwargs):
            calls["n"] += 1
            if calls["n"] == kill_at:
                open(marker, "w").close()
                time.sleep(120)
            return original_step(self, *args, **kwargs)

        torch.optim.AdamW.step = step


    def main(task, out):
        rng = np.random.default_rng(0)
        if task == "nli":
            nouns = ["doctor", "lawyer", "artist", "student", "banker", "actor"]
            rows = []
            for i in range(96):
                a, b = rng.choice(nouns, 2, replace=False)
                label = NLI_LABELS[i % 3]
                hyp = {"entailment": f"The {a} saw the {b}.", "neutral": f"The {a} saw the {b} and a cat.",
                       "contradiction": f"The {a} did not see the {b}."}[label]
                prem = f"The {a} saw the {b} near the lake" + " today" * int(rng.integers(0, 4)) + "."
                rows.append([f"p{i}", prem, hyp, label, "none", "", "", True, "none/" + label])
            train = pd.DataFrame(rows, columns=list(NLI_COLUMNS))
            val = train.iloc[:30].reset_index(drop=True)
            bias = np.tile([0.5, 0.3, 0.2], (len(train), 1))
            cfg = load_config("smoke", overrides=["teacher_train.checkpoint_every=2", "teacher_train.epochs=2",
                                                  "teacher_train.num_threads=1", "teacher_train.grad_accum=1"])
        else:
            labels = rng.integers(0, 4, 64)
            images = rng.integers(0, 255, (64, 3, 8, 8), dtype=np.uint8)
            frame = pd.DataFrame({"image_id": [f"i{i}" for i in range(64)], "label": labels, "color": "red",
                                  "bias_aligned": True, "group": [f"{y}/{'red' if y % 2 else 'blue'}" for y in labels]})
            train = ImageSplit(images, frame, ("0", "1", "2", "3"))
            val, bias = train, None
            cfg = load_config("smoke", task="vision", overrides=[
                "vision_teacher_train.checkpoint_every=3", "vision_teacher_train.epochs=2",
                "vision_teacher_train.batch_size=8", "vision_teacher_train.num_threads=1"])
        spec = variant_specs(cfg)["teacher_debiased"]  # PoE for NLI, GroupDRO for vision: state beyond the weights
        fit(Recipe.build(spec, cfg), train, val, 0, out, sources=Sources(bias_probs=bias), progress=False)


    if __name__ == "__main__":
        if int(os.environ.get("KILL_AT", "0")):
            park_at(int(os.environ["KILL_AT"]), os.environ["MARKER"])
        main(sys.argv[1], sys.argv[2])
''')


def _run(script: Path, task: str, out: Path, tmp: Path, kill_at: int = 0) -> int:
    marker = tmp / f"marker-{kill_at}-{time.monotonic_ns()}"
    env = {**os.environ, "KILL_AT": str(kill_at), "MARKER": str(marker), "PYTHONHASHSEED": "0"}
    proc = subprocess.Popen([sys.executable, str(script), task, str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if kill_at:
        deadline = time.monotonic() + 120
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), proc.stderr.read().decode() if proc.poll() is not None else "no marker"
        os.kill(proc.pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    if not kill_at:
        assert proc.returncode == 0, err.decode()[-3000:]
    return proc.returncode


def _reference_in_process(task: str, out: Path) -> None:
    """The uninterrupted run, in this process (same code, same single thread as the subprocesses)."""
    threads = torch.get_num_threads()
    namespace: dict = {"__name__": "reference"}
    try:
        exec(compile(SCRIPT, "train_script.py", "exec"), namespace)
        namespace["main"](task, str(out))
    finally:
        torch.set_num_threads(threads)


def _checkpoint_step(out: Path) -> int:
    return int(load_checkpoint(out / CHECKPOINT_DIR / CHECKPOINT_FILE)["step"])


@pytest.mark.slow
@pytest.mark.parametrize(("task", "kills", "expected_steps"), [
    ("nli", [3, 5], [2, 6]),  # mid-epoch; then (process-local 5th step = global 7) just after epoch 1's end
    ("vision", [6], [3]),
])
def test_resume_after_sigkill_reproduces_the_uninterrupted_run(tmp_path, task, kills, expected_steps) -> None:
    script = tmp_path / "train_script.py"
    script.write_text(SCRIPT)
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    _reference_in_process(task, reference)
    for kill_at, step in zip(kills, expected_steps, strict=True):
        assert _run(script, task, resumed, tmp_path, kill_at=kill_at) == -signal.SIGKILL
        assert _checkpoint_step(resumed) == step
        assert not (resumed / "model.safetensors").exists()
    _run(script, task, resumed, tmp_path)
    assert not (resumed / CHECKPOINT_DIR).exists()
    ref_bytes = (reference / "model.safetensors").read_bytes()
    assert (resumed / "model.safetensors").read_bytes() == ref_bytes
