"""DVC: on a fresh copy `dvc repro` regenerates byte-identical data that matches data.dvc.

The copy is a temporary git repository holding the repository's DVC files and ``src/``; the
generator runs from that copy (``PYTHONPATH``). Needs the ``dvc`` and ``git`` executables.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from data_fixtures import tree_digest

REPO = Path(__file__).resolve().parents[1]
FILES = ("dvc.yaml", "params.yaml", "data.dvc", ".dvcignore", ".dvc/config", ".dvc/.gitignore", ".gitignore")

pytestmark = pytest.mark.skipif(not (shutil.which("dvc") and shutil.which("git")), reason="needs dvc and git")


def _run(cmd: list[str], cwd: Path, env: dict) -> str:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout + out.stderr


@pytest.fixture
def fresh_clone(tmp_path):
    work = tmp_path / "clone"
    for rel in FILES:
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, work / rel)
    shutil.copytree(REPO / "src", work / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    if (REPO / "dvc.lock").exists():
        shutil.copy2(REPO / "dvc.lock", work / "dvc.lock")
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(work / "src"),
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}
    _run(["git", "init", "-q"], work, env)
    _run(["git", "add", "-A"], work, env)
    _run(["git", "commit", "-qm", "fresh clone"], work, env)
    return work, env


def test_repro_is_byte_identical_up_to_date_and_pushable(fresh_clone, tmp_path):
    work, env = fresh_clone
    params = yaml.safe_load((work / "params.yaml").read_text())
    assert {"preset", "nli", "vision"} <= set(params["data"])
    _run(["dvc", "repro"], work, env)
    first = tree_digest(work / "data")
    assert {"nli/train.jsonl", "nli/challenge_hans.tsv", "vision/train_images.npy"} <= set(first)
    status = _run(["dvc", "status"], work, env)
    # bytes equal data.dvc's hash: nothing "modified", only the fresh cache is empty
    assert "modified" not in status and "deleted" not in status, (
        f"regenerated data differ from data.dvc — after changing the generator run "
        f"`dvc repro && dvc add data` and commit data.dvc + dvc.lock:\n{status}")
    _run(["dvc", "commit", "-f"], work, env)
    assert "up to date" in _run(["dvc", "status"], work, env)
    assert _run(["git", "status", "--porcelain", "data.dvc"], work, env).strip() == ""

    shutil.rmtree(work / "data")
    _run(["dvc", "repro", "-f"], work, env)  # a second regeneration: the same bytes
    assert tree_digest(work / "data") == first
    assert "up to date" in _run(["dvc", "status"], work, env)

    remote = tmp_path / "remote"
    _run(["dvc", "remote", "modify", "--local", "localremote", "url", str(remote)], work, env)
    _run(["dvc", "push"], work, env)
    assert any(remote.rglob("*"))
    shutil.rmtree(work / "data")
    shutil.rmtree(work / ".dvc" / "cache")
    _run(["dvc", "pull"], work, env)
    assert tree_digest(work / "data") == first
