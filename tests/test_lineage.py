"""The data version: git revision of the checkout, DVC hash of data/, content hash; read where they exist."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from debiaskd.tracking import lineage

REPO = Path(__file__).resolve().parents[1]
REV = "19e2f70" + "0" * 33
DVC = "ec2025b76ff1239dff83f362e69c943d.dir"
CONTENT = "3efdb2e9a760114267e92de4987a2b3ec94b72e5604f8c73bdbaefc453a65101"
needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def _project(root: Path) -> Path:
    """A folder laid out like a checkout of this project, with a data.dvc."""
    (root / "src" / "debiaskd").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'debiaskd'\n")
    (root / "data.dvc").write_text(yaml.safe_dump({"outs": [{"md5": DVC, "size": 1, "nfiles": 1, "hash": "md5",
                                                             "path": "data"}]}))
    return root


def test_the_version_names_all_three_parts_and_reads_back():
    version = lineage.data_version(CONTENT, REV, DVC)
    assert version == f"git={REV}/dvc={DVC}/data={CONTENT}"
    assert lineage.parse_data_version(version) == {"git": REV, "dvc": DVC, "data": CONTENT}
    # no "scheme:" in it, so MLflow takes it as a data set's source as it is
    assert ":" not in version


def test_a_part_not_known_reads_unknown_and_parses_to_none():
    version = lineage.data_version(CONTENT)
    assert version == f"git=unknown/dvc=unknown/data={CONTENT}"
    assert lineage.parse_data_version(version) == {"git": None, "dvc": None, "data": CONTENT}


@pytest.mark.parametrize("text", ["", CONTENT, f"dvc={DVC}/git={REV}/data={CONTENT}", f"git={REV}/dvc={DVC}",
                                  f"git={REV}/dvc/data={CONTENT}"])
def test_what_is_not_a_version_is_refused(text):
    with pytest.raises(ValueError):
        lineage.parse_data_version(text)


def test_a_part_that_would_break_the_string_is_refused():
    with pytest.raises(ValueError):
        lineage.data_version(CONTENT, "main/HEAD", DVC)  # a '/' would split the version


def test_the_dvc_hash_is_data_dvc_s_first_output(tmp_path):
    assert lineage.dvc_data_hash(_project(tmp_path)) == DVC
    (tmp_path / "data.dvc").write_text("outs: []\n")
    assert lineage.dvc_data_hash(tmp_path) is None
    (tmp_path / "data.dvc").write_text("{not yaml")
    assert lineage.dvc_data_hash(tmp_path) is None
    (tmp_path / "data.dvc").unlink()
    assert lineage.dvc_data_hash(tmp_path) is None
    assert lineage.dvc_data_hash(None) is None


@needs_git
def test_the_git_revision_is_head_of_the_checkout_and_none_elsewhere(tmp_path):
    root = _project(tmp_path / "checkout")
    _git(root, "init", "-q")
    assert lineage.git_revision(root) is None  # a repository without a commit
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "c")
    head = _git(root, "rev-parse", "HEAD")
    assert lineage.git_revision(root) == head
    assert lineage.current_data_version(CONTENT, root) == f"git={head}/dvc={DVC}/data={CONTENT}"
    # a project folder inside another repository is not that repository's revision
    inner = _project(root / "vendored")
    assert lineage.git_revision(inner) is None
    assert lineage.git_revision(_project(tmp_path / "plain")) is None  # no repository at all
    assert lineage.git_revision(None) is None


@needs_git
def test_this_checkout_gives_its_head_and_data_dvc():
    """Run from a checkout (as the tests are), the version names its HEAD and its data.dvc."""
    assert lineage.checkout_root() == REPO
    parts = lineage.parse_data_version(lineage.current_data_version(CONTENT))
    assert parts["git"] == _git(REPO, "rev-parse", "HEAD")
    assert parts["dvc"] == yaml.safe_load((REPO / "data.dvc").read_text())["outs"][0]["md5"]
    assert parts["data"] == CONTENT
