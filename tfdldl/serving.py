"""Client-side helpers for TensorFlow Serving (REST and gRPC) of tfdldl SavedModels.

REST (port 8501): :func:`rest_body` builds the JSON a ``POST /v1/models/<name>:predict``
takes, :func:`rest_url` its address, :func:`parse_rest_response` reads the answer.
gRPC (port 8500): :func:`predict_request` builds a ``tensorflow.serving.PredictRequest``,
:func:`grpc_predict` sends it, :func:`response_outputs` reads the ``PredictResponse``.

:func:`run_request` answers a PredictRequest with a SavedModel loaded in this process: the
same proto -> signature -> proto path the server takes, which is how the tests check the
requests (the TF Serving binary itself is not installable on the development machine).

Needs the ``serving`` extra (``pip install tensorflow-serving-api``) for the gRPC parts.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Mapping, Sequence

import numpy as np

from tfdldl.export import ERROR_OUTPUT, INPUT_NAME, SERVING_DEFAULT, encoded_list

DEFAULT_TIMEOUT_S = 10.0


def rest_body(encoded: Sequence[bytes], signature_name: str = SERVING_DEFAULT) -> str:
    """The JSON body of a TF Serving REST predict call for N encoded face images.

    Args:
      encoded: JPEG/PNG bytes of N aligned faces.
      signature_name: "serving_default" or "serving_flip_averaged".
    Returns:
      ``{"signature_name": ..., "instances": [{"b64": "..."}, ...]}`` as a string (the
      server base64-decodes each instance into the tf.string ``images`` input).
    """
    instances = [{"b64": base64.b64encode(data).decode("ascii")}
                 for data in encoded_list(encoded)]
    return json.dumps({"signature_name": signature_name, "instances": instances})


def rest_url(model_name: str, host: str = "localhost", port: int = 8501,
             version: int | None = None) -> str:
    """``http://host:port/v1/models/<name>[/versions/<v>]:predict``."""
    pinned = f"/versions/{int(version)}" if version is not None else ""
    return f"http://{host}:{port}/v1/models/{model_name}{pinned}:predict"


def parse_rest_response(text: str | bytes) -> dict[str, np.ndarray]:
    """TF Serving's REST answer (row format: one dict per instance) -> {output: array [N, ...]}.

    Numeric outputs become float32 arrays; the ``error`` output (per-image reason, "" for
    a decoded image) an array of str.

    Raises:
      ValueError: the answer is an error message from the server, or not a predict answer.
    """
    answer = json.loads(text)
    if "error" in answer:
        raise ValueError(f"TF Serving refused the request: {answer['error']}")
    if "predictions" not in answer:
        raise ValueError(f"not a TF Serving predict answer (keys {sorted(answer)})")
    rows = answer["predictions"]
    if not rows or not isinstance(rows[0], dict):  # a signature with a single output
        return {"output": np.asarray(rows, np.float32)}
    return {key: np.asarray([row[key] for row in rows],
                            str if key == ERROR_OUTPUT else np.float32) for key in rows[0]}


def predict_request(model_name: str, images: Sequence[bytes] | np.ndarray,
                    signature_name: str = SERVING_DEFAULT, version: int | None = None):
    """A ``tensorflow.serving.PredictRequest`` for a tfdldl SavedModel.

    Args:
      model_name: the name TF Serving serves the model under (models.config ``name``).
      images: for "serving_default" / "serving_flip_averaged", N encoded images (bytes);
        for "predict_images", float [N, H, W, 3] RGB 0..255.
      signature_name: which signature to run.
      version: pin a model version; None lets the server pick its latest.
    Returns:
      predict_pb2.PredictRequest with the ``images`` input filled.
    """
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    if isinstance(images, np.ndarray):
        tensor = tf.make_tensor_proto(np.asarray(images, np.float32))
    else:
        encoded = encoded_list(images)
        tensor = tf.make_tensor_proto(encoded, dtype=tf.string, shape=[len(encoded)])
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = int(version)
    request.inputs[INPUT_NAME].CopyFrom(tensor)
    return request


def request_inputs(request) -> dict[str, np.ndarray]:
    """A PredictRequest's inputs as arrays (tf.string ones as object arrays of bytes)."""
    import tensorflow as tf

    return {key: tf.make_ndarray(proto) for key, proto in request.inputs.items()}


def response_outputs(response) -> dict[str, np.ndarray]:
    """A PredictResponse's outputs as arrays: {"value" [N], "stddev" [N], "distribution" [N, K]}."""
    import tensorflow as tf

    return {key: tf.make_ndarray(proto) for key, proto in response.outputs.items()}


def run_request(signatures: Mapping[str, Any], request):
    """Answer ``request`` with signatures loaded in this process, as the server would.

    Args:
      signatures: ``tf.saved_model.load(path).signatures`` (or ``load_serving(path).signatures``).
      request: a PredictRequest; an empty signature name means "serving_default".
    Returns:
      predict_pb2.PredictResponse with every output of the signature.
    Raises:
      KeyError: the request names a signature the model lacks.
    """
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    name = request.model_spec.signature_name or SERVING_DEFAULT
    if name not in signatures:
        raise KeyError(f"the model has no signature '{name}' (it has {sorted(signatures)})")
    inputs = {key: tf.constant(value) for key, value in request_inputs(request).items()}
    outputs = signatures[name](**inputs)
    response = predict_pb2.PredictResponse()
    response.model_spec.CopyFrom(request.model_spec)
    response.model_spec.signature_name = name
    for key, value in outputs.items():
        response.outputs[key].CopyFrom(tf.make_tensor_proto(value.numpy()))
    return response


def grpc_predict(target: str, request, timeout_s: float = DEFAULT_TIMEOUT_S):
    """Send ``request`` to a TF Serving gRPC endpoint (e.g. "localhost:8500").

    Returns:
      predict_pb2.PredictResponse; read it with :func:`response_outputs`.
    """
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return stub.Predict(request, timeout=timeout_s)
