"""Cost of activation patching (debiaskd.analysis.patching) at the default study's model sizes.

The packaged MiniLM-L6 teacher (6 layers × 12 heads) and a 2-layer student of its width, untrained
(the cost does not depend on the weights), on minimal pairs of the generated challenge split:
seconds to patch every head, MLP and residual segment, for a few pair counts.

    python benchmarks/bench_patching.py [--pairs 32 48 96] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

from debiaskd.analysis import patching as P
from debiaskd.core.config import load_config
from debiaskd.data.loaders import load_spec
from debiaskd.data.schema import NLI_LABELS
from debiaskd.training.models import build_nli_student, build_nli_teacher


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, nargs="+", default=[32, 48, 96])
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    cfg = load_config("default")
    split = load_spec("generated:challenge", "nli", cfg, "challenge")
    teacher, tok = build_nli_teacher(cfg.nli_model, 0)
    student = build_nli_student(teacher.config, cfg.nli_model, 0)
    out = {"machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                       "processor": platform.processor() or platform.machine()},
           "pairs_available": len(P.minimal_pairs(split)), "seconds": {}}
    for n in args.pairs:
        pairs = P.minimal_pairs(split, n, 0)
        source, target = P.encode_pairs(tok, pairs, cfg.nli_model.max_length)
        for name, model in (("teacher", teacher.eval()), ("student", student.eval())):
            started = time.perf_counter()
            P.patching_map(model, source, target, NLI_LABELS, batch_size=cfg.eval.batch_size)
            out["seconds"][f"{name}_{n}"] = round(time.perf_counter() - started, 2)
            print(f"{name}: {n} pairs ({tuple(source.inputs['input_ids'].shape)} tokens): "
                  f"{out['seconds'][f'{name}_{n}']:.1f} s", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
