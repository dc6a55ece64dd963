"""Build a dataset folder from a config: resolve the split specs, load them, hold out, deduplicate.

``python -m debiaskd.data.build --task nli --preset default --out data/nli`` writes the embedded
benchmark (used by ``dvc.yaml``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from debiaskd.core.config import StudyConfig, load_config
from debiaskd.core.errors import DebiaskdError
from debiaskd.data import loaders
from debiaskd.data.generate_vision import conflicting
from debiaskd.data.schema import SPLITS
from debiaskd.data.store import Split, check_dataset_target, read_manifest, write_dataset
from debiaskd.tasks import TASK_NAMES, Task, get_task, task_of


def _is_generated(spec: str) -> bool:
    return spec.startswith("generated:")


def _holdout_indices(n: int, fractions: list[float], seed: int) -> list[np.ndarray]:
    """Seeded partition of ``range(n)``: one part per fraction, the rest last."""
    order = np.random.default_rng(np.random.PCG64(seed + 7919)).permutation(n)
    parts, start = [], 0
    for f in fractions:
        k = max(1, round(f * n))
        parts.append(np.sort(order[start:start + k]))
        start += k
    parts.append(np.sort(order[start:]))
    return parts


def _take(split: Split, idx: np.ndarray) -> Split:
    return task_of(split).take(split, idx)


def build_dataset(cfg: StudyConfig, out_dir: str | Path, task: str | Task | None = None) -> Path:
    """Resolve the config's four split specs, load them and write the dataset folder."""
    kind = get_task(task or cfg.task)
    check_dataset_target(out_dir)  # before any work: never generate into a folder we may not replace
    dcfg = kind.sections(cfg).data
    specs = {name: getattr(dcfg, name) for name in SPLITS}
    holdout = float(getattr(dcfg, "holdout_fraction", 0.2))
    splits: dict[str, Split] = {}
    meta: dict[str, Any] = {"specs": dict(specs), "generator": dcfg.model_dump(mode="json")}

    def load(spec: str, split: str) -> Split:
        return loaders.load_spec(spec, kind, cfg, split=split)

    train_real = not _is_generated(specs["train"])
    carve = [s for s in ("validation", "test") if train_real and _is_generated(specs[s])
             and specs[s].split(":", 1)[1] == s]
    if carve:
        base = load(specs["train"], "train")
        parts = _holdout_indices(len(base), [holdout] * len(carve), dcfg.seed)
        for name, idx in zip(carve, parts[:-1], strict=True):
            splits[name] = _take(kind.holdout_view(base, load, specs["train"], name), idx)
        splits["train"] = _take(base, parts[-1])
        meta["holdout"] = {name: len(splits[name]) for name in carve}
    for name in SPLITS:
        if name in splits or kind.derives_split(name, specs[name], train_real):
            continue
        splits[name] = load(specs[name], name)
    if "challenge" not in splits:
        splits["challenge"] = conflicting(splits["test"])
    splits = kind.finish_build(cfg, splits, specs, meta, load)
    path = Path(out_dir)
    write_dataset(path, kind.name, splits, meta)
    return path


def generate_dataset(task: str, preset: str = "default", out_dir: str | Path = "data",
                     overrides: list[str] | None = None) -> Path:
    """The embedded benchmark of a preset, written to ``out_dir`` (what ``data generate`` does)."""
    section = get_task(task).section_names.data
    forced = [f"{section}.{s}=generated:{s}" for s in SPLITS]
    cfg = load_config(preset, overrides=[*(overrides or []), *forced], task=task)
    return build_dataset(cfg, out_dir, task)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m debiaskd.data.build",
                                     description="Write the embedded benchmark (used by dvc.yaml).")
    parser.add_argument("--task", choices=list(TASK_NAMES), required=True)
    parser.add_argument("--preset", default="default")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", required=True)
    parser.add_argument("--stamp", default=None, help="also copy manifest.json here (the DVC stage's out)")
    args = parser.parse_args(argv)
    try:
        path = generate_dataset(args.task, args.preset, args.out, args.overrides)
    except DebiaskdError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    manifest = read_manifest(path)
    if args.stamp:
        Path(args.stamp).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path / "manifest.json", args.stamp)
    rows = ", ".join(f"{k} {v['rows']}" for k, v in manifest["splits"].items())
    print(f"wrote {path} ({args.task}: {rows}; content {manifest['content_hash'][:12]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
