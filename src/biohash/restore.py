"""Rebuild a run's model from its config.yaml and load its validation-selected checkpoint (torch stack: used by
jobs, export and the encoder)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from biohash.runs import RunError, read_config


def _cohash_parts(config: dict[str, Any]):
    from biohash.recipes.cohash import CohashConfig

    model_cfg = dict(config["model"])
    n_classes, modalities = model_cfg.pop("n_classes"), tuple(model_cfg.pop("modalities"))
    model_cfg["init"] = None  # a trained run loads its own checkpoint; the warm-start source may be gone
    return CohashConfig(**model_cfg), n_classes, modalities



def build_untrained(config: dict[str, Any]) -> torch.nn.Module:
    """The untrained model of a run's recipe, shaped by its config."""
    recipe = config.get("recipe")
    seed = (config.get("fit") or {}).get("seed", 0)
    if recipe == "cohash":
        from biohash.recipes.cohash import build

        method, n_classes, modalities = _cohash_parts(config)
        return build(method, n_classes, modalities, seed=seed)[0]
    if recipe in ("dhn", "distill"):
        from biohash.models.hashnet import HashClassifier

        m = config["model"]
        return HashClassifier(m["backbone"], m["bits"], m["n_classes"], m["modality"], head=m.get("head", "avg"))
    if recipe == "gpa":
        from biohash.recipes.gpa import GpaConfig

        m = dict(config["model"])
        n_classes = m.pop("n_classes")
        m["weights"] = None  # the checkpoint holds the trained weights
        return GpaConfig(**m).network(n_classes)
    if recipe == "quantize":
        from biohash.models.quant import quantize_model

        return quantize_model(build_untrained(config["source_config"]), config["model"]["quant"]["bits"])
    raise RunError(f"recipe {recipe!r} cannot be evaluated (expected cohash, dhn, distill, gpa or quantize)")



def load_model(run_dir: Path, config: dict[str, Any] | None = None) -> torch.nn.Module:
    """Rebuild a run's model and load its best (validation-selected) checkpoint."""
    config = config or read_config(run_dir)
    model = build_untrained(config)
    best = run_dir / "checkpoints" / "best.pt"
    if not best.is_file():
        raise RunError(f"{run_dir} has no checkpoints/best.pt: training did not finish an epoch")
    model.load_state_dict(torch.load(best, map_location="cpu", weights_only=False)["model"])
    return model.eval()
