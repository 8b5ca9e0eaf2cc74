"""TensorFlow's oneDNN CPU kernels: train, evaluate and predict ask for them before TensorFlow
loads (tfdldl.cli.use_onednn), and a user's TF_ENABLE_ONEDNN_OPTS wins."""

import os
import subprocess
import sys

from tfdldl.cli import ONEDNN_ENV, use_onednn

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What a command does before its work: import TensorFlow the tfdldl way, then say whether
# TensorFlow's kernels are oneDNN's.
SCRIPT = ("from tfdldl import cli; cli.import_tensorflow_quietly(); "
          "from tensorflow.python.util import _pywrap_util_port; "
          "print(_pywrap_util_port.IsMklEnabled())")


def _loaded_with_onednn(environment: dict) -> str:
    env = {key: value for key, value in os.environ.items() if key != ONEDNN_ENV}
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=300, check=False,
                          env={**env, "PYTHONPATH": REPO_ROOT, **environment})
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_commands_load_tensorflow_with_onednn_unless_the_user_says_no():
    assert _loaded_with_onednn({}) == "True"
    assert _loaded_with_onednn({ONEDNN_ENV: "0"}) == "False"


def test_use_onednn_keeps_the_users_choice_and_says_when_it_is_too_late(monkeypatch):
    monkeypatch.setenv(ONEDNN_ENV, "0")
    assert not use_onednn() and os.environ[ONEDNN_ENV] == "0"
    monkeypatch.delenv(ONEDNN_ENV)
    import tensorflow  # noqa: F401  (loaded without the switch: too late for this process)

    assert not use_onednn() and os.environ[ONEDNN_ENV] == "1"
