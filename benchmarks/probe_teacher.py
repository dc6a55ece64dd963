"""Probe: one NLI teacher recipe, trained and evaluated in-process (no pipeline, no MLflow).

Used to search for a debiasing recipe that makes ``teacher_debiased`` beat ``teacher_erm`` on the
embedded challenge split (issue 3); results are appended as JSON lines to ``--log``.

    python benchmarks/probe_teacher.py NAME METHOD [--set key=value ...] [--bias-features a,b,...]
        [--bias-temperature T] [--seed S] [--data DIR] [--erm-model DIR] [--log FILE]

METHOD is ``erm``, ``product_of_experts``, ``reweight`` or ``conf_reg`` (which needs ``--erm-model``,
a teacher_erm model folder, for the logits it regularises towards). ``--bias-features`` refits the
bias-only model on a subset of :data:`debiaskd.training.bias.FEATURE_NAMES`; ``--bias-temperature T`` sets
``debias.bias_temperature`` (predictions softened to ``p^(1/T)`` renormalised). Since 2026-11-28 the
``default`` preset's recipe is a hypothesis-only bias model at T = 2; the earlier rows of RESULTS.md
ran with the features bias model at T = 1 (add ``--set debias.bias_model=features --set
debias.bias_temperature=1`` to reproduce them). ``--data`` is an augmented dataset folder
(built from the ``default`` preset, with the ``--set`` overrides, when omitted).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from debiaskd.core.config import load_config
from debiaskd.core.study import VariantSpec
from debiaskd.data.schema import NLI_LABELS
from debiaskd.data.store import read_dataset
from debiaskd.evaluation.evaluate import evaluate_model
from debiaskd.training import bias as B
from debiaskd.training.inputs import TextPairInputs
from debiaskd.training.loop import fit
from debiaskd.training.predict import predict_logits, resolve_device
from debiaskd.training.recipe import Recipe
from debiaskd.training.rows import Sources


def refit_bias(train, features: list[str]) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    keep = [B.FEATURE_NAMES.index(f) for f in features]
    x = B.nli_bias_features(train)[:, keep]
    x = (x - x.mean(0)) / (x.std(0) + 1e-9)
    y = train["label"].map({name: i for i, name in enumerate(NLI_LABELS)}).to_numpy()
    return LogisticRegression(max_iter=1000).fit(x, y).predict_proba(x).astype("float32")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name")
    ap.add_argument("method", choices=["erm", "product_of_experts", "reweight", "conf_reg"])
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--bias-features")
    ap.add_argument("--bias-temperature", type=float)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data")
    ap.add_argument("--erm-model")
    ap.add_argument("--out", default="runs/probe-teacher")
    ap.add_argument("--log", default="runs/probe-teacher/results.jsonl")
    args = ap.parse_args()

    overrides = list(args.overrides)
    if args.bias_temperature:  # applied by the recipe (debias.bias_temperature)
        overrides.append(f"debias.bias_temperature={args.bias_temperature}")
    cfg = load_config("default", overrides=overrides)
    data = args.data
    if data is None:
        from debiaskd.jobs.data import AugmentDataJob, PrepareDataJob

        tmp = Path(tempfile.mkdtemp(prefix="probe-data-"))
        PrepareDataJob(config=cfg, out_dir=tmp / "raw").run()
        AugmentDataJob(config=cfg, dataset_dir=tmp / "raw", out_dir=tmp / "aug").run()
        data = str(tmp / "aug")
    ds = read_dataset(data)
    train = ds.splits["train"]
    bias_probs = np.asarray(train["bias_probs"].tolist(), dtype="float32")
    if args.bias_features:
        bias_probs = refit_bias(train, args.bias_features.split(","))
    conf = None
    if args.method == "conf_reg":
        from debiaskd.training.models import load_model

        erm = load_model(args.erm_model)
        inputs = TextPairInputs(train, list(NLI_LABELS), erm.tokenizer, cfg.nli_model.max_length)
        conf = predict_logits(erm.model, inputs, cfg.eval.batch_size, resolve_device("cpu"))
    role_name = "teacher_erm" if args.method == "erm" else "teacher_debiased"
    started = time.time()
    out = Path(args.out) / args.name
    result = fit(Recipe.build(VariantSpec(role_name, "teacher", args.method), cfg), train, ds.splits["validation"],
                 args.seed, out / "model", sources=Sources(bias_probs=bias_probs, reference_logits=conf),
                 progress=False, resume=False)
    ev = evaluate_model(Path(result.model_dir), {k: ds.splits[k] for k in ("test", "challenge")}, cfg)
    row = {"name": args.name, "method": args.method, "overrides": args.overrides, "seed": args.seed,
           "bias_features": args.bias_features, "bias_temperature": args.bias_temperature,
           "id": round(100 * ev.in_distribution_accuracy, 1), "challenge": round(100 * ev.challenge_accuracy, 1),
           "auc": round(ev.challenge_auc, 3), "reliance": round(ev.heuristic_reliance, 2),
           "seconds": round(time.time() - started),
           "by_group": {k: round(100 * v, 1) for k, v in ev.by_group.items()}}
    print(json.dumps(row))
    Path(args.log).parent.mkdir(parents=True, exist_ok=True)
    with open(args.log, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
