"""FitConfig: the training settings every recipe shares (torch-free, so the CLI shows them without torch)."""
from __future__ import annotations

from dataclasses import dataclass

from biohash.errors import ConfigError

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "step", "constant")
AMP = ("off", "bf16", "fp16")
# where and how a run computes, not what it learns: a run may resume on another device, precision or loader
RUNTIME_FIELDS = ("device", "amp", "workers")


@dataclass
class FitConfig:
    """Training settings shared by every recipe."""

    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-2
    weight_decay: float = 5e-4
    optimizer: str = "adamw"
    schedule: str = "cosine"
    warmup_epochs: int = 1
    val_every: int = 1
    monitor: str = "val_eer"
    seed: int = 0
    workers: int = 0  # data-loading processes beside the training (0: load in the training process)
    device: str = "auto"  # auto (a GPU where torch sees one), cpu, cuda, cuda:N or mps
    amp: str = "off"  # mixed precision: off, bf16 or fp16 (GPU)
    ema: float = 0.0  # decay per step of the weights' moving average that validation and best.pt read; 0 = off

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; expected one of: {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule {self.schedule!r}; expected one of: {', '.join(SCHEDULES)}")
        if self.amp not in AMP:
            raise ConfigError(f"unknown --amp {self.amp!r}; expected one of: {', '.join(AMP)}")
        if not 0 <= self.ema < 1:
            raise ConfigError(f"ema must be in [0, 1) (the decay per step; 0 = off), got {self.ema:g}")
        if self.workers < 0:
            raise ConfigError(f"workers must be >= 0, got {self.workers}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(f"epochs and batch_size must be >= 1, got {self.epochs} and {self.batch_size}")
