"""How a bad-input test checks a command's failure: one definition for every bad-input suite."""

from __future__ import annotations

import re
from pathlib import Path

from data_fixtures import tree_snapshot
from debiaskd.cli import main

#: the most a one-paragraph error may take on stderr
MAX_MESSAGE = 4096


def squash(text: str) -> str:
    """Rich wraps long lines (and paths) at the console width: compare without whitespace."""
    return re.sub(r"\s+", "", text)


def fails_cleanly(argv: list[str], needles: list[str], capsys, root: Path | None = None) -> str:
    """Run ``argv``: exit 2, no traceback, a bounded message naming every needle; nothing under ``root``
    changed. Returns stderr."""
    before = tree_snapshot(root) if root is not None else None
    code = main(argv)
    captured = capsys.readouterr()
    text = captured.err + captured.out
    assert code == 2, text[-3000:]
    assert "Traceback" not in text
    assert "error:" in captured.err
    assert len(captured.err.encode()) <= MAX_MESSAGE, f"{len(captured.err)} bytes:\n{captured.err[:2000]}"
    for needle in needles:
        assert squash(needle) in squash(text), f"{needle!r} not in:\n{text[-3000:]}"
    if root is not None:
        assert tree_snapshot(root) == before, "the failed command changed files"
    return captured.err
