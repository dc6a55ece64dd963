"""A fingerprint of training: per-epoch history and a hash of the saved weights of every kind of run.

Trains, with the ``smoke`` preset on the embedded data (a few dozen rows, one thread, CPU), the
teachers (ERM and every debiasing method of each task) and KD students (cached, online with
hidden-state and attention transfer, iterative, teacher-initialised, KD + debiasing) through
:func:`debiaskd.training.variant.train_variant_model`, and records what must not change when the
training code is reorganised: each run's per-epoch loss, step and validation accuracy, the sha256 of
its weights and of its metadata (timings left out).

    python benchmarks/training_fingerprint.py --write benchmarks/training_fingerprint.json
    python benchmarks/training_fingerprint.py --check benchmarks/training_fingerprint.json

``--check`` exits 1 naming every run whose numbers differ (bit-identical on CPU with a fixed thread
count is the expectation).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

TIMING_KEYS = {"train_seconds", "examples_per_second", "peak_rss_mb", "peak_cuda_mb", "seconds"}
N_TRAIN, N_VALIDATION = 48, 24
DEFAULT_FILE = Path(__file__).with_name("training_fingerprint.json")


def _strip_timings(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_timings(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [_strip_timings(v) for v in value]
    return value


def _digest(model_dir: Path, root: Path) -> dict[str, Any]:
    h = hashlib.sha256()
    for f in sorted(model_dir.glob("*.safetensors")):
        h.update(f.read_bytes())
    meta = json.loads((model_dir / "debiaskd.json").read_text(encoding="utf-8"))
    history = [_strip_timings(r) for r in meta["train"]["history"]]
    text = json.dumps(_strip_timings(meta), sort_keys=True).replace(str(root), "<root>")
    return {"weights": h.hexdigest()[:24], "meta": hashlib.sha256(text.encode()).hexdigest()[:24],
            "history": history}


def _head(split: Any, n: int) -> Any:
    from debiaskd.data.schema import ImageSplit

    if isinstance(split, ImageSplit):
        return ImageSplit(split.images[:n].copy(), split.frame.iloc[:n].reset_index(drop=True),
                          split.class_names, split.group_names)
    return split.iloc[:n].reset_index(drop=True)


def _splits(task: str, cfg: Any, root: Path) -> dict[str, Any]:
    from debiaskd.data.build import build_dataset
    from debiaskd.data.store import read_dataset
    from debiaskd.training.bias import add_bias_probs, fit_bias_model, fit_color_bias_model

    path = build_dataset(cfg, root / f"data-{task}", task)
    splits = dict(read_dataset(path).splits)
    train, validation = _head(splits["train"], N_TRAIN), _head(splits["validation"], N_VALIDATION)
    if task == "nli":
        train = add_bias_probs(train, fit_bias_model(train, cfg.debias.bias_model, 0).predict_proba(train))
    else:
        train.frame = add_bias_probs(train.frame, fit_color_bias_model(train).predict_proba(train))
    return {"train": train, "validation": validation}


def _cases() -> list[tuple[str, str, list[str], list[str]]]:
    """(label, task, overrides, variants in training order)."""
    common = [f"{section}.{key}" for section in ("teacher_train", "student_train", "vision_teacher_train",
                                                 "vision_student_train")
              for key in ("num_threads=1", "epochs=2", "batch_size=8", "device=cpu")]
    kd = ["teacher_erm", "teacher_debiased", "student_kd", "student_kd_debiased", "student_kd_iterative",
          "student_kd_teacher_init"]
    cases = [
        ("nli-poe", "nli", [], [*kd, "student_debiased"]),
        ("nli-reweight", "nli", ["debias.nli_method=reweight"], ["teacher_debiased"]),
        ("nli-conf_reg", "nli", ["debias.nli_method=conf_reg"], ["teacher_erm", "teacher_debiased",
                                                                 "student_kd_debiased"]),
        ("nli-transfer", "nli", ["distill.hidden_weight=0.5", "distill.attention_weight=0.5",
                                 "nli_model.student_hidden=16", "nli_model.student_heads=2",
                                 "teacher_train.grad_accum=2", "student_train.checkpoint_every=2"],
         ["teacher_erm", "teacher_debiased", "student_kd", "student_kd_teacher_init"]),
        ("nli-hidden-same-width", "nli", ["distill.hidden_weight=1.0"],
         ["teacher_erm", "teacher_debiased", "student_kd_iterative"]),
        ("nli-no-cache", "nli", ["distill.cache_teacher=false"], ["teacher_erm", "teacher_debiased", "student_kd"]),
        ("vision-group_dro", "vision", [], kd),
        ("vision-reweight", "vision", ["debias.vision_method=reweight"], ["teacher_debiased"]),
        ("vision-poe", "vision", ["debias.vision_method=product_of_experts",
                                  "vision_teacher_train.early_stopping_patience=1"], ["teacher_debiased"]),
    ]
    return [(label, task, common + overrides, variants) for label, task, overrides, variants in cases]


def fingerprint() -> dict[str, Any]:
    import torch

    from debiaskd.core.config import load_config
    from debiaskd.core.study import variant_specs
    from debiaskd.training.variant import share_logits, train_variant_model

    torch.set_num_threads(1)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="fingerprint-") as tmp:
        root = Path(tmp)
        data: dict[str, dict[str, Any]] = {}
        for label, task, overrides, variants in _cases():
            cfg = load_config("smoke", overrides=overrides, task=task)
            data.setdefault(task, _splits(task, cfg, root))
            splits = data[task]
            specs = variant_specs(cfg)
            case_root = root / label
            for name in variants:
                spec = specs[name]
                result = train_variant_model(
                    spec, cfg, splits, 0, case_root / name,
                    teacher_dir=case_root / spec.teacher / "model" if spec.teacher else None,
                    reference_dir=case_root / spec.reference / "model" if spec.reference else None, progress=False,
                )
                if spec.role == "teacher":
                    share_logits(spec, specs, cfg, splits, result.model_dir)
                out[f"{label}/{name}"] = _digest(result.model_dir, root)
                # the vision reweight case without bias-model predictions: inverse group frequencies
            if label == "vision-reweight":
                bare = dict(splits)
                train = bare["train"]
                bare["train"] = type(train)(train.images, train.frame.drop(columns=["bias_probs"]),
                                            train.class_names, train.group_names)
                spec = specs["teacher_debiased"]
                result = train_variant_model(spec, cfg, bare, 0, case_root / "groups", progress=False)
                out[f"{label}/teacher_debiased-group-frequency"] = _digest(result.model_dir, root)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", type=Path, help="write the fingerprint to this JSON file")
    group.add_argument("--check", type=Path, default=DEFAULT_FILE, help="compare against this JSON file")
    args = parser.parse_args(argv)
    found = fingerprint()
    if args.write:
        args.write.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        print(f"{len(found)} runs written to {args.write}")
        return 0
    expected = json.loads(args.check.read_text(encoding="utf-8"))
    bad = sorted(k for k in set(expected) | set(found) if expected.get(k) != found.get(k))
    for key in bad:
        print(f"DIFFERS {key}:\n  expected {expected.get(key)}\n  found    {found.get(key)}")
    print(f"{len(found) - len(bad)}/{len(set(expected) | set(found))} runs identical")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
