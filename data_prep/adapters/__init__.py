"""Dataset adapters: one small reader per label format, chosen by name in the data config.

``make_adapter(name, **options)`` builds one from the config's ``adapter`` section::

    adapter:
      name: utkface
      options: {root: ../shared/datasets/utkface/images}

=================  ==============================================  ========================
name               reads                                           options
=================  ==============================================  ========================
utkface            ``AGE_GENDER_RACE_DATETIME.jpg.chip.jpg`` names root
fgnet              ``001A02.JPG`` names (subject 001, age 2)       root
benchmark_json     Facial Age Estimation Benchmark database JSON   labels, root, check_files
chalearn_csv       ChaLearn LAP / APPA-REAL apparent-age CSV       labels, root, target,
                                                                   name_suffix, check_files
scut_fbp5500       SCUT-FBP5500 ``NAME SCORE`` 5-fold split files  labels, root, fold,
                                                                   check_files
generic_csv        ``path,label[,sigma][,subject][,gender]``       labels, root, check_files
=================  ==============================================  ========================

Every adapter yields :class:`~data_prep.adapters.base.Record` and
:class:`~data_prep.adapters.base.Skip` objects in a deterministic order; see each module.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from data_prep.adapters.base import Adapter, Record, Skip
from data_prep.adapters.benchmark_json import BenchmarkJson
from data_prep.adapters.chalearn import ChaLearnCsv
from data_prep.adapters.common import AdapterError
from data_prep.adapters.fgnet import FGNet
from data_prep.adapters.generic_csv import GenericCsv
from data_prep.adapters.scut_fbp import ScutFbp5500
from data_prep.adapters.utkface import UTKFace
from tfdldl.config import from_dict

ADAPTERS: dict[str, type] = {
    "utkface": UTKFace,
    "fgnet": FGNet,
    "benchmark_json": BenchmarkJson,
    "chalearn_csv": ChaLearnCsv,
    "scut_fbp5500": ScutFbp5500,
    "generic_csv": GenericCsv,
}

__all__ = ["ADAPTERS", "Adapter", "AdapterError", "Record", "Skip", "make_adapter"]


def make_adapter(name: str, **options: Any) -> Adapter:
    """The adapter registered as ``name``, built from ``options``.

    Raises:
      tfdldl.config.ConfigError (AdapterError for the first two): an unknown name (the
        message lists the known ones), missing options, unknown options, options of the
        wrong type or value.
      FileNotFoundError: a root folder or label file that does not exist.
    """
    if name not in ADAPTERS:
        raise AdapterError(f"unknown adapter '{name}'; known adapters: "
                           f"{', '.join(sorted(ADAPTERS))}")
    schema = ADAPTERS[name]
    fields = dataclasses.fields(schema)
    required = [field.name for field in fields
                if field.default is dataclasses.MISSING
                and field.default_factory is dataclasses.MISSING]
    missing = [option for option in required if option not in options]
    if missing:
        raise AdapterError(
            f"adapter '{name}' needs option(s) {', '.join(missing)} (its options: "
            f"{', '.join(field.name for field in fields)}); set them under adapter.options")
    return from_dict(schema, options, source=f"adapter '{name}'", prefix="adapter.options")
