#!/usr/bin/env bash
# The embedded default, end to end, on a fresh machine with no data of ours and no download:
#   install -> make synthetic labelled photos -> data_prep.build (TFRecords + manifest)
#   -> tfdldl.train (tiny model, a few epochs, exported SavedModel) -> evaluate -> predict.
# Outputs land in demo_output/ (ignored by git). Takes a few minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
. .venv/bin/activate
export TF_CPP_MIN_LOG_LEVEL=2

rm -rf demo_output  # a fresh demo every time (runs and model versions are never overwritten)
python -m data_prep.synthetic --out demo_output/raw --count 600 --size 96
python -m data_prep.build --config configs/data/synthetic.yaml
python -m tfdldl.train --config configs/demo_synthetic.yaml
python -m tfdldl.evaluate --model demo_output/saved_models/demo_synthetic/1 \
  --data demo_output/tfrecords --split test --out demo_output/evaluation
python -m tfdldl.predict demo_output/raw/images/synthetic_0000*.jpg \
  --model demo_output/saved_models/demo_synthetic/1 --aligned
# The shipped UTKFace model on a real photo, when the project's shared data is beside us.
photo=$(ls ../shared/datasets/utkface/images/2*_0_0_*.jpg.chip.jpg 2>/dev/null | head -1 || true)
if [ -n "$photo" ]; then
  python -m tfdldl.predict "$photo" --model saved_models/utkface_tinyagenet/1
fi
echo "Done: see demo_output/ (run/, evaluation/report.html, saved_models/)."
