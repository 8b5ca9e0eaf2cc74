"""tfdldl.serving: TF Serving request protos and REST bodies against a real exported model.

The TF Serving binary is not installable here, so a PredictRequest is answered by the
SavedModel's own signature (:func:`tfdldl.serving.run_request`), once in-process and once
behind a real gRPC server on 127.0.0.1 that implements TF Serving's PredictionService.
"""

import base64
import json
from concurrent import futures

import cv2
import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tfdldl import export, serving

SIZE = 64  # the session's untrained tiny model (tests/conftest.py)


def jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8), (5, 5), 0)
    return cv2.imencode(".jpg", image)[1].tobytes()


@pytest.fixture(scope="module")
def served(untrained_tiny_model):
    """The session's tiny untrained SavedModel (64 px), loaded."""
    return export.load_serving(untrained_tiny_model[0])


def test_predict_request_round_trips_encoded_images_exactly(served):
    encoded = [jpeg(seed) for seed in range(4)]
    request = serving.predict_request("tiny", encoded, version=1)
    assert request.model_spec.name == "tiny" and request.model_spec.version.value == 1
    assert request.model_spec.signature_name == "serving_default"
    inputs = serving.request_inputs(request)
    assert list(inputs) == ["images"] and inputs["images"].shape == (4,)
    assert list(inputs["images"]) == encoded
    wire = predict_pb2.PredictRequest.FromString(request.SerializeToString())
    outputs = serving.response_outputs(serving.run_request(served.signatures, wire))
    expected = served(encoded)
    assert sorted(outputs) == ["distribution", "error", "stddev", "value"]
    for key, value in expected.items():
        np.testing.assert_array_equal(outputs[key], value)


def test_predict_request_for_float_images(served):
    images = np.random.default_rng(0).uniform(0, 255, (2, SIZE, SIZE, 3)).astype(np.float32)
    request = serving.predict_request("tiny", images, signature_name="predict_images")
    np.testing.assert_array_equal(serving.request_inputs(request)["images"], images)
    outputs = serving.response_outputs(serving.run_request(served.signatures, request))
    np.testing.assert_array_equal(outputs["value"], served.predict_images(images)["value"])
    request.model_spec.signature_name = "classify"
    with pytest.raises(KeyError, match="no signature 'classify'"):
        serving.run_request(served.signatures, request)


class _SavedModelService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """TF Serving's Predict RPC answered by a loaded SavedModel (stands in for the binary)."""

    def __init__(self, signatures):
        self.signatures = signatures

    def Predict(self, request, context):  # noqa: N802 (gRPC method name)
        return serving.run_request(self.signatures, request)


def test_grpc_client_against_a_local_prediction_service(served):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        _SavedModelService(served.signatures), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        encoded = [jpeg(seed) for seed in range(3)]
        request = serving.predict_request("tiny", encoded, "serving_flip_averaged")
        response = serving.grpc_predict(f"127.0.0.1:{port}", request)
    finally:
        server.stop(grace=None)
    assert response.model_spec.signature_name == "serving_flip_averaged"
    np.testing.assert_array_equal(serving.response_outputs(response)["value"],
                                  served.predict_flip_averaged(encoded)["value"])


def test_rest_body_is_json_with_b64_instances(served):
    encoded = [jpeg(seed) for seed in range(3)]
    body = json.loads(serving.rest_body(encoded))
    assert body["signature_name"] == "serving_default"
    assert [base64.b64decode(item["b64"]) for item in body["instances"]] == encoded
    decoded = [base64.b64decode(item["b64"]) for item in body["instances"]]
    predictions = served(decoded)
    # TF Serving's row-format answer: one {output: value} object per instance.
    rows = [{key: (predictions[key][i].decode() if key == "error"
                   else predictions[key][i].tolist()) for key in predictions} for i in range(3)]
    parsed = serving.parse_rest_response(json.dumps({"predictions": rows}))
    assert parsed["error"].tolist() == ["", "", ""]
    np.testing.assert_allclose(parsed["distribution"], predictions["distribution"], rtol=1e-6)
    assert serving.rest_url("tiny", version=2) == \
        "http://localhost:8501/v1/models/tiny/versions/2:predict"
    with pytest.raises(ValueError, match="TF Serving refused the request: bad image"):
        serving.parse_rest_response('{"error": "bad image"}')
    with pytest.raises(TypeError, match="not a single bytes object"):
        serving.rest_body(encoded[0])
