"""Synthetic pretraining at scale and publishing into the model zoo.

`pretrain` trains a co-hashing model (print + vein) on many synthetic identities of their own seed, drawn
from a universe no demo or test uses: captures are fresh every epoch and rendered as batches ask for them
(P x K batches, so each identity's template is drawn once per batch), nothing is held in memory but a bounded
template cache. It is an ordinary run folder: Ctrl-C or a kill keeps last.pt and `resume=True` continues.
`publish` turns a finished run into zoo/NAME.pt (float16 weights, identity centroids left out) and
zoo/NAME.json (the command, config and validation figures).
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

from biohash.errors import ConfigError
from biohash.train.data.config import DataConfig
from biohash.train.fit import FitConfig
from biohash.train.recipes.cohash import CohashConfig
from biohash.train.runs import RunError, read_config

# Seed of the pretraining universe of synthetic palms: other seeds (the demo's 0, the tests') draw other palms.
PRETRAIN_SEED = 7_000_003


def pretrain_data(identities: int, seed: int = PRETRAIN_SEED, image_size: int = 128) -> DataConfig:
    """Synthetic palms for pretraining: 4 listed captures per identity (validation enrolls 2 and probes 2;
    training draws fresh ones), 2 % of identities validate, 2 % are held out as a test."""
    if identities < 100:
        raise ConfigError(f"pretraining needs at least 100 synthetic identities, got {identities}")
    return DataConfig(dataset="synthetic", identities=identities, captures=4, image_size=image_size,
                      protocol="open", val_fraction=0.02, test_fraction=0.02, seed=seed, fresh_captures=True)


def pretrain(run_dir: Path, data: DataConfig, method: CohashConfig, fit_cfg: FitConfig, resume: bool = False,
             *, threads: int | None = None, workers: int = 1) -> Path:
    """Train (or resume) a pretraining run: co-hashing on `data` with P x K batches (4 captures of each
    identity) and `workers` processes rendering captures beside the training."""
    import dataclasses

    from biohash.train.train_job import train

    if data.dataset != "synthetic":
        raise ConfigError(f"pretraining draws synthetic palms; got dataset {data.dataset!r}")
    return train(run_dir, data, dataclasses.replace(method, per_identity=4),
                 dataclasses.replace(fit_cfg, workers=workers), resume=resume, threads=threads)


def publish(run_dir: Path, name: str, command: str, zoo_dir: Path | None = None) -> Path:
    """Write the run's selected weights to ZOO/NAME.pt (float16, centroids excluded) and its model card
    ZOO/NAME.json (command, config, validation history row of the chosen checkpoint, test metrics if any)."""
    from biohash.train.zoo import ZOO

    zoo_dir = Path(zoo_dir or ZOO)
    best = run_dir / "checkpoints" / "best.pt"
    if not best.is_file():
        raise RunError(f"{run_dir} has no best.pt: train it first")
    config = read_config(run_dir)
    if config.get("recipe") != "cohash":
        raise RunError(f"the zoo holds co-hashing models; {run_dir} is a {config.get('recipe')!r} run")
    state = torch.load(best, map_location="cpu", weights_only=False)
    weights = {k: v.half() if v.is_floating_point() else v for k, v in state["model"].items() if k != "centroids"}
    zoo_dir.mkdir(parents=True, exist_ok=True)
    torch.save(weights, zoo_dir / f"{name}.pt")
    history = _json_or(run_dir / "history.json", [])
    chosen: dict[str, Any] = next((row for row in history if row.get("epoch") == state.get("epoch")), {})
    card: dict[str, Any] = {
        "name": name, "command": command, "recipe": "cohash", "model": config["model"], "data": config["data"],
        "fit": config["fit"], "epoch": state.get("epoch"), "validation": chosen,
        "test": _json_or(run_dir / "metrics.json", None),
        "train_seconds": _json_or(run_dir / "train_time.json", {}).get("seconds"),
        "published": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "python": platform.python_version(),
        "bytes": (zoo_dir / f"{name}.pt").stat().st_size,
    }
    (zoo_dir / f"{name}.json").write_text(json.dumps(card, indent=2, default=str))
    return zoo_dir / f"{name}.pt"


def _json_or(path: Path, default: Any) -> Any:
    """A run file's JSON, or `default` where the run did not write it."""
    return json.loads(path.read_text()) if path.exists() else default
