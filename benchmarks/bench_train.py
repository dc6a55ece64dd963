"""Training benchmarks: cached vs online KD, and our loop vs ``transformers.Trainer``.

Both run side by side in one process on the same model, data, batch size and thread count.
``quick=True`` uses a tiny random teacher and a few hundred pairs (well under a minute);
otherwise the packaged MiniLM teacher and the embedded benchmark's pairs.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from debiaskd.core.config import StudyConfig, load_config
from debiaskd.data.schema import NLI_COLUMNS, NLI_LABELS


def _pairs(n: int, seed: int = 0) -> pd.DataFrame:
    """The embedded benchmark's training pairs (or, without the generator, a synthetic stand-in)."""
    try:
        from debiaskd.data.generate_nli import generate_nli

        cfg = load_config("default").nli_data.model_copy(update={"n_train": n, "seed": seed})
        return generate_nli(cfg)["train"].reset_index(drop=True)
    except ImportError:  # pragma: no cover - the data layer is part of the package
        rng = np.random.default_rng(seed)
        nouns = ["doctor", "lawyer", "artist", "student", "banker", "actor", "judge", "author"]
        rows = []
        for i in range(n):
            a, b = rng.choice(nouns, 2, replace=False)
            label = NLI_LABELS[i % 3]
            tail = " near the lake" * int(rng.integers(0, 3))
            hyp = {"entailment": f"The {a} saw the {b}.", "neutral": f"The {a} saw the {b} and a cat.",
                   "contradiction": f"The {a} did not see the {b}."}[label]
            rows.append([f"p{i}", f"The {a} saw the {b}{tail}.", hyp, label, "none", "", "", True, f"none/{label}"])
        return pd.DataFrame(rows, columns=list(NLI_COLUMNS))


def _config(quick: bool) -> StudyConfig:
    overrides = ["teacher_train.epochs=1", "student_train.epochs=1", "teacher_train.batch_size=32",
                 "student_train.batch_size=32"]
    if quick:
        return load_config("smoke", overrides=[*overrides, "nli_model.tiny_layers=4", "nli_model.tiny_hidden=128",
                                               "nli_model.tiny_heads=4", "nli_model.max_length=64",
                                               "student_train.lr=1e-4", "teacher_train.lr=5e-5"])
    return load_config("default", overrides=overrides)


def bench_kd_cached_vs_online(quick: bool) -> dict:
    """One student epoch with KD from cached teacher logits vs online teacher forward passes."""
    from debiaskd.core.study import VariantSpec
    from debiaskd.training.distill import teacher_logits
    from debiaskd.training.loop import fit
    from debiaskd.training.models import build_nli_teacher
    from debiaskd.training.recipe import LogitSettings, Recipe
    from debiaskd.training.rows import Sources

    cfg = _config(quick)
    train = _pairs(384 if quick else 1500)
    teacher, tokenizer = build_nli_teacher(cfg.nli_model, 0)
    teacher.eval()
    spec = VariantSpec("student_kd", "student", "erm", teacher="teacher")
    t0 = time.perf_counter()
    logits = teacher_logits(teacher, train, LogitSettings.of(cfg), tokenizer=tokenizer)
    cache_seconds = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix="bench-kd-") as tmp:
        online_src, cached_src = Sources(teacher=teacher), Sources(teacher=teacher, teacher_logits=logits)
        recipe, kwargs = Recipe.build(spec, cfg), {"progress": False, "resume": False}
        # warm-up (allocator, lazy imports) so neither side pays it
        fit(Recipe.build(spec, cfg.model_copy(update={"student_train": cfg.student_train.model_copy(
            update={"max_steps": 2})})), train, None, 0, Path(tmp) / "warm", sources=cached_src, **kwargs)
        # alternate the two sides and take medians: a quick-mode epoch lasts a fraction of a second
        online_runs, cached_runs = [], []
        for r in range(3 if quick else 1):
            online = fit(recipe, train, None, 0, Path(tmp) / f"online{r}", sources=online_src, **kwargs)
            cached = fit(recipe, train, None, 0, Path(tmp) / f"cached{r}", sources=cached_src, **kwargs)
            online_runs.append(online.history[0]["train_seconds"])
            cached_runs.append(cached.history[0]["train_seconds"])
    online_s, cached_s = statistics.median(online_runs), statistics.median(cached_runs)
    return {
        "cached_epoch_seconds": round(cached_s, 3), "online_epoch_seconds": round(online_s, 3),
        "cached_epoch_runs": [round(x, 3) for x in cached_runs],
        "online_epoch_runs": [round(x, 3) for x in online_runs],
        "teacher_logits_seconds": round(cache_seconds, 3), "examples": len(train),
        "teacher_layers": int(teacher.config.num_hidden_layers), "student_layers": cfg.nli_model.student_layers,
        "ratio": round(cached_s / online_s, 3),
    }


def bench_train_vs_hf_trainer(quick: bool) -> dict:
    """Examples/s of :func:`~debiaskd.training.loop.fit` vs ``transformers.Trainer`` (HF defaults: dynamic padding,
    random sampling, i.e. no length grouping) on the same model, data, batch size, learning rate and schedule.

    In transformers 5 ``warmup_ratio`` became a float ``warmup_steps`` and ``group_by_length`` became
    ``train_sampling_strategy`` (left at its default ``"random"``)."""
    import importlib.util

    import torch

    if importlib.util.find_spec("accelerate") is None:
        return {"ratio": None, "skipped": "transformers.Trainer needs the `accelerate` package (pip install "
                "'accelerate>=1.1.0'); the baseline cannot run without it"}
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    from debiaskd.core.study import VariantSpec
    from debiaskd.training.loop import fit
    from debiaskd.training.models import build_nli_teacher, quiet_transformers
    from debiaskd.training.recipe import Recipe

    quiet_transformers()
    cfg = _config(quick)
    tcfg = cfg.teacher_train
    train = _pairs(384 if quick else 1200)
    spec = VariantSpec("teacher_erm", "teacher", "erm")
    label_of = {name: i for i, name in enumerate(NLI_LABELS)}
    with tempfile.TemporaryDirectory(prefix="bench-trainer-") as tmp:
        # --- transformers.Trainer
        model, tokenizer = build_nli_teacher(cfg.nli_model, 0)
        enc = tokenizer(train["premise"].tolist(), train["hypothesis"].tolist(), truncation=True,
                        max_length=cfg.nli_model.max_length)
        rows = [{"input_ids": enc["input_ids"][i], "token_type_ids": enc["token_type_ids"][i],
                 "attention_mask": enc["attention_mask"][i], "labels": label_of[lab]}
                for i, lab in enumerate(train["label"].tolist())]
        args = TrainingArguments(
            output_dir=str(Path(tmp) / "hf"), per_device_train_batch_size=tcfg.batch_size, num_train_epochs=1,
            learning_rate=tcfg.lr, weight_decay=tcfg.weight_decay, warmup_steps=tcfg.warmup_ratio,
            lr_scheduler_type="linear", use_cpu=not torch.cuda.is_available(), report_to=[], save_strategy="no",
            eval_strategy="no", logging_strategy="no", train_sampling_strategy="random", disable_tqdm=True, seed=0,
            dataloader_num_workers=0,
        )
        trainer = Trainer(model=model, args=args, train_dataset=rows,
                          data_collator=DataCollatorWithPadding(tokenizer))
        t0 = time.perf_counter()
        trainer.train()
        hf_seconds = time.perf_counter() - t0
        # --- ours (history: the epoch's training time; the wall includes build, tokenisation, save)
        t0 = time.perf_counter()
        ours = fit(Recipe.build(spec, cfg), train, None, 0, Path(tmp) / "ours", progress=False, resume=False)
        ours_wall = time.perf_counter() - t0
    ours_seconds = ours.history[0]["train_seconds"]
    n = len(train)
    return {
        "ours_seconds": round(ours_seconds, 3), "ours_wall_seconds": round(ours_wall, 3),
        "hf_trainer_seconds": round(hf_seconds, 3), "ours_examples_per_second": round(n / ours_seconds, 1),
        "hf_trainer_examples_per_second": round(n / hf_seconds, 1), "examples": n,
        "batch_size": tcfg.batch_size, "model_layers": int(model.config.num_hidden_layers),
        "ratio": round(hf_seconds / ours_seconds, 3),
    }


if __name__ == "__main__":
    import json
    import sys

    quick = "--quick" in sys.argv
    print(json.dumps({"kd_cached_vs_online": bench_kd_cached_vs_online(quick),
                      "train_vs_hf_trainer": bench_train_vs_hf_trainer(quick)}, indent=2))
