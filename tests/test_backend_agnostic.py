"""The core (layers, models, losses, metrics) is Keras 3 only and runs on other backends.

Two proofs: the four modules import no TensorFlow (read from their syntax tree), and a
subprocess under KERAS_BACKEND=torch (and jax) reproduces the TensorFlow results of tiny
models loaded from the same weights (one SGD step of learned loss weighting included).
"""

import ast
import importlib.util
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import backend_parity

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORE_MODULES = ("layers", "models", "losses", "metrics")


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_module_uses_no_tensorflow(module):
    path = os.path.join(REPO_ROOT, "tfdldl", f"{module}.py")
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), path)
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    assert not {name for name in imported if name.split(".")[0] == "tensorflow"}, imported
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    assert not names & {"tf", "tensorflow"}, f"{module}.py refers to TensorFlow"


@pytest.fixture(scope="module")
def tensorflow_reference(tmp_path_factory):
    """The reference results on TensorFlow, and the weights folder they came from."""
    assert keras.backend.backend() == "tensorflow"
    weights_dir = str(tmp_path_factory.mktemp("parity_weights"))
    return weights_dir, backend_parity.compute(weights_dir, write_weights=True)


# JAX compiles every eager op (weight initialisers included); without XLA's backend
# optimisations that takes half the time, and the numbers still match.
FAST_XLA = {"XLA_FLAGS": "--xla_backend_optimization_level=0"}


@pytest.mark.parametrize("backend, module, extra_env", [("torch", "torch", {}),
                                                        ("jax", "jax", FAST_XLA)],
                         ids=["torch", "jax"])
def test_other_backend_reproduces_tensorflow(backend, module, extra_env, tensorflow_reference,
                                             tmp_path):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"the {backend} backend is not installed (pip install {module}); .ci/run "
                    "installs it, so CI always runs this check")
    weights_dir, reference = tensorflow_reference
    out = str(tmp_path / f"{backend}.npz")
    env = {**os.environ, **extra_env, "KERAS_BACKEND": backend, "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": os.pathsep.join([REPO_ROOT, os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "tests", "backend_parity.py"),
                          weights_dir, out], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    other = dict(np.load(out))
    assert str(other.pop("backend")) == backend
    assert not bool(other.pop("tensorflow_imported")), f"{backend} run imported TensorFlow"
    assert sorted(other) == sorted(reference)
    assert len([k for k in reference if k.startswith("loss/")]) == 14
    for key, expected in reference.items():
        np.testing.assert_allclose(other[key], expected, rtol=2e-4, atol=2e-5, err_msg=key)
    # Learned loss weighting trains there too: one SGD step moves s_i by -lr·(1 - L_i).
    np.testing.assert_allclose(other["loss_weighting/log_variance"], -backend_parity.LEARNING_RATE
                               * (1.0 - other["loss_weighting/head_losses"]), rtol=1e-4,
                               atol=1e-6)
