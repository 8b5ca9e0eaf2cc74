"""tfdldl.distribute: strategy choice, the global-batch rule, and 2 replicas == 1 device.

conftest.py splits the CPU into 2 logical devices, so MirroredStrategy has 2 replicas.
"""

import numpy as np
import pytest
import tensorflow as tf

from data_prep.synthetic import write_tfrecord_set
from tfdldl import distribute, input_pipeline, model_setup
from tfdldl.experiment import Experiment
from tfdldl.label_space import LabelSpace
from tfdldl.manifest import read_manifest

SPACE = LabelSpace(0.0, 40.0, 1.0, name="age")


def test_strategy_choice_and_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert distribute.make_strategy("mirrored").num_replicas_in_sync == 2
    assert distribute.make_strategy("auto").num_replicas_in_sync == 1  # no GPU here
    assert distribute.make_strategy("default").num_replicas_in_sync == 1
    with pytest.raises(distribute.DistributionError, match="TF_CONFIG is not set"):
        distribute.make_strategy("multi_worker")
    assert distribute.cluster_workers('{"cluster": {"worker": ["a:1", "b:2"]}}') == 2
    assert distribute.cluster_workers('{"cluster": {"chief": ["a:1"], "worker": ["b:2"]}}') == 2
    with pytest.raises(distribute.DistributionError, match="not a valid cluster"):
        distribute.cluster_workers("{not json")


def test_global_batch_must_split_evenly_over_replicas():
    strategy = distribute.make_strategy("mirrored")
    assert distribute.check_global_batch(8, strategy) == 4
    with pytest.raises(distribute.DistributionError,
                       match=r"batch_size 7 is not divisible by the 2 replicas.*"
                             r"train.batch_size=6"):
        distribute.check_global_batch(7, strategy)


def test_two_replicas_give_the_same_loss_and_update_as_one_device(tmp_path):
    data = write_tfrecord_set(str(tmp_path / "data"), SPACE, {"train": 8}, image_size=32)
    manifest = read_manifest(data)
    experiment = Experiment()
    experiment.model.arch, experiment.model.input_size = "tiny", 32
    # Plain SGD: the update is lr x gradient, so it compares the gradients themselves (Adam's
    # first step is about lr x sign(gradient), which float reassociation can flip near 0).
    experiment.optimizer.name, experiment.optimizer.momentum = "sgd", 0.0
    experiment.optimizer.learning_rate = 0.1
    batch = next(iter(input_pipeline.make_dataset(manifest, "train", 8,
                                                  ["distribution", "value"], training=False)))

    def one_step(strategy, weights=None):
        with strategy.scope():
            model = model_setup.build_compiled_model(experiment, manifest, steps_per_epoch=1)
        if weights is not None:
            model.set_weights(weights)
        initial = model.get_weights()
        dataset = tf.data.Dataset.from_tensors(batch)
        with distribute.synchronized_batch_norm(model, strategy.num_replicas_in_sync > 1):
            history = model.fit(dataset, epochs=1, verbose=0)
        return history.history["loss"][0], initial, model.get_weights()

    loss_one, initial, after_one = one_step(distribute.make_strategy("default"))
    loss_two, _, after_two = one_step(distribute.make_strategy("mirrored"), initial)
    assert np.isfinite(loss_one)
    np.testing.assert_allclose(loss_two, loss_one, rtol=1e-5)
    moved = [not np.allclose(a, b) for a, b in zip(after_one, initial)]
    assert sum(moved) > len(moved) // 2  # the step changed the weights ...
    # ... and by the same update on 2 replicas, to float32 summation-order noise (1% of
    # the largest update in each tensor).
    for two, one, start in zip(after_two, after_one, initial):
        update = np.abs(one - start).max()
        np.testing.assert_allclose(two - start, one - start, rtol=0, atol=1e-2 * update + 1e-8)
