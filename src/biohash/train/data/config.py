"""DataConfig: which dataset and protocol a run uses; `open_split` turns it into a Dataset and a Split."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from biohash.errors import ConfigError
from biohash.train.data.datasets import DATASETS, Dataset, open_dataset
from biohash.train.data.protocols import PROTOCOLS, Split, fewer_training_identities, make_split


@dataclass
class DataConfig:
    """Dataset and protocol of a run.

    `identities`, `captures` and `fresh_captures` apply to generated data: with fresh_captures, training
    draws a new capture of each training identity for every item and epoch (evaluation captures stay fixed).
    `options` go to the dataset adapter as keyword arguments (e.g. {"bands": "940"} for casia-ms).
    `enroll_fraction`: the closed set's share of each identity's captures that enroll (the co-hashing paper:
    2/3); the rest probe.
    `jitter` scales the random affine of listed training captures (1: +-4 deg, +-3 % shift, +-4 % scale; 0: none).
    `photometric` scales their random capture conditions (illumination field, gamma, contrast, blur, noise:
    `imaging.transforms.random_photometric`; 0: none, the default).
    `train_identities` (open set; 0 = all): train on that many of the split's training identities, drawn with the
    seed, the validation and test palms unchanged: a learning curve over training palms (per database when joined).
    `also` joins more databases to the run (data.multi): each a dict of dataset, root, options and optionally
    its own protocol, val_fraction and test_fraction (else this config's); every database is split on its own
    with this seed, training draws from all of them, and evaluation reports each apart.
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
    enroll_fraction: float = 0.5
    jitter: float = 1.0
    photometric: float = 0.0
    train_identities: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    also: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.dataset = DATASETS.canonical(self.dataset)
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"unknown protocol {self.protocol!r}; expected one of: {', '.join(PROTOCOLS)}")
        if not (0 < self.val_fraction < 1 and 0 <= self.test_fraction < 1 and self.val_fraction + self.test_fraction < 1):
            raise ConfigError(f"val_fraction must be in (0, 1) and test_fraction in [0, 1) with room left to train, "
                             f"got {self.val_fraction:g} and {self.test_fraction:g}")
        if not 0 <= self.jitter <= 5:
            raise ConfigError(f"jitter must be in [0, 5] (a multiple of +-4 deg, 3 % shift, 4 % scale), got {self.jitter:g}")
        if not 0 <= self.photometric <= 5:
            raise ConfigError(f"photometric must be in [0, 5] (a multiple of the capture-condition ranges), "
                              f"got {self.photometric:g}")
        if self.train_identities < 0:
            raise ConfigError(f"train_identities must be >= 0 (0: every training identity), got {self.train_identities}")
        if self.train_identities and self.protocol != "open":
            raise ConfigError(f"train_identities needs the open protocol (identity-disjoint), not {self.protocol!r}: "
                              f"elsewhere training identities are the test identities too")
        if self.image_size < 32:
            raise ConfigError(f"image_size must be at least 32, got {self.image_size}")
        from biohash.train.data.multi import check_part

        for part in self.also:
            check_part(part)

    def parts(self) -> list[DataConfig]:
        """This database and every joined one, each as a config of its own (its protocol, fractions, options)."""
        out = [replace(self, also=[])]
        for part in self.also:
            out.append(replace(self, also=[], root=part.get("root"), options=dict(part.get("options") or {}),
                               **{k: v for k, v in part.items() if k not in ("root", "options")}))
        return out


def open_split(cfg: DataConfig) -> tuple[Dataset, Split]:
    """The run's dataset and split; with joined databases (`also`), their join (data.multi.join)."""
    if cfg.also:
        from biohash.train.data.multi import join, part_names

        configs = cfg.parts()
        names = part_names([c.dataset for c in configs])
        return join([(name, *open_split(c)) for name, c in zip(names, configs)])
    if cfg.dataset == "synthetic":
        ds = open_dataset("synthetic", identities=cfg.identities, captures=cfg.captures, seed=cfg.seed,
                          size=cfg.image_size, **cfg.options)
    else:
        ds = open_dataset(cfg.dataset, root=cfg.root, **cfg.options)
    kwargs = ({"val_fraction": cfg.val_fraction, "test_fraction": cfg.test_fraction} if cfg.protocol == "open" else
              {"enroll_fraction": cfg.enroll_fraction} if cfg.protocol == "closed" else {})
    split = make_split(ds, cfg.protocol, seed=cfg.seed, **kwargs)
    return ds, fewer_training_identities(split, cfg.train_identities, cfg.seed) if cfg.train_identities else split
