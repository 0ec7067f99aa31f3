"""Rebuild a run's model from its config.yaml and load its validation-selected checkpoint (torch stack: used by
jobs, export and the encoder). The run's recipe does the rebuilding."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from biohash.recipes.base import get_recipe
from biohash.runs import RunError, read_config


def build_untrained(config: dict[str, Any]) -> torch.nn.Module:
    """The untrained model of a run's recipe, shaped by its config."""
    return get_recipe(config.get("recipe"), config.get("recipe_module")).rebuild(config)


def load_model(run_dir: Path, config: dict[str, Any] | None = None) -> torch.nn.Module:
    """Rebuild a run's model and load its best (validation-selected) checkpoint."""
    config = config or read_config(run_dir)
    model = build_untrained(config)
    best = run_dir / "checkpoints" / "best.pt"
    if not best.is_file():
        raise RunError(f"{run_dir} has no checkpoints/best.pt: training did not finish an epoch")
    model.load_state_dict(torch.load(best, map_location="cpu", weights_only=False)["model"])
    return model.eval()
