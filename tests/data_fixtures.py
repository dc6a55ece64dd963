"""Shared helpers and small datasets for the tests (fixtures live in the test modules that use them)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from debiaskd.core.config import StudyConfig, load_config
from debiaskd.data.schema import COLOR_NAMES, COLOR_RGB, NLI_COLUMNS, NLI_LABELS, ImageSplit

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


def tiny_images(n: int = 64, size: int = 8, seed: int = 0, classes: int = 4) -> ImageSplit:
    """Coloured blocks whose colour matches the label 90% of the time (a colour shortcut)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    colors = np.where(rng.random(n) < 0.9, labels, rng.integers(0, classes, n))
    images = np.zeros((n, 3, size, size), dtype=np.uint8)
    for i in range(n):
        mask = np.zeros((size, size), bool)
        mask[labels[i]:labels[i] + 3, 2:6] = True
        for c in range(3):
            images[i, c][mask] = int(255 * COLOR_RGB[colors[i]][c])
    frame = pd.DataFrame({"image_id": [f"i{i}" for i in range(n)], "label": labels.astype(int),
                          "color": [COLOR_NAMES[c] for c in colors], "bias_aligned": labels == colors,
                          "group": [f"{y}/{COLOR_NAMES[c]}" for y, c in zip(labels, colors, strict=True)]})
    return ImageSplit(images, frame, tuple(str(i) for i in range(classes)))


NOUNS = ["doctor", "lawyer", "artist", "student", "banker", "actor", "judge", "author", "nurse", "chef"]
VERBS = ["saw", "helped", "called", "thanked", "met", "paid", "found", "visited"]
PLACES = ["lake", "park", "bank", "school", "station"]


def tiny_nli(n: int = 96, seed: int = 0) -> pd.DataFrame:
    """NLI pairs with shortcuts: entailment = full overlap, neutral = added material, contradiction = 'not'."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        a, b = rng.choice(NOUNS, 2, replace=False)
        v, place = rng.choice(VERBS), rng.choice(PLACES)
        label = NLI_LABELS[i % 3]
        premise = f"The {a} {v} the {b} near the {place}."
        if label == "entailment":
            hyp, heur = f"The {a} {v} the {b}.", "lexical_overlap"
        elif label == "neutral":
            hyp, heur = f"The {a} {v} the {b} and the {rng.choice(NOUNS)} yesterday.", "none"
        else:
            hyp, heur = f"The {a} did not see the {rng.choice(NOUNS)}.", "negation"
        rows.append({"pair_id": f"p{seed}-{i}", "premise": premise, "hypothesis": hyp, "label": label,
                     "heuristic": heur, "subcase": "", "template": "", "bias_aligned": True,
                     "group": f"{heur}/{label}"})
    return pd.DataFrame(rows, columns=list(NLI_COLUMNS))


def tree_snapshot(root: Path, skip: tuple[str, ...] = ()) -> dict[str, bytes | str]:
    """Every entry under ``root`` (no symlink following) with its content, to prove nothing changed;
    ``skip`` leaves out these paths relative to ``root``."""
    import os

    found: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if rel in skip:
                continue
            if p.is_symlink():
                found[rel] = "link:" + os.readlink(p)
            elif p.is_dir():
                found[rel] = "dir"
            elif p.is_file():
                found[rel] = p.read_bytes()
            else:
                found[rel] = "special"
    return found
