"""MultiWorkerMirroredStrategy: two real worker processes on 127.0.0.1 train together.

Keras 3 ``model.fit`` fails under this strategy (keras-team/keras#20585), so tfdldl.train
runs its custom loop there; this checks that loop end to end: both workers finish the
planned steps and end with identical weights.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np

from data_prep.synthetic import write_tfrecord_set
from tfdldl.label_space import LabelSpace

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPACE = LabelSpace(0.0, 40.0, 1.0, name="age")

# One worker: create the strategy FIRST, train through tfdldl.train's own code path, then
# dump the weights and the step count for the test to compare.
WORKER = """
import sys
import numpy as np
from tfdldl import distribute, train
from tfdldl.experiment import load_experiment

strategy = distribute.make_strategy("auto")
experiment = load_experiment(sys.argv[1], sys.argv[3:])
trained = train.fit_model(experiment, strategy)
weights = trained.model.get_weights()
np.savez(sys.argv[2], steps=int(trained.model.optimizer.iterations.numpy()), *weights)
"""


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def test_two_workers_finish_with_identical_weights(tmp_path):
    data = write_tfrecord_set(str(tmp_path / "data"), SPACE,
                              {"train": 32, "val": 8, "test": 8}, image_size=32)
    config = tmp_path / "exp.yaml"
    config.write_text(f"""
name: mw
output_dir: {tmp_path / 'run'}
data: {{tfrecords: {data}}}
model: {{arch: tiny, input_size: 32, width: 0.25}}
train: {{epochs: 2, batch_size: 8, backup_every_steps: 2, verbose: 0}}
augment: {{enabled: false}}
""")
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    processes = []
    for index in range(2):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow",
                   TF_CONFIG=json.dumps({"cluster": cluster,
                                         "task": {"type": "worker", "index": index}}))
        processes.append(subprocess.Popen(
            [sys.executable, "-c", WORKER, str(config), str(tmp_path / f"w{index}.npz")],
            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True))
    outputs = []
    for process in processes:
        try:
            outputs.append(process.communicate(timeout=240)[0])
        except subprocess.TimeoutExpired:
            for other in processes:
                other.kill()
            raise
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-3000:]

    first, second = (np.load(tmp_path / f"w{i}.npz") for i in range(2))
    # 32 records / global batch 8 = 4 steps per epoch, 2 epochs.
    assert int(first["steps"]) == int(second["steps"]) == 8
    names = [name for name in first.files if name != "steps"]
    assert names and len(names) == len(second.files) - 1
    for name in names:
        np.testing.assert_array_equal(first[name], second[name])
    # Training moved the weights away from their (shared, seeded) initial values.
    log = (tmp_path / "run" / "training_log.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in log[1:]] == ["0", "1"]
