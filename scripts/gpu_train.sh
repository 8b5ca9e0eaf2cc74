#!/usr/bin/env bash
# Train one experiment with Keras on JAX on the lent GPU machine, which has JAX, OpenCV,
# h5py and absl but neither TensorFlow nor Keras. The device tool's `run` calls it from
# the repository root with build/gpu carried (see README, "Training on a GPU machine"):
#
#   bash scripts/gpu_train.sh configs/utkface_tiny_gpu.yaml [backend_train flags, e.g. --set train.epochs=40]
#
# build/gpu/wheels/*.whl   keras, namex, optree, google-crc32c for Python 3.12 (installed
#                          into $WORK/site when this Python has no Keras)
# build/gpu/*.tar.gz       the packed train + val splits (scripts/pack_gpu_data.py);
#                          GPU_DATA=path picks one when there are several
#
# Writes into $OUT (what comes back): model.weights.h5, config.yaml, label_space.json,
# training_log.csv, timing.json, results.json, console.log. Environment: PYTHON (default
# python3), WORK (scratch, default /tmp/tfdldl_gpu), TIME_LIMIT_S (default 480: training
# ends at an epoch end before that, leaving time to copy the results within the tool's
# 10-minute command limit), ALLOW_CPU=1 (a dry run without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."

CONFIG=${1:?usage: scripts/gpu_train.sh CONFIG [tfdldl.backend_train flags ...]}
shift
: "${OUT:?OUT must name the folder whose files come back (the device tool sets it)}"
PYTHON=${PYTHON:-python3}
WORK=${WORK:-/tmp/tfdldl_gpu}
ARCHIVE=${GPU_DATA:-$(ls build/gpu/*.tar.gz 2>/dev/null | head -n 1)}
[ -f "$ARCHIVE" ] || { echo "error: no packed data in build/gpu/*.tar.gz (carry build/gpu; see scripts/pack_gpu_data.py)" >&2; exit 2; }

rm -rf "$WORK" && mkdir -p "$WORK/site" "$WORK/data"
if ! "$PYTHON" -c "import keras" 2>/dev/null; then
  "$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir \
    --target "$WORK/site" build/gpu/wheels/*.whl
fi
export PYTHONPATH="$WORK/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$PYTHON" -m tarfile -e "$ARCHIVE" "$WORK/data"
MANIFEST=$(ls "$WORK"/data/*/manifest.json | head -n 1)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true

export KERAS_BACKEND=jax PYTHONUNBUFFERED=1
# Fail in seconds, not after minutes of CPU training, when JAX sees no GPU (ALLOW_CPU=1
# permits a CPU dry run of this script on a development machine).
"$PYTHON" -c "import jax, keras; d = jax.devices()[0]; print('jax', jax.__version__, 'keras', keras.__version__, d.platform, getattr(d, 'device_kind', ''))
raise SystemExit(0 if d.platform == 'gpu' or '${ALLOW_CPU:-}' else 'error: JAX sees no GPU')"
"$PYTHON" -m tfdldl.backend_train --config "$CONFIG" \
  --set "data.tfrecords=$(dirname "$MANIFEST")" --set "data.test_split=''" \
  --set "output_dir=$WORK/run" --set train.verbose=2 \
  --time_limit_s "${TIME_LIMIT_S:-480}" "$@" 2>&1 | tee "$OUT/console.log"

for name in model.weights.h5 config.yaml label_space.json training_log.csv timing.json results.json; do
  cp "$WORK/run/$name" "$OUT/"
done
ls -l "$OUT"
