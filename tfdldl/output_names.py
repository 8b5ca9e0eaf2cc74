"""The models' output names: the serving contract (tfdldl.heads owns the heads behind them).

Kept free of Keras and TensorFlow so that modules that only read outputs by name (the
predictors, the command lines answering --help) can import them cheaply.
"""

VALUE = "value"
STDDEV = "stddev"
DISTRIBUTION = "distribution"
RANKING = "ranking"
GENDER_PROBABILITY = "gender_probability"
