"""Registered dataset adapters: each opens to a Dataset (a list of Samples and a way to load them).

Images load as uint8 grey arrays (H, W). `open_dataset(name, ...)` is the one entry point; unknown names
list the valid ones, and the paper's short names (casiam, polyu, tjppv) are aliases.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from biohash.errors import BiohashError, DatasetError  # noqa: F401  (DatasetError: re-exported)
from biohash.match.types import Sample
from biohash.registry import Registry
from biohash.train.data.synthetic import Nuisance, SyntheticPalms

FRESH_CAPTURES = 1 << 20  # capture indices from here on are drawn fresh for training, never listed samples
DATASETS: Registry[Callable[..., Dataset]] = Registry("dataset")


@dataclass
class Dataset:
    """Samples plus a loader that turns a Sample into a uint8 grey image.

    Attributes:
        name: registered name of the adapter.
        samples: every capture, in a stable order.
        loader: Sample -> uint8 array (H, W).
        fresh: for generated datasets, (sample, k) -> a new capture k of the same identity and modality,
            never one of the listed samples; None for databases of files.
        skipped: (path, reason) of files left out when opening (an ROI that could not be cut).
    """

    name: str
    samples: list[Sample]
    loader: Callable[[Sample], np.ndarray]
    fresh: Callable[[Sample, int], Sample] | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.samples:
            raise DatasetError(f"dataset {self.name!r} has no samples for this selection")

    def load(self, sample: Sample) -> np.ndarray:
        return self.loader(sample)

    def identities(self) -> list[str]:
        return sorted({s.identity for s in self.samples}, key=_natural_key)

    def modalities(self) -> list[str]:
        return sorted({s.modality for s in self.samples})

    def by_identity(self) -> dict[str, list[Sample]]:
        groups: dict[str, list[Sample]] = defaultdict(list)
        for s in self.samples:
            groups[s.identity].append(s)
        return dict(groups)


def _natural_key(name: str) -> tuple[int, str]:
    return (int(name), "") if name.isdigit() else (1 << 62, name)


def open_dataset(name: str, **kwargs: object) -> Dataset:
    """Open a registered dataset; keyword arguments that are None are dropped so adapter defaults apply, and
    one the adapter does not take is an error naming the ones it does."""
    return DATASETS.create(name, **kwargs)


@DATASETS.register("synthetic", aliases=("syn",))
def synthetic(identities: int = 200, captures: int = 8, seed: int = 0, size: int = 128,
              modalities: tuple[str, ...] = ("print", "vein"), *, nuisance: Nuisance | None = None,
              root: str | None = None) -> Dataset:
    """The built-in generator: `identities` palms x `captures` captures per modality, rendered on demand."""
    if root is not None:
        raise DatasetError("the synthetic dataset is generated, it takes no root folder")
    if identities < 1 or captures < 1:
        raise DatasetError(f"synthetic needs identities >= 1 and captures >= 1, got {identities} and {captures}")
    gen = SyntheticPalms(seed=seed, size=size, nuisance=nuisance)
    samples = [Sample(str(i), m, c) for i in range(identities) for m in modalities for c in range(captures)]
    return Dataset("synthetic", samples, lambda s: gen.render(int(s.identity), s.modality, s.capture),
                   fresh=lambda s, k: replace(s, capture=FRESH_CAPTURES + k))

