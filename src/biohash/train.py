"""A thin fit loop: optimiser, schedule, progress bar, validation, best-on-validation checkpoints, resume.

It knows nothing about any method: a recipe hands it a model and a step returning {"loss": ..., parts...},
and the caller hands it a `validate(model) -> dict` on the validation split (never the test split).
"""
from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from biohash.fit_config import FitConfig
from biohash.runs import RunError, write_json

__all__ = ["FitConfig", "fit", "lr_factor", "save_checkpoint", "seed_everything"]  # FitConfig lives in fit_config

def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_optimizer(params: Iterable[torch.nn.Parameter] | list[dict], cfg: FitConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_factor(cfg: FitConfig, epoch: float) -> float:
    """Multiplier of the base lr at a (fractional) epoch: linear warm-up, then the schedule."""
    if epoch < cfg.warmup_epochs:
        return (epoch + 1e-3) / cfg.warmup_epochs
    if cfg.schedule == "cosine":
        span = max(cfg.epochs - cfg.warmup_epochs, 1)
        return 0.5 * (1 + math.cos(math.pi * (epoch - cfg.warmup_epochs) / span))
    if cfg.schedule == "step":
        return 0.1 ** int(epoch // max(cfg.epochs // 3, 1))
    return 1.0


def save_checkpoint(path: Path, state: dict) -> None:
    """Write a checkpoint atomically (a crash never leaves a torn file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _save(path, state)


def _save(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # atomic: a crash never leaves a torn checkpoint


def _better(value: float, best: float | None, monitor: str) -> bool:
    if best is None:
        return True
    return value > best if monitor.endswith(("acc", "rank1", "map", "tar")) else value < best


def fit(model: torch.nn.Module, step: Callable, loader: torch.utils.data.DataLoader, cfg: FitConfig,
        run_dir: Path, validate: Callable[[torch.nn.Module], dict[str, float]] | None = None,
        console: Console | None = None) -> list[dict]:
    """Train `model` for cfg.epochs, resuming from run_dir/checkpoints/last.pt when it exists.

    Every epoch appends a row (mean of each loss part, lr, validation metrics) to history.json. The
    checkpoint with the best validation `cfg.monitor` is kept as best.pt. Ctrl-C saves last.pt at the
    start of the interrupted epoch and re-raises, so the run can be resumed.
    """
    console = console or Console()
    ckpt_dir = run_dir / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    # a model may ask for parameter groups with their own lr multiplier ("lr_scale"), e.g. a pretrained
    # backbone at a tenth of the new layers' rate
    optimizer = make_optimizer(model.param_groups() if hasattr(model, "param_groups") else model.parameters(), cfg)
    last = ckpt_dir / "last.pt"
    start, best, history = _resume(last, model, optimizer, cfg, console)

    def snapshot(epoch: int) -> dict:
        return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch, "best": best,
                "history": history, "torch_rng": torch.get_rng_state()}

    if len(loader) == 0:
        raise RunError(f"no training step: {len(loader.dataset)} training items make no full batch (batch size "
                       f"{cfg.batch_size}); lower --batch-size or add data")
    epoch, started = start, time.monotonic()
    try:
        with _progress(console) as progress:
            task = progress.add_task("fit", total=len(loader), epoch=f"{start + 1}/{cfg.epochs}", info="")
            for epoch in range(start, cfg.epochs):
                _set_epoch(loader, epoch)
                progress.reset(task, total=len(loader), epoch=f"{epoch + 1}/{cfg.epochs}", info="")
                row = _train_epoch(model, step, loader, optimizer, cfg, epoch, progress, task)
                if validate is not None and ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs):
                    row.update(_validate(model, validate))
                    if cfg.monitor in row and _better(row[cfg.monitor], best, cfg.monitor):
                        best = row[cfg.monitor]
                        _save(ckpt_dir / "best.pt", {"model": model.state_dict(), "epoch": epoch + 1,
                                                     cfg.monitor: best})
                history.append(row)
                write_json(run_dir / "history.json", history)
                _save(last, snapshot(epoch + 1))
                progress.console.print(f"{_format_row(row)}  {_eta(started, start, epoch, cfg.epochs)}")
    except KeyboardInterrupt:
        _save(last, snapshot(epoch))
        console.print(f"[yellow]interrupted: checkpoint saved to {last}; run the same command with --resume")
        raise
    if not (ckpt_dir / "best.pt").exists():  # no validation: the final weights are the result
        _save(ckpt_dir / "best.pt", {"model": model.state_dict(), "epoch": cfg.epochs})
    return history


def _resume(last: Path, model, optimizer, cfg: FitConfig, console: Console) -> tuple[int, float | None, list]:
    """(first epoch, best monitored value, history) from last.pt, with model, optimizer and RNG restored."""
    if not last.exists():
        return 0, None, []
    state = torch.load(last, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    console.print(f"resumed from {last} at epoch {state['epoch']}/{cfg.epochs}")
    return state["epoch"], state["best"], state["history"]


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=console, transient=False)


def _set_epoch(loader, epoch: int) -> None:
    """Tell datasets and samplers that draw per epoch (fresh synthetic captures, P x K batches) which one."""
    if hasattr(loader.dataset, "epoch"):
        loader.dataset.epoch = epoch
    if hasattr(loader.batch_sampler, "set_epoch"):
        loader.batch_sampler.set_epoch(epoch)


def _validate(model: torch.nn.Module, validate: Callable) -> dict[str, float]:
    model.eval()
    with torch.no_grad():
        out = validate(model)
    model.train()
    return out


def _eta(started: float, start: int, epoch: int, epochs: int) -> str:
    elapsed = time.monotonic() - started
    left = elapsed / (epoch + 1 - start) * (epochs - epoch - 1)
    return f"[{elapsed / 60:.1f} min so far, about {left / 60:.1f} min left]"


LOG_EVERY_S = 60.0  # without a terminal (nohup, CI logs) a plain progress line this often replaces the bar


def _train_epoch(model, step, loader, optimizer, cfg, epoch, progress, task) -> dict[str, float]:
    model.train()
    sums: dict[str, float] = {}
    n = 0
    plain = not progress.console.is_terminal
    t0 = last = time.monotonic()
    for i, batch in enumerate(loader):
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * group.get("lr_scale", 1.0) * lr_factor(cfg, epoch + i / max(len(loader), 1))
        out = step(model, batch)
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        optimizer.step()
        for k, v in out.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach())
        n += 1
        progress.update(task, advance=1, info=f"loss {sums['loss'] / n:.4f}")
        if plain and time.monotonic() - last > LOG_EVERY_S:
            last = time.monotonic()
            rate = n / (last - t0)
            progress.console.print(f"epoch {epoch + 1}/{cfg.epochs} step {n}/{len(loader)} loss "
                                   f"{sums['loss'] / n:.4f}  {rate:.2f} steps/s, epoch ends in "
                                   f"{(len(loader) - n) / rate / 60:.1f} min")
    row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"]}
    row.update({k: v / max(n, 1) for k, v in sums.items()})
    return row


def _format_row(row: dict) -> str:
    return "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items())
