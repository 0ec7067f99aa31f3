"""biohash: compact, fast biometric hashing for palm print, palm vein, whole-hand and periocular images.

The public API. Codes, metrics and matchers (the numpy stack) are imported here; the store, the deployment
and the training entry points are imported on first use, so `import biohash` never pulls in torch.
Subpackages: match (numpy matching), imaging (pixels in), serve (deployment), train (torch), cli.
"""
from __future__ import annotations

import importlib
from typing import Any

from biohash.errors import BiohashError
from biohash.match import metrics
from biohash.match.codes import (
    asymmetric_distance,
    asymmetric_similarity,
    binarize,
    from_real,
    hamming,
    pack,
    relaxed_from_real,
    similarity,
    unpack,
)
from biohash.match.matching import make_matcher
from biohash.match.scores import read_score_file, write_score_file
from biohash.match.types import Codes, RelaxedCodes, Sample, Scores, Template

__version__ = "0.1.0"

_ON_FIRST_USE = {  # name -> (module, its name there); serve needs no torch, train does
    "Deployment": ("biohash.serve.deployment", "Deployment"),
    "open_store": ("biohash.serve.store", "open_store"),
    "DataConfig": ("biohash.train.data.config", "DataConfig"),
    "open_dataset": ("biohash.train.data.datasets", "open_dataset"),
    "FitConfig": ("biohash.train.fit_config", "FitConfig"),
    "train_run": ("biohash.train.train_job", "train"),  # `biohash.train` is the subpackage
    "evaluate_run": ("biohash.train.eval_run", "evaluate_run"),
    "quantize_run": ("biohash.train.quantize_job", "quantize_run"),
    "export_run": ("biohash.train.export", "export_run"),
    "load_model": ("biohash.train.recipes.base", "load_model"),
    "read_config": ("biohash.train.runs", "read_config"),
}

__all__ = ["BiohashError", "Codes", "RelaxedCodes", "Sample", "Scores", "Template", "__version__",
           "asymmetric_distance", "asymmetric_similarity", "binarize", "from_real", "hamming", "make_matcher", "metrics",
           "pack", "read_score_file", "relaxed_from_real", "similarity", "unpack", "write_score_file", *_ON_FIRST_USE]


def __getattr__(name: str) -> Any:
    if name in _ON_FIRST_USE:
        module, attribute = _ON_FIRST_USE[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'biohash' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_ON_FIRST_USE))
