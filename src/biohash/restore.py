"""Rebuild a run's model from its config.yaml and load its validation-selected checkpoint. The functions live
in biohash.recipes.base (the recipe contract's rebuilding half); this module keeps the old import path."""
from __future__ import annotations

from biohash.recipes.base import build_untrained, load_model

__all__ = ["build_untrained", "load_model"]
