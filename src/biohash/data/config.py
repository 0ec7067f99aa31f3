"""DataConfig: which dataset and protocol a run uses; `open_split` turns it into a Dataset and a Split."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from biohash.data.datasets import DATASETS, Dataset, open_dataset
from biohash.data.protocols import PROTOCOLS, Split, make_split


@dataclass
class DataConfig:
    """Dataset and protocol of a run.

    `identities`, `captures` and `fresh_captures` apply to generated data: with fresh_captures, training
    draws a new capture of each training identity for every item and epoch (evaluation captures stay fixed).
    `options` go to the dataset adapter as keyword arguments (e.g. {"bands": "940"} for casia-ms).
    """

    dataset: str = "synthetic"
    root: str | None = None
    identities: int = 200
    captures: int = 8
    image_size: int = 128
    protocol: str = "open"
    val_fraction: float = 0.1
    test_fraction: float = 0.3
    seed: int = 0
    fresh_captures: bool = True
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.dataset = DATASETS.canonical(self.dataset)
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {self.protocol!r}; expected one of: {', '.join(PROTOCOLS)}")
        if not (0 < self.val_fraction < 1 and 0 <= self.test_fraction < 1 and self.val_fraction + self.test_fraction < 1):
            raise ValueError(f"val_fraction must be in (0, 1) and test_fraction in [0, 1) with room left to train, "
                             f"got {self.val_fraction:g} and {self.test_fraction:g}")
        if self.image_size < 32:
            raise ValueError(f"image_size must be at least 32, got {self.image_size}")


def open_split(cfg: DataConfig) -> tuple[Dataset, Split]:
    if cfg.dataset == "synthetic":
        ds = open_dataset("synthetic", identities=cfg.identities, captures=cfg.captures, seed=cfg.seed,
                          size=cfg.image_size, **cfg.options)
    else:
        ds = open_dataset(cfg.dataset, root=cfg.root, **cfg.options)
    kwargs = {"val_fraction": cfg.val_fraction, "test_fraction": cfg.test_fraction} if cfg.protocol == "open" else {}
    return ds, make_split(ds, cfg.protocol, seed=cfg.seed, **kwargs)
