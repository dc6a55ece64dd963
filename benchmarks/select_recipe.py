"""Choose the debiased teacher's recipe on ``challenge_dev``, never on the reporting challenge split.

For each seed (each draws its own data: :meth:`StudyConfig.for_seed`), this builds the seed's dataset
as the pipeline does (prepare, then augment with the recipe's bias model), trains the ERM teacher and
one debiased teacher per candidate recipe with the pipeline's own training call
(:func:`debiaskd.training.variant.train_variant_model`), and scores them on the in-distribution
``test`` split and on ``challenge_dev``. The reporting split ``challenge`` is removed from every
dataset before training or scoring, so the choice cannot see it.

The rule, fixed before any run: among the recipes whose mean in-distribution accuracy is within
``--id-tolerance`` (default 5 points) of the ERM teacher's, pick the highest mean held-out
``challenge_dev`` accuracy (balanced over the gold labels); the paired difference against ERM is
reported per seed with a t-interval over seeds.

    python benchmarks/select_recipe.py --seeds 0 1 2 --out runs/select --json benchmarks/results-select.json

``--preset smoke --recipes poe_hypothesis_t2 poe_features_t1`` makes a quick check (the tests run it).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

# what each candidate sets (``--set`` overrides of the study config); the ERM teacher is the baseline
RECIPES: dict[str, dict[str, Any]] = {
    "poe_hypothesis_t2": {"debias.nli_method": "product_of_experts", "debias.bias_model": "hypothesis_only",
                          "debias.bias_temperature": 2.0},
    "poe_hypothesis_t1": {"debias.nli_method": "product_of_experts", "debias.bias_model": "hypothesis_only",
                          "debias.bias_temperature": 1.0},
    "poe_features_t1": {"debias.nli_method": "product_of_experts", "debias.bias_model": "features",
                        "debias.bias_temperature": 1.0},
    "poe_features_t2": {"debias.nli_method": "product_of_experts", "debias.bias_model": "features",
                        "debias.bias_temperature": 2.0},
    "reweight_features": {"debias.nli_method": "reweight", "debias.bias_model": "features",
                          "debias.bias_temperature": 1.0},
    "conf_reg_features": {"debias.nli_method": "conf_reg", "debias.bias_model": "features",
                          "debias.bias_temperature": 1.0},
}
#: the splits a selection may read: training, early stopping, in-distribution test, challenge_dev
SELECTION_SPLITS = ("train", "train_augmented", "validation", "test", "challenge_dev")


def _overrides(recipe: dict[str, Any]) -> list[str]:
    return [f"{k}={v}" for k, v in recipe.items()]


def selection_splits(splits: dict[str, Any]) -> dict[str, Any]:
    """The dataset's splits without the reporting ``challenge`` split (and anything else not allowed)."""
    return {k: v for k, v in splits.items() if k in SELECTION_SPLITS}


def build_seed_data(cfg, seed: int, folder: Path) -> dict[str, Any]:
    """The seed's dataset, built as the pipeline builds it, with the reporting challenge removed."""
    from debiaskd.data.store import read_dataset
    from debiaskd.jobs.data import AugmentDataJob, PrepareDataJob

    raw, aug = folder / "raw", folder / "augmented"
    if not (aug / "manifest.json").is_file():
        shutil.rmtree(folder, ignore_errors=True)
        PrepareDataJob(config=cfg, seed=seed, out_dir=raw).run()
        AugmentDataJob(config=cfg, seed=seed, dataset_dir=raw, out_dir=aug).run()
    return selection_splits(read_dataset(aug).splits)


def score(cfg, variant: str, splits: dict[str, Any], seed: int, out: Path, reference: Path | None) -> dict[str, Any]:
    """Train ``variant`` as the pipeline does; score it on test and on challenge_dev (as the challenge)."""
    from debiaskd.core.study import variant_specs
    from debiaskd.evaluation.evaluate import evaluate_model
    from debiaskd.training.variant import share_logits, train_variant_model

    specs = variant_specs(cfg)
    started = time.time()
    result = train_variant_model(specs[variant], cfg, splits, seed, out, reference_dir=reference, progress=False)
    share_logits(specs[variant], specs, cfg, splits, result.model_dir)
    ev = evaluate_model(Path(result.model_dir), {"test": splits["test"], "challenge": splits["challenge_dev"]}, cfg)
    return {"id": ev.in_distribution_accuracy, "dev": ev.challenge_accuracy, "dev_auc": ev.challenge_auc,
            "dev_reliance": ev.heuristic_reliance, "seconds": round(time.time() - started, 1),
            "model_dir": str(result.model_dir)}


def choose(rows: list[dict[str, Any]], id_tolerance: float, confidence: float = 0.95) -> dict[str, Any]:
    """Apply the rule to the per-seed rows: means, paired differences against ERM, the choice."""
    from debiaskd.core.metrics import seed_t_interval

    erm = {r["seed"]: r for r in rows if r["recipe"] == "erm"}
    table: dict[str, Any] = {}
    for name in dict.fromkeys(r["recipe"] for r in rows):
        mine = [r for r in rows if r["recipe"] == name]
        diffs = [r["dev"] - erm[r["seed"]]["dev"] for r in mine if r["seed"] in erm]
        entry = {"n_seeds": len(mine), "id": sum(r["id"] for r in mine) / len(mine),
                 "dev": sum(r["dev"] for r in mine) / len(mine),
                 "dev_auc": sum(r["dev_auc"] for r in mine) / len(mine),
                 "dev_reliance": sum(r["dev_reliance"] for r in mine) / len(mine)}
        if name != "erm" and len(diffs) >= 2:
            t = seed_t_interval(diffs, confidence)
            entry.update({"dev_minus_erm": t["mean"], "ci_low": t["ci_low"], "ci_high": t["ci_high"]})
        elif name != "erm" and diffs:
            entry["dev_minus_erm"] = diffs[0]
        table[name] = entry
    floor = table["erm"]["id"] - id_tolerance
    eligible = [n for n in table if n != "erm" and table[n]["id"] >= floor]
    chosen = max(eligible, key=lambda n: table[n]["dev"]) if eligible else None
    return {"table": table, "id_floor": floor, "eligible": eligible, "chosen": chosen,
            "chosen_overrides": RECIPES.get(chosen or "", {})}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="default")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    ap.add_argument("--id-tolerance", type=float, default=0.05)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", default="runs/select-recipe")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    from debiaskd.core.config import load_config

    out = Path(args.out)
    rows: list[dict[str, Any]] = []
    started = time.time()
    for seed in args.seeds:
        base = load_config(args.preset, overrides=[*args.overrides, "variants=[teacher_erm,teacher_debiased]"])
        data_cache: dict[str, dict[str, Any]] = {}

        def data_for(cfg, seed=seed, cache=data_cache) -> dict[str, Any]:
            key = cfg.debias.bias_model  # the bias model is the only recipe setting the dataset depends on
            if key not in cache:
                cache[key] = build_seed_data(cfg, seed, out / f"data-s{seed}-{key}")
            return cache[key]

        erm_dir = out / f"teacher_erm-s{seed}"
        erm = score(base, "teacher_erm", data_for(base), seed, erm_dir, None)
        rows.append({"recipe": "erm", "seed": seed, **erm})
        print(json.dumps(rows[-1]), flush=True)
        for name in args.recipes:
            cfg = load_config(args.preset, overrides=[*args.overrides, "variants=[teacher_erm,teacher_debiased]",
                                                      *_overrides(RECIPES[name])])
            spec_needs_erm = cfg.debias.nli_method == "conf_reg"
            row = score(cfg, "teacher_debiased", data_for(cfg), seed, out / f"{name}-s{seed}",
                        Path(erm["model_dir"]) if spec_needs_erm else None)
            rows.append({"recipe": name, "seed": seed, **row})
            print(json.dumps(rows[-1]), flush=True)
    decision = choose(rows, args.id_tolerance)
    result = {"rule": f"highest mean held-out challenge_dev accuracy among recipes with mean ID accuracy >= ERM's "
                      f"- {args.id_tolerance}", "preset": args.preset, "seeds": args.seeds,
              "overrides": args.overrides, "rows": rows, **decision,
              "seconds": round(time.time() - started, 1),
              "machine": {"python": sys.version.split()[0], "platform": platform.platform()}}
    for name, entry in decision["table"].items():
        extra = (f"  dev-ERM {100 * entry['dev_minus_erm']:+.1f}" if "dev_minus_erm" in entry else "") + (
            f" [{100 * entry['ci_low']:+.1f}, {100 * entry['ci_high']:+.1f}]" if "ci_low" in entry else "")
        print(f"{name:20s} ID {100 * entry['id']:.1f}  dev {100 * entry['dev']:.1f}  AUC {entry['dev_auc']:.2f}"
              f"  reliance {entry['dev_reliance']:+.2f}{extra}")
    print(f"chosen: {decision['chosen']} {decision['chosen_overrides']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
