"""DVC: on a fresh copy `dvc repro` of the data stages regenerates byte-identical data that matches
data.dvc; the `study` stage runs `debiaskd run` after them, with the options params.yaml gives.

The copy is a temporary git repository holding the repository's DVC files, ``src/``, ``components/`` and
``pipeline/``; the generator runs from that copy (``PYTHONPATH``). The study stage is never run here (it
trains): its command is read from ``dvc repro --dry`` / ``dvc exp run --dry``. Needs the ``dvc`` and
``git`` executables.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import typer
import yaml

from data_fixtures import tree_digest
from debiaskd.cli import app
from debiaskd.core.config import load_config

REPO = Path(__file__).resolve().parents[1]
FILES = ("dvc.yaml", "params.yaml", "data.dvc", ".dvcignore", ".dvc/config", ".dvc/.gitignore", ".gitignore")
CODE = ("src", "components", "pipeline")  # the study stage's code dependencies
DATA_STAGES = ["generate_nli", "generate_vision"]

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
    for folder in CODE:
        shutil.copytree(REPO / folder, work / folder, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
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
    data = [*DATA_STAGES, "data.dvc"]  # not the study stage: it trains (its command is tested below)
    _run(["dvc", "repro", *DATA_STAGES], work, env)
    first = tree_digest(work / "data")
    assert {"nli/train.jsonl", "nli/challenge_hans.tsv", "vision/train_images.npy"} <= set(first)
    status = _run(["dvc", "status", *data], work, env)
    # bytes equal data.dvc's hash: nothing "modified", only the fresh cache is empty
    assert "modified" not in status and "deleted" not in status, (
        f"regenerated data differ from data.dvc — after changing the generator run "
        f"`dvc repro generate_nli generate_vision && dvc add data` and commit data.dvc + dvc.lock:\n{status}")
    _run(["dvc", "commit", "-f", *data], work, env)
    assert "up to date" in _run(["dvc", "status", *data], work, env)
    assert _run(["git", "status", "--porcelain", "data.dvc"], work, env).strip() == ""

    shutil.rmtree(work / "data")
    _run(["dvc", "repro", "-f", *DATA_STAGES], work, env)  # a second regeneration: the same bytes
    assert tree_digest(work / "data") == first
    assert "up to date" in _run(["dvc", "status", *data], work, env)

    remote = tmp_path / "remote"
    _run(["dvc", "remote", "modify", "--local", "localremote", "url", str(remote)], work, env)
    _run(["dvc", "push"], work, env)
    assert any(remote.rglob("*"))
    shutil.rmtree(work / "data")
    shutil.rmtree(work / ".dvc" / "cache")
    _run(["dvc", "pull"], work, env)
    assert tree_digest(work / "data") == first


def _study_command(output: str) -> list[str]:
    """The command DVC prints for the study stage (``Running stage 'study':`` then ``> CMD``)."""
    lines = output.splitlines()
    start = lines.index("Running stage 'study':")
    return shlex.split(lines[start + 1].removeprefix("> "))


def _run_options(command: list[str]) -> dict:
    """The options ``debiaskd run`` parses from ``command`` (its own parser: an option it lacks fails)."""
    assert command[:4] == ["python", "-m", "debiaskd", "run"], command
    ctx = typer.main.get_command(app).commands["run"].make_context("run", command[4:])
    return {k: list(v) if isinstance(v, tuple) else v for k, v in ctx.params.items()}


def test_the_study_stage_follows_the_data_and_runs_what_params_yaml_says(fresh_clone):
    """`dvc dag` shows data → study; the study's command is `debiaskd run` with params.yaml's options and
    settings, and `dvc exp run -S study.seeds=[0,1]` changes just those (a dry run: nothing trains)."""
    work, env = fresh_clone
    dag = _run(["dvc", "dag", "--dot"], work, env)
    assert '"generate_nli" -> "study"' in dag and '"generate_vision" -> "study"' in dag
    params = yaml.safe_load((work / "params.yaml").read_text())
    study, knobs, data = params["study"], params["study_set"], params["data"]

    # the data stages' outputs stand in (committed: `dvc exp run` starts from the last commit)
    (work / "build" / "dvc").mkdir(parents=True)
    for task in ("nli", "vision"):
        (work / "build" / "dvc" / f"{task}-manifest.json").write_text("{}")
    _run(["git", "add", "-f", "build/dvc"], work, env)
    _run(["git", "commit", "-qm", "stand-in manifests"], work, env)

    options = _run_options(_study_command(_run(["dvc", "repro", "--dry", "study"], work, env)))
    assert options["preset"] == study["preset"] and options["task"] == study["task"]
    assert options["seeds"] == study["seeds"] and str(options["out_dir"]) == study["out"]
    sets = dict(item.split("=", 1) for item in options["overrides"])
    assert float(sets["distill.temperature"]) == knobs["distill"]["temperature"]
    cfg = load_config(options["preset"], overrides=[*options["overrides"], f"seeds={options['seeds']}"],
                      task=options["task"])
    assert cfg.seeds == study["seeds"] and cfg.distill.temperature == knobs["distill"]["temperature"]
    assert cfg.distill.alpha == knobs["distill"]["alpha"]
    # the study draws its data with the data stage's settings
    assert {k: getattr(cfg.nli_data, k) for k in data["nli"]} == data["nli"]
    assert {k: getattr(cfg.vision_data, k) for k in data["vision"]} == data["vision"]

    before = (work / "params.yaml").read_text()
    varied = _run(["dvc", "exp", "run", "--dry", "-S", "study.seeds=[0,1]", "-S", "study_set.distill.temperature=4"],
                  work, env)
    options = _run_options(_study_command(varied))
    assert options["seeds"] == [0, 1] and "distill.temperature=4" in options["overrides"]
    assert (work / "params.yaml").read_text() == before  # a dry run leaves the workspace as it was
