"""The compiled model of an experiment: network, loss, metrics, optimizer and its schedule.

Shared by ``tfdldl.train`` (TensorFlow, tf.distribute) and ``tfdldl.backend_train`` (Keras
on JAX or PyTorch, no TensorFlow), so both train exactly the same thing from the same
config file. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import logging
import os

from tfdldl.config import ConfigError
from tfdldl.experiment import (Experiment, OptimizerConfig, categorical_heads, into_label,
                               label_head, resolve_heads)
from tfdldl.manifest import Manifest

log = logging.getLogger("tfdldl.train")


def build_compiled_model(experiment: Experiment, manifest: Manifest, steps_per_epoch: int):
    """The model on the data's label space, compiled with the configured heads' losses
    (fixed or learned weights, tfdldl.heads.compile_losses) and optimizer.

    Under tf.distribute, call it inside ``strategy.scope()``.

    Raises:
      ManifestError: the data's task (manifest) is not the experiment's, or
        model.initial_weights predicts on another label space.
    """
    from tfdldl import heads, loss_weighting, metrics

    space = manifest.label_space
    model = build_network(experiment, space)
    if experiment.model.initial_weights:
        _load_initial_weights(model, experiment.model.initial_weights, manifest)
    manifest.require_task(experiment.task, what=f"experiment {experiment.name!r}")
    specs = resolve_heads(experiment)
    loss, loss_weights = heads.compile_losses(specs, space, loss_weighting.layer_of(model))
    model.compile(optimizer=make_optimizer(experiment.optimizer, steps_per_epoch,
                                           experiment.train.epochs),
                  loss=loss, loss_weights=loss_weights,
                  metrics=metrics.build_metrics(experiment.task, [
                      heads.probability_output(spec.name)
                      for spec in categorical_heads(experiment)]),
                  jit_compile=experiment.train.jit_compile)
    model.optimizer.build(model.trainable_variables)
    return model


def build_network(experiment: Experiment, label_space):
    """The experiment's network (tfdldl.models.build_model) on ``label_space``, uncompiled:
    its label head and categorical heads from :func:`tfdldl.experiment.resolve_heads`
    (one of them fed into the label head: :func:`tfdldl.experiment.into_label`), and the
    learned loss weights' layer under ``loss_weighting: uncertainty``."""
    from tfdldl import heads, models

    config = experiment.model
    learned = experiment.loss_weighting == "uncertainty"
    return models.build_model(config.arch, label_space, input_size=config.input_size,
                              pooling=config.pooling, head=label_head(experiment).kind,
                              width=config.width,
                              categorical=[heads.of_spec(spec)
                                           for spec in categorical_heads(experiment)],
                              into_label=into_label(vars(config)),
                              attention=config.attention,
                              loss_weighting=[spec.name for spec in resolve_heads(experiment)]
                              if learned else ())


def make_optimizer(config: OptimizerConfig, steps_per_epoch: int, epochs: int):
    """The Keras optimizer with its per-step learning-rate schedule.

    "step": lr x decay_factor^floor(epoch / decay_every_epochs); "cosine": linear warm-up
    from 0 over warmup_epochs, then cosine decay to 0 at the end; "constant".
    """
    import keras

    schedules = keras.optimizers.schedules
    lr = config.learning_rate
    total = steps_per_epoch * epochs
    if config.schedule == "step":
        boundaries = list(range(config.decay_every_epochs * steps_per_epoch, total,
                                config.decay_every_epochs * steps_per_epoch))
        values = [lr * config.decay_factor ** i for i in range(len(boundaries) + 1)]
        rate = schedules.PiecewiseConstantDecay(boundaries, values) if boundaries else lr
    elif config.schedule == "cosine":
        warmup = int(round(config.warmup_epochs * steps_per_epoch))
        rate = schedules.CosineDecay(0.0 if warmup else lr, max(1, total - warmup),
                                     warmup_target=lr if warmup else None,
                                     warmup_steps=warmup)
    else:
        rate = lr
    if config.name == "adam":
        return keras.optimizers.Adam(rate, weight_decay=config.weight_decay or None)
    if config.name == "adamw":
        return keras.optimizers.AdamW(rate, weight_decay=config.weight_decay)
    return keras.optimizers.SGD(rate, momentum=config.momentum,
                                weight_decay=config.weight_decay or None)


def _load_initial_weights(model, path: str, manifest: Manifest) -> None:
    """Start from a .keras model or .weights.h5 file (fine-tuning).

    A .keras model's weights are matched to ``model``'s layers by layer name, so a model
    with an added head (say, a categorical one on an age-only model) starts from the shared trunk and
    the source's heads, and only the new layers start from their initializers; the new
    layers, and the source's layers this model lacks, are logged. A .weights.h5 file must
    come from the same architecture.

    Raises:
      ConfigError: the file does not exist, a layer has another shape in the source, or
        no layer matches at all.
      ManifestError: the .keras model predicts on another label space than the data's.
    """
    import keras

    from tfdldl import models

    if not os.path.exists(path):
        raise ConfigError(f"model.initial_weights {path} does not exist")
    if not path.endswith(".keras"):
        model.load_weights(path)
        return
    source = keras.saving.load_model(path, compile=False)
    manifest.require_label_space(models.label_space_of(source),
                                 what=f"model.initial_weights {path}")
    transferred = transfer_weights_by_name(source, model, what=f"model.initial_weights {path}")
    fresh = sorted({layer.name for layer in model.layers if layer.weights} - set(transferred))
    unused = sorted({layer.name for layer in source.layers if layer.weights} - set(transferred))
    if fresh or unused:
        log.info("model.initial_weights %s: %d layers loaded; starting from their "
                 "initializers: %s; in the source only (not used): %s", path,
                 len(transferred), fresh or "none", unused or "none")


def transfer_weights_by_name(source, target, what: str) -> list:
    """Copy each weighted layer's weights from ``source`` to ``target``'s same-named layer.

    Returns the names of the layers copied.

    Raises:
      ConfigError: a same-named layer holds weights of other shapes (another architecture
        or label space), or no layer name matches (``what`` names the source).
    """
    by_name = {layer.name: layer for layer in source.layers if layer.weights}
    copied = []
    for layer in target.layers:
        origin = by_name.get(layer.name)
        if origin is None or not layer.weights:
            continue
        shapes = [tuple(w.shape) for w in layer.weights]
        origin_shapes = [tuple(w.shape) for w in origin.weights]
        if shapes != origin_shapes:
            raise ConfigError(f"{what}: layer {layer.name!r} has weights of shapes "
                              f"{origin_shapes} there but {shapes} in this model; start from "
                              "a model of the same architecture (model.arch, model.attention, "
                              "model.into_label) or leave model.initial_weights unset")
        layer.set_weights(origin.get_weights())
        copied.append(layer.name)
    if not copied:
        raise ConfigError(f"{what}: no layer of this model has a same-named layer there; "
                          "start from a model of the same architecture")
    return copied
