"""The ``int8_logits`` TFLite mode: the network up to its logits in full int8, with the
empirical bias corrections of Nagel et al. 2019 (see :mod:`tfdldl.tflite_export`).

A model's distribution head (tfdldl.heads) then runs in float after the interpreter:
:func:`head_from_logits` (softmax and expectation), as an app does. A model with categorical
heads has one more output per head, ``<name>_logits`` [1, C] (e.g. ``gender_logits``),
whose softmax (:func:`softmax`) gives that head's probabilities.
"""

from __future__ import annotations

import tempfile

import numpy as np

from tfdldl.heads import LOGITS_LAYER
from tfdldl.output_names import logits_layer

PHONE_MODE = "int8_logits"
# The outputs of an int8_logits model with categorical heads (named after the Dense layers:
# "logits" and each head's "<name>_logits"; an age-only model has the one unnamed output).
LOGITS = LOGITS_LAYER
INT8_LEVELS = 127  # symmetric int8 weights: [-127, 127] times a per-channel scale


def convert_int8_logits(model, faces: np.ndarray) -> bytes:
    """The ``int8_logits`` TFLite model of a distribution-head Keras model (see module doc).

    Args:
      model: a Keras model from ``tfdldl.models.build_model(head="distribution")``; it is
        not modified.
      faces: float32 [M, S, S, 3] RGB 0..255 representative faces (calibration and the
        bias corrections; a few hundred).
    Returns:
      The .tflite bytes: uint8 [1, S, S, 3] in, float32 logits [1, K] out (with categorical
      heads: outputs "logits" [1, K] and each head's "<name>_logits" [1, C]).
    """
    from tfdldl.models import label_space_of

    grid = label_space_of(model).grid.astype(np.float64)
    corrected = correct_weight_rounding_bias(model, faces)
    reference = _age_logits(_logits_model(model).predict_on_batch(faces))
    quantized = _tflite_logits(_convert_logits(corrected, faces), faces)
    offset = (quantized - reference).mean(axis=0)
    target = head_from_logits(reference, grid)[0].mean()
    tilt = matching_tilt(quantized - offset, grid, target)
    dense = corrected.get_layer(LOGITS_LAYER)
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel, (bias - offset + tilt * grid).astype(bias.dtype)])
    return _convert_logits(corrected, faces)


def matching_tilt(logits: np.ndarray, grid: np.ndarray, target: float) -> float:
    """α such that the mean expectation of ``logits`` + α·grid over the faces is ``target``.

    Adding α·l_k to every logit multiplies p_k by exp(α l_k): the expectation rises
    monotonically with α (its derivative is the distribution's variance), so bisection
    finds α. logits: float [M, K]; grid: [K] label values; target: label units.
    """
    def mean_value(alpha: float) -> float:
        return float(head_from_logits(logits + alpha * grid, grid)[0].mean())

    span = float(np.ptp(grid)) or 1.0
    low, high = -1.0 / span, 1.0 / span  # a tilt of ±1 logit across the grid
    for _ in range(60):
        middle = 0.5 * (low + high)
        low, high = (middle, high) if mean_value(middle) < target else (low, middle)
    return 0.5 * (low + high)


def correct_weight_rounding_bias(model, faces: np.ndarray):
    """A copy of ``model`` whose output means survive int8 rounding of its kernels.

    Layer by layer (input to output), each Conv2D/Dense kernel is rounded as TFLite rounds
    it (:func:`quantized_kernel`) in a working copy; the resulting shift of the layer's
    per-channel output mean over ``faces`` (float32 [M, S, S, 3], 0..255), relative to the
    float model, is added to the following BatchNorm's moving mean (``<name>_bn``, as
    build_model names it) or subtracted from the layer's own bias. The returned copy keeps
    the float kernels (the converter rounds them to the same values) with the corrected
    BatchNorm means and biases.
    """
    import keras

    names = [layer.name for layer in model.layers
             if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))]
    float_means = _channel_means(_outputs_of(model, names), faces)
    rounded = _copy(model)
    corrected = _copy(model)
    # One model over every such layer of the working copy, traced once: it reads the
    # copy's variables, so each pass sees the kernels rounded and the shifts absorbed so far.
    rounded_outputs = _outputs_of(rounded, names)
    for index, name in enumerate(names):
        target = rounded.get_layer(name)
        weights = target.get_weights()
        target.set_weights([quantized_kernel(weights[0])] + weights[1:])
        shift = _channel_means(rounded_outputs, faces)[index] - float_means[index]
        for copy in (rounded, corrected):
            _absorb_shift(copy, name, shift)
    return corrected


def quantized_kernel(kernel: np.ndarray) -> np.ndarray:
    """``kernel`` [..., C_out] rounded to symmetric int8 per output channel, back in float."""
    scale = np.abs(kernel).reshape(-1, kernel.shape[-1]).max(axis=0) / INT8_LEVELS
    scale = np.where(scale > 0, scale, 1.0)
    return (np.round(kernel / scale) * scale).astype(kernel.dtype)


def head_from_logits(logits: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float [N, K] logits -> (value float32 [N] = Σ_k p_k l_k, distribution float32 [N, K])."""
    p = _softmax64(logits)
    return (p @ np.asarray(grid, np.float64)).astype(np.float32), p.astype(np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    """float [N, C] logits -> float32 [N, C] probabilities (rows sum to 1)."""
    return _softmax64(logits).astype(np.float32)


def _softmax64(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits, np.float64)
    p = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return p / p.sum(axis=-1, keepdims=True)


def _copy(model):
    import keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def _logits_model(model):
    """images -> logits [N, K] of a distribution-head model (a view sharing its layers);
    with categorical heads, images -> {"logits": [N, K], "<name>_logits": [N, C], ...}."""
    import keras

    from tfdldl.heads_categorical import of_model

    names = [layer.name for layer in model.layers]
    if LOGITS_LAYER not in names:
        raise ValueError(f"mode {PHONE_MODE} needs a distribution-head model (a Dense layer "
                         f"named '{LOGITS_LAYER}'); {model.name} has none")
    logits = model.get_layer(LOGITS_LAYER).output
    categorical = [logits_layer(head.name) for head in of_model(model)]
    if not categorical:
        return keras.Model(model.input, logits)
    return keras.Model(model.input, {LOGITS: logits, **{
        name: model.get_layer(name).output for name in categorical}})


def _age_logits(outputs) -> np.ndarray:
    """The age logits float64 [N, K] of :func:`_logits_model`'s outputs (array or dict)."""
    return np.asarray(outputs[LOGITS] if isinstance(outputs, dict) else outputs, np.float64)


def _outputs_of(model, names: list[str]):
    """A model from ``model``'s input to the per-face channel means [N, C] of its layers
    ``names`` (the mean over positions, in the graph; the layers' weights are shared)."""
    import keras

    outputs = []
    for name in names:
        output = model.get_layer(name).output
        spatial = tuple(range(1, len(output.shape) - 1))
        outputs.append(keras.ops.mean(output, axis=spatial) if spatial else output)
    return keras.Model(model.input, outputs)


def _channel_means(outputs_model, faces: np.ndarray) -> list[np.ndarray]:
    """Per output of ``outputs_model`` (:func:`_outputs_of`): its mean over faces, float64 [C]."""
    return [np.asarray(output, np.float64).mean(axis=0)
            for output in outputs_model.predict_on_batch(faces)]


def _absorb_shift(model, name: str, shift: np.ndarray) -> None:
    """Cancel a per-channel output shift of layer ``name`` (its BatchNorm's mean, or its bias)."""
    names = {layer.name for layer in model.layers}
    if f"{name}_bn" in names:
        norm = model.get_layer(f"{name}_bn")
        gamma, beta, mean, variance = norm.get_weights()
        norm.set_weights([gamma, beta, (mean + shift).astype(mean.dtype), variance])
        return
    layer = model.get_layer(name)
    weights = layer.get_weights()
    if len(weights) < 2:
        raise ValueError(f"layer {name} has neither a BatchNorm '{name}_bn' nor a bias to "
                         "absorb its int8 rounding shift; build the model with build_model")
    layer.set_weights([weights[0], (weights[1] - shift).astype(weights[1].dtype)])


def _convert_logits(model, faces: np.ndarray) -> bytes:
    """Full-int8 conversion of images -> logits; uint8 input, float32 (dequantised) output.

    Goes through a scratch SavedModel written quietly (``from_keras_model`` prints its
    endpoints), with the batch fixed at one face.
    """
    import keras
    import tensorflow as tf

    logits_model = _logits_model(model)
    size = int(logits_model.input_shape[1])
    archive = keras.export.ExportArchive()
    archive.track(logits_model)
    archive.add_endpoint("serving_default", logits_model.call, input_signature=[
        tf.TensorSpec([1, size, size, 3], tf.float32, name="images")])
    with tempfile.TemporaryDirectory() as scratch:
        archive.write_out(scratch, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(scratch)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([face[None]] for face in faces)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        return converter.convert()


def _tflite_logits(model: bytes, faces: np.ndarray) -> np.ndarray:
    """Run an int8_logits model on float32 [M, S, S, 3] faces -> float64 logits [M, K]."""
    from tfdldl.tflite_export import TFLitePredictor

    runner = TFLitePredictor(model, None)
    return np.concatenate([runner.raw_outputs(face[None])[LOGITS] for face in faces])
