"""tfdldl: DLDL-v2 facial age and attractiveness estimation on TensorFlow / Keras 3.

One call from a photo to its faces' ages (see :mod:`tfdldl.api`)::

    import tfdldl
    faces = tfdldl.AgeEstimator().predict("photo.jpg")   # box, age, interval per face

The core (label spaces, layers, models, losses, metrics) is backend-agnostic Keras 3;
TensorFlow appears only in the input pipeline, distribution, export and serving code.
"""

__version__ = "0.1.0"

_API = ("AgeEstimator", "Face")


def __getattr__(name):
    """``tfdldl.AgeEstimator`` and ``tfdldl.Face``, imported on first use (TensorFlow is heavy)."""
    if name in _API:
        from tfdldl import api

        return getattr(api, name)
    raise AttributeError(f"module 'tfdldl' has no attribute {name!r}")
