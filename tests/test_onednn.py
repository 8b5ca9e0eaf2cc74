"""train.onednn: TensorFlow's oneDNN CPU kernels chosen by the config (model_setup.use_onednn)."""

import logging
import os
import subprocess
import sys

from tensorflow.python.util import _pywrap_util_port

from tfdldl import model_setup

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Loads TensorFlow, asks for oneDNN with a restart, and says what it ran with each time.
SCRIPT = """
import sys
import tensorflow
from tensorflow.python.util import _pywrap_util_port
from tfdldl.model_setup import use_onednn

print("loaded with oneDNN", _pywrap_util_port.IsMklEnabled(), flush=True)
use_onednn(sys.argv[1] == "on", restart_argv=[sys.executable, __file__, sys.argv[1]])
print("continues with oneDNN", _pywrap_util_port.IsMklEnabled(), flush=True)
"""


def test_a_process_loaded_with_the_other_setting_restarts_once_with_it(tmp_path):
    script = tmp_path / "onednn.py"
    script.write_text(SCRIPT)
    done = subprocess.run([sys.executable, str(script), "on"], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=600, check=False,
                          env=dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0",
                                   TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO_ROOT))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:3] == ["loaded with oneDNN False", "loaded with oneDNN True",
                                           "continues with oneDNN True"]


def test_without_a_restart_the_other_setting_is_a_warning_naming_the_variable(caplog):
    loaded = bool(_pywrap_util_port.IsMklEnabled())
    with caplog.at_level(logging.INFO, logger="tfdldl.train"):
        model_setup.use_onednn(loaded)
        assert not caplog.records
        model_setup.use_onednn(not loaded)
    assert f"{model_setup.ONEDNN_ENV}={int(not loaded)}" in caplog.text
