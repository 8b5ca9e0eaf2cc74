"""Where a model with attention looks: its CBAM spatial maps, overlaid on faces.

A model built with ``model.attention`` (tfdldl.layers.ConvBlockAttention, layer
"attention") weighs the trunk's last feature map F [N, h, w, C] by channel weights a and a
learned spatial map m [N, h, w, 1] in (0, 1) before pooling. :func:`map_model` reads m
with a Keras sub-model of the trained model (the attention layer's own ops on its input,
so every Keras backend runs it); :func:`overlay` upsamples a map to the face and blends it
over the face as a heat map (NumPy/OpenCV, outside the model). The evaluation report draws
them on the best and worst predicted faces.

A SavedModel's Keras layers are rebuilt from its config and weights
(:func:`tfdldl.export.keras_model_of`); a ``.keras`` file has them already.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

# The name tfdldl.models.build_model gives the attention layer.
ATTENTION_LAYER = "attention"
# Share of the heat map in an overlay (the face keeps the rest).
HEAT_SHARE = 0.45


def keras_model(predictor):
    """The Keras model behind a loaded predictor (tfdldl.inference) when it may have
    attention; None when it has no Keras layers to read (a .tflite model) or is a
    SavedModel whose config has no ``model.attention`` (nothing is rebuilt then).

    Raises:
      tfdldl.serving_model.ServingLoadError: a SavedModel with attention whose weights do
        not fit the network its config names.
    """
    from tfdldl.inference import KerasPredictor, SavedModelPredictor

    if isinstance(predictor, KerasPredictor):
        return predictor.model
    if (isinstance(predictor, SavedModelPredictor)
            and predictor.serving.config.get("model", {}).get("attention")):
        from tfdldl.export import keras_model_of

        return keras_model_of(predictor.serving)
    return None


def map_model(model):
    """A Keras model: the same images -> the attention layer's spatial map [N, h, w, 1] in
    (0, 1), inference mode. None when ``model`` has no layer named "attention"."""
    import keras

    if ATTENTION_LAYER not in {layer.name for layer in model.layers}:
        return None
    layer = model.get_layer(ATTENTION_LAYER)
    features = layer.input
    spatial = layer.spatial_map(features * layer.channel_weights(features), training=False)
    return keras.Model(model.input, spatial, name=f"{model.name}_attention_map")


def attention_maps(maps, images: np.ndarray) -> np.ndarray:
    """Run :func:`map_model`'s model on float32 [N, S, S, 3] RGB 0..255 (S: its input size).

    Returns:
      float32 [N, h, w], values in (0, 1); h = w = S / 16 for ThinAgeNet/TinyAgeNet.
    """
    return np.asarray(maps.predict_on_batch(np.asarray(images, np.float32)), np.float32)[..., 0]


def overlay(face: np.ndarray, attention: np.ndarray) -> np.ndarray:
    """A face with its attention map over it as a heat map (red: where the map is highest).

    The map is stretched to its own range (lowest value blue, highest red), upsampled
    bilinearly to the face and blended in at :data:`HEAT_SHARE`.

    Args:
      face: uint8 [H, W, 3] RGB.
      attention: float [h, w], the spatial map.
    Returns:
      uint8 [H, W, 3] RGB.
    Raises:
      ValueError: a face that is not [H, W, 3] or a map that is not 2-D.
    """
    import cv2

    face = np.asarray(face)
    attention = np.asarray(attention, np.float32)
    if face.ndim != 3 or face.shape[-1] != 3 or attention.ndim != 2:
        raise ValueError(f"overlay needs an RGB face [H, W, 3] and a 2-D map; got "
                         f"{face.shape} and {attention.shape}")
    low, span = float(attention.min()), float(np.ptp(attention))
    scaled = (attention - low) / span if span > 0 else np.zeros_like(attention)
    heat = cv2.resize(np.round(255 * scaled).astype(np.uint8), face.shape[1::-1],
                      interpolation=cv2.INTER_LINEAR)
    heat = cv2.cvtColor(cv2.applyColorMap(heat, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(face.astype(np.uint8), 1.0 - HEAT_SHARE, heat, HEAT_SHARE, 0.0)


def overlays_for(predictor) -> Callable[[Sequence[np.ndarray]], list[np.ndarray]] | None:
    """A function: uint8 [S, S, 3] RGB faces (any S) -> the same faces with the predictor's
    attention map overlaid (each face resized to the model's input for the map); None
    for a model without attention (:func:`keras_model`, :func:`map_model`)."""
    from tfdldl.inference import resize_square

    model = keras_model(predictor)
    maps = map_model(model) if model is not None else None
    if maps is None:
        return None

    def overlays(faces: Sequence[np.ndarray]) -> list[np.ndarray]:
        images = resize_square(np.stack(faces).astype(np.float32), predictor.input_size)
        return [overlay(face, attention)
                for face, attention in zip(faces, attention_maps(maps, images))]

    return overlays
