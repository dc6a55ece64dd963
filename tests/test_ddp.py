"""Data-parallel training under torchrun (CPU, gloo): the same weights as one process, kill and resume,
cached teacher logits on every rank, and ``debiaskd run --processes``.

Every distributed run goes through the launcher the training job uses
(:func:`debiaskd.training.launch.train_in_processes`: ``python -m torch.distributed.run`` on
``debiaskd.training.launch``), on the smoke preset's tiny models and a small generated data set.

Tolerance of "the same weights": 1e-4 absolute on every tensor. One process sums a step's micro-batch
gradients each scaled by 1 / n_micro; N processes all-reduce their ranks' sums (scaled by N / n_micro)
and divide by N. With 2 processes and grad_accum 2 both round identically (scaling by a power of two is
exact, the two-term sum is the same) and the weights agree bit for bit; with other counts the float32
sums round differently (~1e-7 relative per step), and AdamW's division by the root of the second moment
can magnify that for small gradient entries over a run's steps. 1e-4 allows for it and is still far
below a real difference: the same training with other dropout masks (the plain loop's one RNG stream)
ends 0.03 away (asserted: more than 10 × the tolerance).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from debiaskd.core.config import load_config
from debiaskd.core.errors import DebiaskdError
from debiaskd.core.study import variant_specs
from debiaskd.data.build import build_dataset
from debiaskd.data.store import read_dataset, write_dataset
from debiaskd.tasks import get_task
from debiaskd.training.distributed import CRASH_ENV, World, batch_seed, my_batches
from debiaskd.training.launch import DistributedTrainingFailed, train_in_processes
from debiaskd.training.loop import CHECKPOINT_DIR, CHECKPOINT_FILE, load_checkpoint
from debiaskd.training.models import META_FILE
from debiaskd.training.variant import share_logits, train_variant_model

pytestmark = pytest.mark.slow
TOLERANCE = 1e-4
OVERRIDES = [
    "nli_data.n_train=96", "nli_data.n_validation=30",
    # 96 rows / 8 = 12 batches, grad_accum 2: 6 optimizer steps an epoch, a checkpoint every 2
    *(f"{role}_train.{key}" for role in ("teacher", "student")
      for key in ("epochs=2", "batch_size=8", "grad_accum=2", "checkpoint_every=2", "num_threads=1", "device=cpu")),
]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The config and a data set folder with bias-model probabilities (as the augment step leaves it)."""
    root = tmp_path_factory.mktemp("ddp")
    cfg = load_config("smoke", overrides=OVERRIDES)
    raw = build_dataset(cfg, root / "raw", "nli")
    splits, _ = get_task("nli").augment(cfg, dict(read_dataset(raw).splits))
    write_dataset(root / "data", "nli", splits)
    return cfg, root / "data", root


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "model" / "model.safetensors"))


def _meta(out: Path) -> dict:
    return json.loads((out / "model" / META_FILE).read_text(encoding="utf-8"))


def _max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


@pytest.fixture(scope="module")
def erm_runs(study):
    """teacher_erm trained uninterrupted by one and by two processes (both under torchrun)."""
    cfg, data, root = study
    outs = {}
    for n in (1, 2):
        outs[n] = root / f"erm-{n}"
        train_in_processes(n, "teacher_erm", cfg, 0, data, outs[n], progress=False)
    return outs


def test_each_step_group_is_dealt_whole_to_the_ranks_once() -> None:
    for size in (1, 2, 3):
        for pos, end in [(0, 4), (4, 8), (8, 9), (10, 13)]:
            dealt = [my_batches(pos, end, World(rank, size, rank, True)) for rank in range(size)]
            assert sorted(i for share in dealt for i in share) == list(range(pos, end))
    assert my_batches(8, 9, World(1, 2, 1, True)) == []  # joins the all-reduce with a zero-weighted pass
    assert batch_seed(0, 1, 5) == batch_seed(0, 1, 5) != batch_seed(0, 1, 6)


def test_two_processes_train_the_weights_of_one_on_the_same_global_batch(study, erm_runs) -> None:
    one, two = _weights(erm_runs[1]), _weights(erm_runs[2])
    assert _max_difference(one, two) < TOLERANCE
    m1, m2 = _meta(erm_runs[1])["train"], _meta(erm_runs[2])["train"]
    assert (m1["processes"], m2["processes"]) == (1, 2)
    assert m1["steps"] == m2["steps"] == 12  # the same global batch: as many optimizer steps
    for h1, h2 in zip(m1["history"], m2["history"], strict=True):
        assert h1["loss"] == pytest.approx(h2["loss"], abs=1e-4)  # summed over the ranks' examples
        assert h1["validation_accuracy"] == h2["validation_accuracy"]
    assert not (erm_runs[2] / "model" / CHECKPOINT_DIR).exists()
    # the tolerance means something: the plain single-process loop (one RNG stream, so other dropout masks
    # on the same batches) ends farther away than that
    cfg, data, root = study
    plain = train_variant_model(variant_specs(cfg)["teacher_erm"], cfg, read_dataset(data).splits, 0, root / "plain",
                                progress=False)
    assert _max_difference(load_file(str(plain.model_dir / "model.safetensors")), two) > 10 * TOLERANCE


def test_a_rank_killed_mid_epoch_resumes_to_the_weights_of_the_uninterrupted_run(study, erm_runs, monkeypatch) -> None:
    cfg, data, root = study
    killed = root / "killed"
    monkeypatch.setenv(CRASH_ENV, "1:3")  # rank 1 exits abruptly after step 3 (epoch 1 of 6 steps)
    with pytest.raises(DistributedTrainingFailed, match="resumes from the last checkpoint"):
        train_in_processes(2, "teacher_erm", cfg, 0, data, killed, progress=False)
    monkeypatch.delenv(CRASH_ENV)
    checkpoint = killed / "model" / CHECKPOINT_DIR / CHECKPOINT_FILE
    assert int(load_checkpoint(checkpoint)["step"]) == 2
    assert not (killed / "model" / "model.safetensors").exists()
    other_count = root / "killed-then-one"
    shutil.copytree(killed, other_count)
    train_in_processes(2, "teacher_erm", cfg, 0, data, killed, progress=False)
    assert _max_difference(_weights(killed), _weights(erm_runs[2])) == 0.0  # same processes: bit for bit
    train_in_processes(1, "teacher_erm", cfg, 0, data, other_count, progress=False)  # resumed by one process
    assert _max_difference(_weights(other_count), _weights(erm_runs[2])) < TOLERANCE
    assert _meta(other_count)["train"]["steps"] == 12


def test_a_kd_student_reads_the_teachers_cached_logits_on_every_rank(study, capfd) -> None:
    cfg, data, root = study
    specs = variant_specs(cfg)
    splits = read_dataset(data).splits
    teacher = train_variant_model(specs["teacher_debiased"], cfg, splits, 0, root / "teacher", progress=False)
    share_logits(specs["teacher_debiased"], specs, cfg, splits, teacher.model_dir)
    capfd.readouterr()
    student = root / "student_kd"
    result = train_in_processes(2, "student_kd", cfg, 0, data, student, teacher_dir=teacher.model_dir,
                                progress=False)
    err = capfd.readouterr().err
    for rank in (0, 1):
        assert f"rank {rank}/2: student_kd reads cached teacher logits (96 rows)" in err
    assert not (student / "teacher_cache").exists()  # no rank computed them: all read the teacher's cache
    meta = _meta(student)
    assert meta["kd"]["cached"] is True and meta["train"]["processes"] == 2
    assert result.model_dir == student / "model" and result.history == meta["train"]["history"]


def test_bad_process_counts_and_user_errors_are_clear(study) -> None:
    cfg, data, root = study
    with pytest.raises(DebiaskdError, match="at least 1"):
        train_in_processes(0, "teacher_erm", cfg, 0, data, root / "zero")
    # a user error inside the ranks comes back as one, not as a crashed worker
    with pytest.raises(DebiaskdError, match="needs the model of 'teacher_debiased'"):
        train_in_processes(2, "student_kd", cfg, 0, data, root / "no-teacher", progress=False)


def test_debiaskd_run_refuses_zero_processes(capsys) -> None:
    from debiaskd.cli import main

    assert main(["run", "--preset", "smoke", "--processes", "0"]) == 2
    assert "--processes must be at least 1" in capsys.readouterr().err


def test_debiaskd_run_processes_sets_every_training_role(tmp_path, monkeypatch) -> None:
    from debiaskd.cli import main
    from debiaskd.pipeline import local_run

    seen = {}

    def run_local(cfg, out_dir, tracking_uri=None, **kwargs):
        seen["processes"] = {s: getattr(cfg, s).processes for s in
                             ("teacher_train", "student_train", "vision_teacher_train", "vision_student_train")}
        seen["hash"] = cfg.config_hash()
        return {"variants": {}, "promoted": None, "tracking_uri": f"sqlite:///{tmp_path}/mlflow.db"}

    monkeypatch.setattr(local_run, "run_local", run_local)
    assert main(["run", "--preset", "smoke", "--out", str(tmp_path / "run"), "--set", "teacher_train.processes=5",
                 "--processes", "2"]) == 0
    assert set(seen["processes"].values()) == {2}  # the option wins over --set, like --seed
    assert seen["hash"] == load_config("smoke").config_hash()  # how many processes train is not what is trained


def test_debiaskd_run_trains_a_teacher_with_two_processes_end_to_end(tmp_path) -> None:
    import subprocess
    import sys

    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "debiaskd", "run", "--preset", "smoke", "--out", str(out), "--processes", "2",
         "--set", "variants=[teacher_erm]", "--set", "analysis.enabled=false", "--set", "teacher_train.grad_accum=2"],
        capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert "teacher_erm" in summary["variants"]
    metas = [json.loads(p.read_text(encoding="utf-8")) for p in out.rglob(META_FILE)]
    trained = [m["train"]["processes"] for m in metas if m.get("variant") == "teacher_erm"]  # (+ MLflow's copy)
    assert trained and set(trained) == {2}
