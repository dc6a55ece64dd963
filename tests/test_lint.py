"""The code stays ruff-clean (the same check as `make lint`)."""

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_ruff_clean():
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (it comes with the dev extra)")
    proc = subprocess.run([ruff, "check", "."], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:]


def test_no_merge_conflict_markers_in_tracked_text_files():
    """A merge left `<<<<<<< HEAD` in the README once; ruff sees only Python, so check every text file."""
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    markers = ("<<<<<<< ", ">>>>>>> ")
    found = []
    for name in files:
        path = REPO / name
        if not path.is_file() or path.suffix in {".png", ".jpg", ".gz", ".npy", ".npz", ".safetensors", ".db"}:
            continue
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            continue
        found += [f"{name}:{i}" for i, line in enumerate(lines, 1) if line.startswith(markers)]
    assert not found, found
