"""Shared helpers for the data-layer tests (fixtures live in the test modules that use them)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from debiaskd.config import StudyConfig, load_config

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_file(*parts: str) -> Path:
    """A file of ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (the real data lives in ../shared/data next to the repository)")
    return path


def smoke(task: str = "nli", *overrides: str) -> StudyConfig:
    return load_config("smoke", overrides=list(overrides), task=task)


def tree_digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (relative names)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}
