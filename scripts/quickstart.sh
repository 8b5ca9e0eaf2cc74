#!/usr/bin/env bash
# The embedded default, end to end, on a fresh machine with no data of ours and no download:
#   install -> make synthetic labelled photos -> data_prep.build (TFRecords + manifest)
#   -> tfdldl.train (tiny model, a few epochs, deterministic, exported SavedModel)
#   -> evaluate (and check that the model learned) -> predict.
# Outputs land in demo_output/ (ignored by git). Takes a few minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
. .venv/bin/activate

rm -rf demo_output  # a fresh demo every time (runs and model versions are never overwritten)
python -m data_prep.synthetic --out demo_output/raw --count 600 --size 96
python -m data_prep.build --config configs/data/synthetic.yaml
python -m tfdldl.train --config configs/demo_synthetic.yaml
python -m tfdldl.evaluate --model demo_output/saved_models/demo_synthetic \
  --data demo_output/tfrecords --split test --out demo_output/evaluation --no_progress
# A model that learned nothing predicts about the mean: MAE ~25 on these uniform 0..100
# labels. A working demo run scores well below 10.
python - <<'PY'
import json, sys
mae = json.load(open("demo_output/evaluation/results.json"))["mae"]
if mae > 10:
    sys.exit(f"demo FAILED: test MAE {mae:.2f} years (a working run is below 10)")
print(f"demo OK: test MAE {mae:.2f} years (below 10; a model that learned nothing: ~25)")
PY
python -m tfdldl.predict demo_output/raw/images/synthetic_0000*.jpg \
  --model demo_output/saved_models/demo_synthetic --aligned --no_progress
# The shipped UTKFace model on a real photo.
python -m tfdldl.predict docs/grace_hopper.jpg
echo "Done: see demo_output/ (run/, evaluation/report.html, saved_models/)."
