"""Command-line plumbing shared by the tfdldl and data_prep entry points (absl flags)."""

from __future__ import annotations

import os
from typing import Callable, Sequence


def define_config_flags(example: str, required: bool = True) -> None:
    """Define ``--config PATH`` and the repeatable ``--set dotted.key=value`` override.

    Args:
      example: a config path shown in the help text.
      required: whether ``--config`` must be given.
    """
    from absl import flags

    flags.DEFINE_string("config", None, f"Config YAML, e.g. {example}.", required=required)
    flags.DEFINE_multi_string("set", [], "Override a config value: --set train.epochs=3 "
                              "(repeatable; the value is YAML).")


def run_main(main: Callable[[Sequence[str]], int | None], define_flags: Callable[[], None]) -> None:
    """Define the flags, then run ``main(argv)`` under absl; its return value is the exit code."""
    from absl import app

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    define_flags()
    app.run(main)
