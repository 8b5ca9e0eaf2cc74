"""tfdldl: DLDL-v2 facial age and attractiveness estimation on TensorFlow / Keras 3.

One call from a photo to its faces' ages (see :mod:`tfdldl.api`)::

    import tfdldl
    faces = tfdldl.AgeEstimator().predict("photo.jpg")   # box, age, interval per face

The core (label spaces, layers, models, losses, metrics) is backend-agnostic Keras 3;
TensorFlow appears only in the input pipeline, distribution, export and serving code.

A ``.keras`` file written by tfdldl (e.g. ``runs/<run>/model.keras``) reloads, compiled, with
nothing but this package imported::

    import keras
    import tfdldl  # registers tfdldl's Keras layers, losses and metrics
    model = keras.saving.load_model("runs/<run>/model.keras")

``import tfdldl`` itself stays light: it registers those objects when Keras is imported
(at once when it already is), so command-line ``--help`` never waits for Keras.
"""

import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

_API = ("AgeEstimator", "Face")


def __getattr__(name):
    """``tfdldl.AgeEstimator`` and ``tfdldl.Face``, imported on first use (TensorFlow is heavy)."""
    if name in _API:
        from tfdldl import api

        return getattr(api, name)
    raise AttributeError(f"module 'tfdldl' has no attribute {name!r}")


def register_keras_objects() -> None:
    """Register tfdldl's Keras layers, losses and metrics (the classes ``.keras`` files name)."""
    from tfdldl import layers, loss_weighting, losses, metrics  # noqa: F401  (each registers)


class _RegisterWhenKerasLoads(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the loading of ``keras`` so that
    :func:`register_keras_objects` runs right after it, then steps aside."""

    def find_spec(self, name, path, target=None):
        if name != "keras":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            register_keras_objects()

        spec.loader.exec_module = exec_module
        return spec


if "keras" in sys.modules:
    register_keras_objects()
elif not any(isinstance(finder, _RegisterWhenKerasLoads) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterWhenKerasLoads())
