"""Bad input, round two (issue 21): classes of bad paths, URIs and configs, not single cases.

Every case runs the command line in-process and checks: exit 2, no traceback, a message of at
most a few KB that names the offending file, URI or key, and that nothing was written or
deleted (the user's files keep their content; no output appears).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from debiaskd.cli import main

MAX_MESSAGE = 4096


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _snapshot(root: Path) -> dict[str, bytes | str]:
    """Every entry under ``root`` (no symlink following) with its content, to prove nothing changed."""
    out: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_dir():
                out[rel] = "dir"
            elif p.is_file():
                out[rel] = p.read_bytes()
            else:
                out[rel] = "special"
    return out


def _fails_cleanly(argv: list[str], needles: list[str], capsys, root: Path | None = None) -> str:
    """Run ``argv``: exit 2, no traceback, a bounded message naming every needle; nothing under ``root`` changed."""
    before = _snapshot(root) if root is not None else None
    code = main(argv)
    captured = capsys.readouterr()
    text = captured.err + captured.out
    assert code == 2, text[-3000:]
    assert "Traceback" not in text
    assert "error:" in captured.err
    assert len(captured.err.encode()) <= MAX_MESSAGE, f"{len(captured.err)} bytes:\n{captured.err[:2000]}"
    for needle in needles:
        assert _squash(needle) in _squash(text), f"{needle!r} not in:\n{text[-3000:]}"
    if root is not None:
        assert _snapshot(root) == before, "the failed command changed files"
    return captured.err


def _generate(out: Path | str) -> list[str]:
    return ["data", "generate", "--preset", "smoke", "--out", str(out)]


# --------------------------------------------------------------------- 1. data loss
def test_generate_refuses_a_folder_it_did_not_write(tmp_path, capsys):
    target = tmp_path / "x"
    target.mkdir()
    (target / "notes.txt").write_text("hi\n", encoding="utf-8")
    err = _fails_cleanly(_generate(target), [str(target), "notes.txt", "not a data set"], capsys, tmp_path)
    assert (target / "notes.txt").read_text(encoding="utf-8") == "hi\n"
    assert "folder" in err


def test_generate_refuses_an_existing_file(tmp_path, capsys):
    target = tmp_path / "data.txt"
    target.write_text("precious\n", encoding="utf-8")
    _fails_cleanly(_generate(target), [str(target), "is a file", "expected an output folder"], capsys, tmp_path)
    assert target.read_text(encoding="utf-8") == "precious\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.txt"]  # nothing moved aside


def test_generate_refuses_a_dataset_folder_with_extra_user_files(tmp_path, capsys):
    target = tmp_path / "ds"
    assert main(_generate(target)) == 0
    (target / "my-notes.md").write_text("keep me", encoding="utf-8")
    capsys.readouterr()
    _fails_cleanly(_generate(target), [str(target), "my-notes.md", "manifest"], capsys, tmp_path)
    assert (target / "my-notes.md").read_text(encoding="utf-8") == "keep me"


def test_generate_refuses_a_folder_whose_manifest_is_not_debiaskds(tmp_path, capsys):
    target = tmp_path / "fake"
    target.mkdir()
    (target / "manifest.json").write_text('{"name": "my project"}', encoding="utf-8")
    (target / "data.csv").write_text("a,b\n", encoding="utf-8")
    _fails_cleanly(_generate(target), [str(target), "not a data set"], capsys, tmp_path)


def test_generate_refuses_a_path_under_a_file(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    _fails_cleanly(_generate(blocker / "sub"), [str(blocker), "is a file"], capsys, tmp_path)


def test_generate_may_replace_its_own_dataset_or_fill_an_empty_folder(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(_generate(empty)) == 0
    first = (empty / "manifest.json").read_bytes()
    assert main(_generate(empty)) == 0  # its own, unchanged folder: replaced atomically, same bytes
    assert (empty / "manifest.json").read_bytes() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]  # no hidden leftovers


def test_write_dataset_refuses_directly_too(tmp_path):
    """The library function (used by the pipeline steps) applies the same rule."""
    import pandas as pd

    from debiaskd.data.store import write_dataset
    from debiaskd.errors import DebiaskdError

    target = tmp_path / "t"
    target.mkdir()
    (target / "keep.txt").write_text("k", encoding="utf-8")
    with pytest.raises(DebiaskdError, match="not a data set"):
        write_dataset(target, "nli", {"test": pd.DataFrame({"premise": [], "hypothesis": [], "label": []})})
    assert (target / "keep.txt").read_text(encoding="utf-8") == "k"
