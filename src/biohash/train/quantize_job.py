"""The quantization job: a trained hashing run becomes a low-bit copy, by embedding distillation on unlabeled
images or by post-training calibration (SyPer); the new run evaluates like its source."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, cast

import torch
from rich.console import Console

from biohash.train.data.config import DataConfig
from biohash.train.fit_config import FitConfig
from biohash.train.recipes.base import load_model
from biohash.train.runs import RunError, read_config, write_config, write_json
from biohash.train.train_job import clip_batch, write_environment


def quantize_run(source_run: Path, run_dir: Path, method: Any, fit_cfg: FitConfig | None,
                 threads: int | None = None) -> Path:
    """Quantize a trained hashing run to method.bits: distillation of its embeddings on unlabeled images
    (fit_cfg given) or plain post-training calibration (fit_cfg None). The new run evaluates like its source
    (same data and protocol); no checkpoint is chosen on labelled data: the final weights are the result."""
    from biohash.train.data.loaders import UnlabeledSet
    from biohash.train.devices import processes
    from biohash.train.fit import fit, save_checkpoint, seed_everything
    from biohash.train.recipes.quantize import build, calibrate, unlabeled_sources

    if processes().world > 1:
        raise RunError("quantization runs in one process (a single GPU is plenty): start it without torchrun")
    if (run_dir / "checkpoints" / "best.pt").exists():
        raise RunError(f"{run_dir} already holds a run; choose another --name")
    if threads:
        torch.set_num_threads(threads)
    console = Console()
    source_config, teacher = _hashing_teacher(source_run)
    source_data = DataConfig(**source_config["data"])
    seed = fit_cfg.seed if fit_cfg else 0
    seed_everything(seed)
    train_set = UnlabeledSet(unlabeled_sources(method, cast(tuple, teacher.modalities), source_data, seed),
                             source_data.image_size)
    if fit_cfg:
        fit_cfg = clip_batch(fit_cfg, len(train_set), console, "unlabeled images")
    batch_size = fit_cfg.batch_size if fit_cfg else min(64, len(train_set))
    loader = torch.utils.data.DataLoader(train_set, batch_size=batch_size, shuffle=True, drop_last=True)
    total_steps = len(loader) * (fit_cfg.epochs if fit_cfg else 0)
    student, step = build(method, teacher, total_steps=max(total_steps, 1))
    config = {"recipe": "quantize", "source": str(source_run), "source_config": source_config,
              "data": source_config["data"], "model": {**source_config["model"], "quant": dataclasses.asdict(method),
                                                       "ptq": fit_cfg is None},
              "fit": dataclasses.asdict(fit_cfg) if fit_cfg else None, "seed": seed}
    write_config(run_dir, config)
    write_environment(run_dir, fit_cfg)
    console.print(f"[bold]quantize[/] {source_run} -> {run_dir}: W{method.bits}A{method.bits}, "
                  f"{'distillation' if fit_cfg else 'post-training calibration'} on {len(train_set)} "
                  f"{method.source} images per branch")
    t0 = time.time()
    calibrate(student, loader)  # start the activation ranges from the data (the whole of PTQ)
    if fit_cfg is not None:
        fit(student, step, loader, fit_cfg, run_dir, validate=None, console=console)
    else:
        save_checkpoint(run_dir / "checkpoints" / "best.pt", {"model": student.state_dict(), "epoch": 0})
    write_json(run_dir / "train_time.json", {"seconds": time.time() - t0})
    return run_dir


def _hashing_teacher(source_run: Path) -> tuple[dict[str, Any], torch.nn.Module]:
    """The config and selected model of a trained hashing run (what quantization distils)."""
    from biohash.train.recipes.base import get_recipe

    source_config = read_config(source_run)
    source_recipe = get_recipe(source_config.get("recipe"), source_config.get("recipe_module"))
    if source_recipe.produces != "codes" or not source_recipe.trains:
        raise RunError(f"{source_run} is a {source_config.get('recipe')!r} run; quantization distils trained "
                       f"hashing runs (cohash, dhn, distill)")
    return source_config, load_model(source_run, source_config)
