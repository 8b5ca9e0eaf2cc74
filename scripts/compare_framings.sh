#!/usr/bin/env bash
# Old framing (ArcFace template x0.8, black border) vs the new one (x1.25, offset -0.16,
# mirrored border), and the new one with a replicated border, at the same small budget: a
# seeded 3,000-face UTKFace subset built with each, TinyAgeNet 64 px for 5 epochs each,
# then test-split MAE (tfdldl.evaluate) and the context benchmark
# (benchmarks/bench_context.py) on each model.
#   bash scripts/compare_framings.sh [UTKFACE_IMAGES] [ARM ...]
# (default ../shared/datasets/utkface/images; arms: legacy new replicate)
set -euo pipefail
cd "$(dirname "$0")/.."
images="${1:-../shared/datasets/utkface/images}"
shift || true
arms=(legacy new replicate)
[ $# -gt 0 ] && arms=("$@")
out=runs/framing_comparison
mkdir -p "$out"
declare -A framing=(
  [legacy]="--set alignment.template_scale=0.8 --set alignment.template_offset_y=0 --set alignment.border=black"
  [new]=""
  [replicate]="--set alignment.border=replicate")
for name in "${arms[@]}"; do
  data="data/utkface_framing_${name}_3k"
  python -m data_prep.build --config configs/data/utkface_128.yaml --set limit=3000 \
    --set "adapter.options.root=$images" --set "output.dir=$data" ${framing[$name]}
  python -m tfdldl.train --config configs/framing_comparison.yaml \
    --set "name=framing_$name" --set "data.tfrecords=$data" --set "export.name=framing_$name"
  python -m tfdldl.evaluate --model "$out/saved_models/framing_$name" --data "$data" \
    --split test --out "$out/eval_$name" --no_report
  python benchmarks/bench_context.py --model "$out/saved_models/framing_$name" --data "$data" \
    --images "$images" --count 100 --json "$out/context_$name.json"
done
