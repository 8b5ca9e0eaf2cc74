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

python -m data_prep.synthetic --out demo_output/raw --count 600 --size 96
python -m data_prep.build --config configs/data/synthetic.yaml
python -m tfdldl.train --config configs/demo_synthetic.yaml
python -m tfdldl.evaluate --model demo_output/saved_models/demo_synthetic/1 \
  --data demo_output/tfrecords --split test --out demo_output/evaluation
python -m tfdldl.predict demo_output/raw/images/synthetic_0000*.jpg \
  --model demo_output/saved_models/demo_synthetic/1 --aligned
echo "Done: see demo_output/ (run/, evaluation/report.html, saved_models/)."
