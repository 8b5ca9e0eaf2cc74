"""tfdldl: DLDL-v2 facial age and attractiveness estimation on TensorFlow / Keras 3.

The core (label spaces, layers, models, losses, metrics) is backend-agnostic Keras 3;
TensorFlow appears only in the input pipeline, distribution, export and serving code.
"""

__version__ = "0.1.0"
