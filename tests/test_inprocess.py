"""The in-process study (the benchmark's baseline): the pipeline's jobs, called directly, in order."""

from __future__ import annotations

from debiaskd.core.config import VARIANTS, load_config
from debiaskd.jobs.base import read_result
from debiaskd.jobs.inprocess import run_inprocess


def test_inprocess_study_trains_evaluates_and_shares_teacher_logits(tmp_path) -> None:
    cfg = load_config("smoke", overrides=["analysis.enabled=false"])
    summary = run_inprocess(cfg, tmp_path / "run", None)
    assert set(summary["variants"]) == set(VARIANTS)
    for name in VARIANTS:
        evaluation = read_result(tmp_path / "run" / "eval" / f"{name}-s0")
        assert evaluation["variant"] == name and 0.0 <= evaluation["challenge_accuracy"] <= 1.0
    # the debiased teacher computed its students' logits once (train and augmented train)
    shared = tmp_path / "run" / "train" / "teacher_debiased-s0" / "teacher_cache"
    assert len(list(shared.glob("logits-*.npy"))) == 2
    # a one-round student read them and wrote no cache of its own
    assert not (tmp_path / "run" / "train" / "student_kd-s0" / "teacher_cache").exists()
    assert (tmp_path / "run" / "report" / "report.md").is_file()


def test_share_cpus_gives_each_concurrent_task_its_share_of_the_cores() -> None:
    import os
    import subprocess
    import sys

    code = ("import os, torch; from debiaskd.jobs.base import share_cpus; before = torch.get_num_threads(); "
            "print(before, share_cpus(1), share_cpus(2), len(os.sched_getaffinity(0)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "2"}).stdout.split()
    before, alone, shared, cpus = map(int, out)
    assert alone == before  # one task alone keeps torch's default
    assert shared == max(1, cpus // 2)


def test_each_seed_trains_and_is_evaluated_on_data_of_its_own(tmp_path) -> None:
    """The seed is the unit of replication: seed 1 draws other training, validation and challenge
    examples than seed 0 (data and augmentation seeds move with it), and the summary says which
    dataset each seed used. Seed 0's data are those of ``data generate``."""
    from debiaskd.data.build import generate_dataset
    from debiaskd.data.store import read_dataset

    cfg = load_config("smoke", overrides=["analysis.enabled=false", "seeds=[0,1]", "variants=[teacher_erm]"])
    summary = run_inprocess(cfg, tmp_path / "run", None)
    data = {seed: read_dataset(tmp_path / "run" / "data" / f"seed-{seed}") for seed in (0, 1)}
    assert data[0].content_hash != data[1].content_hash
    for split in ("train", "validation", "challenge"):
        assert set(data[0].splits[split]["premise"]) != set(data[1].splits[split]["premise"]), split
    for seed in (0, 1):
        assert read_result(tmp_path / "run" / "eval" / f"teacher_erm-s{seed}")["data_hash"] == \
            read_dataset(tmp_path / "run" / "augmented" / f"seed-{seed}").content_hash
    assert set(summary["data_hashes"]) == {"0", "1"} and summary["data_hash"] == ""
    assert len(set(summary["data_hashes"].values())) == 2
    generated = generate_dataset("nli", "smoke", tmp_path / "generated")
    assert read_dataset(generated).content_hash == data[0].content_hash
