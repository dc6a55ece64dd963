"""Rebuild a finished run's summary (tables, findings, intervals) from its collected evaluations.

    python benchmarks/resummarize.py RUN_DIR [--json FILE]

Reads ``RUN_DIR/resolved_config.yaml`` and the evaluation folders the pipeline's collect tasks wrote
under ``RUN_DIR/kfp/`` and calls the summary step's own :func:`debiaskd.reporting.report.build_summary`,
without MLflow and without registering anything. Used when the statistics code changed after a run
(e.g. the hierarchical bootstrap learned seeds with different numbers of examples) to recompute the
findings from the same predictions.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from debiaskd.core.config import config_from_yaml_text
from debiaskd.jobs.base import read_result
from debiaskd.jobs.report import collected_dirs
from debiaskd.reporting.report import build_summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    cfg = config_from_yaml_text((args.run_dir / "resolved_config.yaml").read_text(encoding="utf-8"))
    collected = sorted(args.run_dir.glob("kfp/*/for-loop-*/collect-evaluations/evaluations"))
    eval_dirs, _ = collected_dirs(collected)
    summary = build_summary(cfg, [read_result(d) for d in eval_dirs], eval_dirs)
    text = json.dumps(summary, indent=2, sort_keys=True, default=str)
    if args.json:
        args.json.write_text(text, encoding="utf-8")
    for f in summary["findings"]:
        def pts(x):
            return "–" if x is None else f"{100 * x:+.1f}"
        print(f"{f['name']:40s} {pts(f['mean_difference'])} t [{pts(f['ci_low'])}, {pts(f['ci_high'])}] "
              f"bootstrap [{pts(f.get('bootstrap_ci_low'))}, {pts(f.get('bootstrap_ci_high'))}] "
              f"{f.get('seeds_significant')} of {f['n_seeds']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
