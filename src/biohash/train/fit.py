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
from typing import Any

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

from biohash.train.averaging import WeightAverage
from biohash.train.devices import autocast, barrier, grad_scaler, processes, resolve_device, to_device
from biohash.train.fit_config import FitConfig
from biohash.train.runs import RunError, write_json

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


class StepModule(torch.nn.Module):
    """The model and its recipe's loss step as one module: DistributedDataParallel must see the forward pass
    that uses the parameters (a step calls the model's named stages, not its forward)."""

    def __init__(self, model: torch.nn.Module, step: Callable) -> None:
        super().__init__()
        self.model, self.step = model, step

    def forward(self, batch: dict) -> dict:
        return self.step(self.model, batch)


def _parameters(model: torch.nn.Module) -> Any:
    """What the optimizer trains: the model's parameter groups where it asks for them, each with its own lr
    multiplier ("lr_scale", e.g. a pretrained backbone at a tenth of the new layers' rate), else its parameters."""
    param_groups = getattr(model, "param_groups", None)
    return param_groups() if callable(param_groups) else model.parameters()


def fit(model: torch.nn.Module, step: Callable, loader: torch.utils.data.DataLoader, cfg: FitConfig,
        run_dir: Path, *, validate: Callable[[torch.nn.Module], dict[str, float]] | None = None,
        console: Console | None = None) -> list[dict]:
    """Train `model` for cfg.epochs on cfg.device, resuming from run_dir/checkpoints/last.pt when it exists.

    Every epoch appends a row (mean of each loss part, lr, validation metrics) to history.json. The
    checkpoint with the best validation `cfg.monitor` is kept as best.pt. Ctrl-C saves last.pt at the
    start of the interrupted epoch and re-raises, so the run can be resumed. Under torchrun every process
    trains its slice of each global batch (gradients averaged by DDP); rank 0 alone validates and writes.
    """
    console = console or Console()
    procs = processes()
    device = resolve_device(cfg.device, procs.local_rank)
    engine = _engine(model.to(device), step, device, procs.world, getattr(loader.dataset, "partial", False))
    ckpt_dir = run_dir / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    optimizer = make_optimizer(_parameters(model), cfg)
    average = WeightAverage(model, cfg.ema) if cfg.ema else None
    kept = average.module if average else model  # what validation reads and best.pt keeps
    last = ckpt_dir / "last.pt"
    start, best, history = _resume(last, model, optimizer, cfg, console, average=average)
    if len(loader) == 0:
        items = len(loader.dataset)  # type: ignore[arg-type]  # every training set here is sized
        raise RunError(f"no training step: {items} training items make no full batch (batch size "
                       f"{cfg.batch_size}); lower --batch-size or add data")
    epoch, started = start, time.monotonic()
    run = _Epochs(engine, model, loader, optimizer, cfg, device=device, main=procs.main, average=average)
    try:
        with _progress(console, procs.main) as progress:
            task = progress.add_task("fit", total=len(loader), epoch=f"{start + 1}/{cfg.epochs}", info="")
            for epoch in range(start, cfg.epochs):
                _set_epoch(loader, epoch)
                progress.reset(task, total=len(loader), epoch=f"{epoch + 1}/{cfg.epochs}", info="")
                row = run.train_epoch(epoch, progress, task)
                if procs.main:
                    best = _validate_and_keep(kept, validate, row, best, epoch, cfg=cfg, ckpt_dir=ckpt_dir)
                    history.append(row)
                    write_json(run_dir / "history.json", history)
                    _save(last, _snapshot(model, optimizer, epoch + 1, best, history, average=average))
                    progress.console.print(f"{_format_row(row)}  {_eta(started, start, epoch, cfg.epochs)}")
                barrier()
    except KeyboardInterrupt:
        if procs.main:
            _save(last, _snapshot(model, optimizer, epoch, best, history, average=average))
            console.print(f"[yellow]interrupted: checkpoint saved to {last}; run the same command with --resume")
        raise
    if procs.main and not (ckpt_dir / "best.pt").exists():  # no validation: the final weights are the result
        _save(ckpt_dir / "best.pt", {"model": kept.state_dict(), "epoch": cfg.epochs})
    barrier()
    return history


def _engine(model: torch.nn.Module, step: Callable, device: torch.device, world: int,
            partial: bool = False) -> torch.nn.Module:
    """The module a training step calls: model + step, wrapped in DDP under torchrun. A step uses the same
    parameters every time (a static graph), so parameters it never reads, such as a classifier one loss
    ignores, need no search of the graph each step; except where items may lack a modality (`partial`: a
    print-only database joined with paired ones), when a process's share of a batch may leave a branch unused."""
    engine: torch.nn.Module = StepModule(model, step)
    if world > 1:
        engine = torch.nn.parallel.DistributedDataParallel(
            engine, device_ids=[device.index] if device.type == "cuda" else None, static_graph=not partial,
            find_unused_parameters=partial)
    return engine


def _snapshot(model: torch.nn.Module, optimizer, epoch: int, best: float | None, history: list, *,
              average: WeightAverage | None = None) -> dict:
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch, "best": best,
            "history": history, "torch_rng": torch.get_rng_state(),
            **({"ema": average.state_dict()} if average else {})}


def _validate_and_keep(model, validate, row: dict, best: float | None, epoch: int, *, cfg: FitConfig,
                       ckpt_dir: Path) -> float | None:
    """Validate when due (adds the metrics to `row`); a better monitored value writes best.pt."""
    if validate is None or not ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs):
        return best
    row.update(_validate(model, validate))
    if cfg.monitor not in row:
        from biohash.train.runs import RunError

        figures = ", ".join(k for k in row if k.startswith("val_"))
        raise RunError(f"--monitor {cfg.monitor} is not a validation figure of this run; it reports: {figures}")
    if _better(row[cfg.monitor], best, cfg.monitor):
        best = row[cfg.monitor]
        _save(ckpt_dir / "best.pt", {"model": model.state_dict(), "epoch": epoch + 1, cfg.monitor: best})
    return best


def _resume(last: Path, model, optimizer, cfg: FitConfig, console: Console, *,
            average: WeightAverage | None = None) -> tuple[int, float | None, list]:
    """(first epoch, best monitored value, history) from last.pt, with model, optimizer, weight average and RNG
    restored."""
    if not last.exists():
        return 0, None, []
    state = torch.load(last, map_location="cpu", weights_only=False)  # any device or world size wrote it
    model.load_state_dict(state["model"])
    if average is not None:
        average.load_state_dict(state["ema"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    console.print(f"resumed from {last} at epoch {state['epoch']}/{cfg.epochs}")
    return state["epoch"], state["best"], state["history"]


def _progress(console: Console, show: bool = True) -> Progress:
    return Progress(TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=console, transient=False,
                    disable=not show)


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


class _Epochs:
    """One training epoch at a time: batches to the device, the step under autocast, the optimiser (through a
    gradient scaler for fp16); the row holds each loss part's mean over the steps (and over the processes)."""

    def __init__(self, engine, model, loader, optimizer, cfg: FitConfig, *, device: torch.device, main: bool,
                 average: WeightAverage | None = None) -> None:
        self.engine, self.model, self.loader, self.optimizer = engine, model, loader, optimizer
        self.cfg, self.device, self.main, self.average = cfg, device, main, average
        self.scaler = grad_scaler(device, cfg.amp)

    def _update(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            self.optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        if self.average is not None:
            self.average.update(self.model)

    def train_epoch(self, epoch: int, progress, task) -> dict[str, float]:
        cfg, steps = self.cfg, len(self.loader)
        self.engine.train()
        sums: dict[str, torch.Tensor] = {}
        n, plain = 0, not progress.console.is_terminal
        t0 = last = time.monotonic()
        for i, batch in enumerate(self.loader):
            for group in self.optimizer.param_groups:
                group["lr"] = cfg.lr * group.get("lr_scale", 1.0) * lr_factor(cfg, epoch + i / max(steps, 1))
            with autocast(self.device, cfg.amp):
                out = self.engine(to_device(batch, self.device))
            self._update(out["loss"])
            for k, v in out.items():  # kept on the device: no host sync per step
                sums[k] = sums.get(k, 0) + v.detach().float()
            n += 1
            if n % 10 == 1 or n == steps:
                progress.update(task, completed=n, info=f"loss {float(sums['loss']) / n:.4f}")
            if self.main and plain and time.monotonic() - last > LOG_EVERY_S:
                last = time.monotonic()
                rate = n / (last - t0)
                progress.console.print(f"epoch {epoch + 1}/{cfg.epochs} step {n}/{steps} loss "
                                       f"{float(sums['loss']) / n:.4f}  {rate:.2f} steps/s, epoch ends in "
                                       f"{(steps - n) / rate / 60:.1f} min")
        row = {"epoch": epoch + 1, "lr": self.optimizer.param_groups[0]["lr"]}
        row.update({k: v / max(n, 1) for k, v in _mean_over_processes(sums).items()})
        return row


def _mean_over_processes(sums: dict[str, torch.Tensor]) -> dict[str, float]:
    """Each part's sum averaged over the processes of a torchrun launch (the sums themselves when alone)."""
    import torch.distributed as dist

    if not sums or not (dist.is_available() and dist.is_initialized()):
        return {k: float(v) for k, v in sums.items()}
    keys = sorted(sums)
    stacked = torch.stack([sums[k].reshape(()) for k in keys])
    dist.all_reduce(stacked)
    return {k: float(v) / dist.get_world_size() for k, v in zip(keys, stacked, strict=True)}


def _format_row(row: dict) -> str:
    return "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items())
