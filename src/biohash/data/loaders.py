"""Torch datasets over Samples: paired print/vein training items and single-modality evaluation batches."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset

from biohash.data.datasets import Dataset, DatasetError
from biohash.data.transforms import random_affine, standardize
from biohash.types import Sample


class PairedTrainSet(TorchDataset):
    """One item per capture of the first modality: that image plus a random capture of the same identity in
    each other modality, and the identity's class index.

    Args:
        dataset: where images load from.
        samples: training samples (any mix of modalities).
        modalities: modalities every item carries; identities lacking one are dropped with a count.
        size: image side fed to the network.
        augment: apply small random affine jitter.
        fresh: for generated datasets, draw a new capture of the same identity for every item and epoch
            (unlimited nuisance variation) instead of reusing the listed training captures; the other
            modalities then come from the same capture (one placement, as on a multispectral device).
        seed: seeds the augmentation and pairing draws (per item and epoch).
    """

    def __init__(self, dataset: Dataset, samples: list[Sample], modalities: tuple[str, ...], size: int,
                 augment: bool = True, fresh: bool = False, seed: int = 0) -> None:
        if fresh and dataset.fresh is None:
            raise DatasetError(f"dataset {dataset.name!r} is a set of files: it cannot draw fresh captures")
        groups: dict[tuple[str, str], list[Sample]] = defaultdict(list)
        for s in samples:
            groups[(s.identity, s.modality)].append(s)
        ids = sorted({s.identity for s in samples})
        ids = [i for i in ids if all(groups.get((i, m)) for m in modalities)]
        if not ids:
            raise DatasetError(f"no training identity has every modality of {modalities}")
        self.classes = {identity: k for k, identity in enumerate(ids)}
        self.groups = groups
        self.anchors = [s for s in samples if s.modality == modalities[0] and s.identity in self.classes]
        self.dataset, self.modalities, self.size = dataset, modalities, size
        self.augment, self.fresh, self.seed, self.epoch = augment, fresh, seed, 0

    def __len__(self) -> int:
        return len(self.anchors)

    def _image(self, sample: Sample, rng: np.random.Generator) -> torch.Tensor:
        img = self.dataset.load(sample)
        if self.augment:
            img = random_affine(img, rng)
        return torch.from_numpy(standardize(img, self.size))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        anchor = self.anchors[index]
        k = self.epoch * len(self) + index
        if self.fresh:
            anchor = self.dataset.fresh(anchor, k)
        item = {self.modalities[0]: self._image(anchor, rng)}
        for m in self.modalities[1:]:
            if self.fresh:  # capture k of the other band: one placement, as multispectral devices capture
                partner = self.dataset.fresh(replace(anchor, modality=m), k)
            else:
                choices = self.groups[(anchor.identity, m)]
                partner = choices[rng.integers(len(choices))]
            item[m] = self._image(partner, rng)
        item["label"] = torch.tensor(self.classes[anchor.identity])
        return item


def image_batches(dataset: Dataset, samples: list[Sample], size: int, batch_size: int = 128):
    """Yield standardised float tensors (B, 1, size, size) in sample order, for encoding."""
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        yield torch.from_numpy(np.stack([standardize(dataset.load(s), size) for s in chunk]))
