#!/usr/bin/env bash
# Issue 11's comparison at one small CPU budget: age only vs age + gender vs age + gender +
# attention vs all three with the predicted gender fed into the age head. Same data (the
# seeded 3,000-face UTKFace subset of scripts/compare_framings.sh, new framing), same
# recipe (configs/utkface_tiny_gender.yaml: TinyAgeNet 64 px) for 5 epochs each; each run's
# test-split age MAE and gender accuracy are in runs/gender_comparison/<arm>/results.json.
#   bash scripts/compare_gender.sh [ARM ...]   (arms: age gender attention gender_into_age)
set -euo pipefail
cd "$(dirname "$0")/.."
data=data/utkface_framing_new_3k
[ -f "$data/manifest.json" ] || { echo "build $data first: bash scripts/compare_framings.sh ../shared/datasets/utkface/images new" >&2; exit 2; }
arms=(age gender attention gender_into_age)
[ $# -gt 0 ] && arms=("$@")
out=runs/gender_comparison
declare -A parts=(
  [age]="--set gender.names=[] --set model.attention=false --set model.gender_into_age=false"
  [gender]="--set model.attention=false --set model.gender_into_age=false"
  [attention]="--set model.gender_into_age=false"
  [gender_into_age]="")
for arm in "${arms[@]}"; do
  python -m tfdldl.train --config configs/utkface_tiny_gender.yaml ${parts[$arm]} \
    --set "name=gender_$arm" --set "data.tfrecords=$data" --set train.epochs=5 \
    --set "output_dir=$out/$arm" --set "export.name=gender_$arm" \
    --set "export.saved_models_dir=$out/saved_models"
done
python - "$out" "${arms[@]}" <<'PY'
import json, os, sys
out, arms = sys.argv[1], sys.argv[2:]
print(f"{'arm':<16} {'test age MAE':>12} {'gender accuracy':>16}")
for arm in arms:
    test = json.load(open(os.path.join(out, arm, "results.json")))["test"]
    accuracy = test.get("gender_accuracy")
    print(f"{arm:<16} {test['mae']:>12.2f} {'-' if accuracy is None else f'{accuracy:.1%}':>16}")
PY
