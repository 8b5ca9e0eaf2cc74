"""Command-line plumbing shared by the tfdldl and data_prep entry points (absl flags).

Every CLI runs through :func:`run_main`, which keeps TensorFlow's start-up chatter (CUDA
probing on machines without a GPU, CPU-feature notes) off the terminal: the C++ log level
defaults to errors-only-fatal (``TF_CPP_MIN_LOG_LEVEL=3``, unless set) and the lines
TensorFlow's native libraries print while loading are captured and shown only when the
import fails, or always with ``TFDLDL_VERBOSE=1``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from typing import Callable, Iterator, Sequence

VERBOSE_ENV = "TFDLDL_VERBOSE"
# TensorFlow's switch for its oneDNN CPU kernels, read once when TensorFlow loads. TensorFlow
# turns them on by itself only on CPUs with AVX512-VNNI, AVX512-BF16 or AMX; on an AVX2-only
# CPU (this project's 2-core AMD EPYC) they make the TinyAgeNet training step ~1.5-1.8x
# faster (benchmarks/bench_train_cpu.py: 70.8 vs 45.7 images per CPU-second, XLA 47.8) and
# cut, per 200 px UTKFace chip, MTCNN's CPU time from 22 to 15 ms and the flip-averaged
# model's from 11.5 to 8.5 ms; same maths, other float round-off (ages within 0.011 years).
ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"
# absl's help flags; absl exits with status 1 after printing help, these CLIs with 0.
HELP_FLAGS = ("-h", "-?", "--help", "--helpshort", "--helpfull", "--helpxml")


def define_config_flags(example: str, required: bool = True) -> None:
    """Define ``--config PATH`` and the repeatable ``--set dotted.key=value`` override.

    The flags count as the calling CLI's own, so its ``--help`` lists them.

    Args:
      example: a config path shown in the help text.
      required: whether ``--config`` must be given.
    """
    from absl import flags

    # Attribute the flags below to the module that called us (shown by its --help).
    flags.disclaim_key_flags()
    flags.DEFINE_string("config", None, f"Config YAML, e.g. {example}.", required=required)
    flags.DEFINE_multi_string("set", [], "Override a config value: --set train.epochs=3 "
                              "(repeatable; the value is YAML).")


def quiet_environment() -> None:
    """Default TensorFlow's C++ logging to fatal errors only (a set value is kept)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def use_onednn() -> bool:
    """Ask TensorFlow for its oneDNN CPU kernels (:data:`ONEDNN_ENV`), unless the
    environment already says either way (``TF_ENABLE_ONEDNN_OPTS=0`` turns them off).

    train, evaluate and predict do this before they import TensorFlow
    (:func:`import_tensorflow_quietly`), and so do ``tfdldl.AgeEstimator`` and predict's
    benchmark. data_prep.build does not: with oneDNN, MTCNN's landmarks carry round-off
    that depends on which photos are detected together, so aligned faces would no longer
    be byte-identical to those of earlier builds.

    Returns:
      Whether TensorFlow in this process uses them: False when the environment turns them
      off, or when TensorFlow was imported before the switch was set (then only child
      processes get them).
    """
    imported_without = "tensorflow" in sys.modules and ONEDNN_ENV not in os.environ
    os.environ.setdefault(ONEDNN_ENV, "1")
    return not imported_without and os.environ[ONEDNN_ENV].strip().lower() in ("1", "true")


@contextlib.contextmanager
def captured_native_stderr() -> Iterator[list[str]]:
    """Send file descriptor 2 (what C/C++ code prints) to a temporary file for the block.

    Yields a list that holds the captured text once the block ends. Python's own
    ``sys.stderr`` writes made inside the block are captured too.
    """
    captured: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.append(sink.read().decode("utf-8", "replace"))


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with its loading messages captured (see the module doc) and its
    oneDNN kernels asked for (:func:`use_onednn`).

    Raises:
      ImportError: TensorFlow does not import; the captured messages are printed first.
    """
    quiet_environment()
    use_onednn()
    if "tensorflow" in sys.modules or os.environ.get(VERBOSE_ENV) == "1":
        import tensorflow  # noqa: F401  (already loaded, or the user wants the messages)
        return
    with captured_native_stderr() as captured:
        try:
            import tensorflow  # noqa: F401
            failed = False
        except ImportError:
            failed = True
    if failed:
        sys.stderr.write("".join(captured))
        import tensorflow  # noqa: F401,F811  (raises the error again, with its traceback)


def spelled_for_absl(argv: Sequence[str], flag_values=None) -> list[str]:
    """``argv`` with each ``--no_NAME`` of a boolean flag NAME (``--no_progress``) spelled
    as absl's ``--noNAME``, so that every switch is turned off as the README writes it
    (``--no_flip``, ``--no_report`` are flags of their own; absl's ``--noNAME`` keeps
    working, where absl alone answers ``--no_progress`` with "Did you mean: progress?", the
    opposite). A defined flag named ``no_NAME`` and anything after ``--`` are left as
    they are.

    Args:
      argv: the command line, program name first.
      flag_values: the absl FlagValues holding the flags (default: absl's FLAGS).
    """
    from absl import flags

    flag_values = flags.FLAGS if flag_values is None else flag_values
    spelled = list(argv[:1])
    for index, arg in enumerate(argv[1:], start=1):
        if arg == "--":
            return spelled + list(argv[index:])
        name = arg.lstrip("-")
        switch = name[len("no_"):]
        if (arg.startswith("-") and name.startswith("no_") and name not in flag_values
                and switch in flag_values and flag_values[switch].boolean):
            arg = arg[:len(arg) - len(name)] + "no" + switch
        spelled.append(arg)
    return spelled


def _parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing (``--no_NAME`` read as ``--noNAME``: :func:`spelled_for_absl`),
    exiting with status 2 (bad flags, as the CLIs document) where absl exits with 1 on a
    flag it cannot parse; help keeps absl's exit (see run_main)."""
    from absl import app

    try:
        return app.parse_flags_with_usage(spelled_for_absl(argv))
    except SystemExit as exit_:
        if exit_.code == 1 and not any(arg in HELP_FLAGS for arg in argv[1:]):
            raise SystemExit(2) from None
        raise


def run_main(main: Callable[[Sequence[str]], int | None],
             define_flags: Callable[[], None]) -> None:
    """Define the flags, then run ``main(argv)`` under absl; its return value is the exit code.

    A flag that does not parse (unknown, bad value, required and missing) exits with
    status 2. ``--help`` answers before anything heavy is imported (when the CLI's module
    imports nothing heavy at its top) and exits with status 0. ``main`` imports TensorFlow
    (:func:`import_tensorflow_quietly`) once it has checked its flags and files, so that
    a typo is reported within a second, not after TensorFlow's seconds-long import; CLIs
    that may run without TensorFlow (Keras on JAX) never import it.
    """
    from absl import app

    quiet_environment()
    define_flags()

    try:
        app.run(main, flags_parser=_parse_flags)
    except SystemExit as exit_:
        if exit_.code == 1 and any(arg in HELP_FLAGS for arg in sys.argv[1:]):
            raise SystemExit(0) from None  # help was asked for and given: a success
        raise
