"""Torch datasets over Samples: paired print/vein training items and single-modality evaluation batches."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset

from biohash.errors import ConfigError
from biohash.imaging.transforms import random_affine, random_photometric, standardize
from biohash.match.types import Sample
from biohash.train.data.datasets import Dataset, DatasetError

if TYPE_CHECKING:
    from biohash.train.data.config import DataConfig

# the eight turns and mirror images of a square image (the dihedral group), in the order identity copies take
# them: a flipped or turned palm is another plausible palm, with the same line statistics
FLIPS = (lambda x: x, lambda x: x.flip(-1), lambda x: x.flip(-2), lambda x: x.flip(-2, -1),
         lambda x: x.transpose(-2, -1), lambda x: torch.rot90(x, 1, (-2, -1)), lambda x: torch.rot90(x, 3, (-2, -1)),
         lambda x: x.flip(-2, -1).transpose(-2, -1))
IDENTITY_FLIPS = (1, 2, 4, 8)


class PairedTrainSet(TorchDataset):
    """One item per capture of the first modality: that image plus a random capture of the same identity in
    each other modality, and the identity's class index.

    Args:
        dataset: where images load from.
        samples: training samples (any mix of modalities).
        modalities: modalities every item carries. An identity lacking some of them (a print-only database
            joined with paired ones) trains the branches it has: its items hold zeros for the others, and
            `present` (a bool per modality) says which images are real.
        size: image side fed to the network.
        augment: apply small random affine jitter.
        jitter: scale of that jitter (1: +-4 deg, +-3 % shift, +-4 % scale).
        photometric: scale of the random capture conditions of listed captures (0: none).
        fresh: for generated datasets, draw a new capture of the same identity for every item and epoch
            (unlimited nuisance variation) instead of reusing the listed training captures; the other
            modalities then come from the same capture (one placement, as on a multispectral device).
        seed: seeds the augmentation and pairing draws (per item and epoch).
        identity_flips: 1, 2, 4 or 8 copies of every training identity, each under one of FLIPS (mirror, upside
            down, turned) in every modality and with a class of its own: more identities from few palms.
        split_seed: the seed of the split these samples came from (what other parts of the run, such as the
            unlabeled palms of a distilled student, split their own databases by).
    """

    def __init__(self, dataset: Dataset, samples: list[Sample], modalities: tuple[str, ...], size: int,
                 augment: bool = True, *, fresh: bool = False, seed: int = 0, identity_flips: int = 1,
                 jitter: float = 1.0, split_seed: int = 0, photometric: float = 0.0) -> None:
        if identity_flips not in IDENTITY_FLIPS:
            raise ConfigError(f"identity_flips must be one of {', '.join(map(str, IDENTITY_FLIPS))}, got {identity_flips}")
        if fresh and dataset.fresh is None:
            raise DatasetError(f"dataset {dataset.name!r} is a set of files: it cannot draw fresh captures")
        groups: dict[tuple[str, str], list[Sample]] = defaultdict(list)
        for s in samples:
            groups[(s.identity, s.modality)].append(s)
        ids = sorted({s.identity for s in samples})
        ids = [i for i in ids if any(groups.get((i, m)) for m in modalities)]
        if not ids:
            raise DatasetError(f"no training identity has any modality of {modalities}")
        self.classes = {identity: k for k, identity in enumerate(ids)}
        self.flips, self._base_classes = identity_flips, len(ids)
        self.classes |= {f"{identity}~flip{j}": k + j * len(ids) for j in range(1, identity_flips)
                         for k, identity in enumerate(ids)}  # the copies' classes: k + j * (identities)
        self.groups = groups
        self.partial = any(not groups.get((i, m)) for i in ids for m in modalities)  # some items lack a modality
        # anchors: each identity's captures of the first modality it has (every identity's first, when paired)
        first = {i: next(m for m in modalities if groups.get((i, m))) for i in ids}
        self.anchors = [s for s in samples if s.identity in first and s.modality == first[s.identity]]
        self.dataset, self.modalities, self.size = dataset, modalities, size
        self.augment, self.jitter, self.seed, self.epoch = augment and jitter > 0, jitter, seed, 0
        self.split_seed, self.photometric = split_seed, photometric if augment else 0.0
        self.fresh = dataset.fresh if fresh else None  # (sample, k) -> a new capture k, or None: listed captures

    @classmethod
    def for_run(cls, dataset: Dataset, samples: list[Sample], modalities: tuple[str, ...], data: DataConfig,
                seed: int = 0, *, identity_flips: int = 1) -> PairedTrainSet:
        """The training set a run's DataConfig asks for: fresh captures where it asks and the dataset can draw
        them (each already a new placement, so no affine jitter on top), listed captures with `data.jitter`
        otherwise."""
        fresh = data.fresh_captures and dataset.fresh is not None
        return cls(dataset, samples, modalities, data.image_size, augment=not fresh, fresh=fresh, seed=seed,
                   identity_flips=identity_flips, jitter=data.jitter, split_seed=data.seed,
                   photometric=data.photometric)

    def __len__(self) -> int:
        return len(self.anchors) * self.flips

    def labels(self) -> list[int]:
        """Class index of each item, in item order (for identity-balanced batches)."""
        return [self._label(a.identity, j) for j in range(self.flips) for a in self.anchors]

    def _label(self, identity: str, flip: int) -> int:
        """Class of `identity` seen under FLIPS[flip]: each flipped copy is a class of its own."""
        return self.classes[identity] + flip * self._base_classes

    def _image(self, sample: Sample, rng: np.random.Generator) -> torch.Tensor:
        img = self.dataset.load(sample)
        if self.augment:
            img = random_affine(img, rng, strength=self.jitter)
        if self.photometric:
            img = random_photometric(img, rng, strength=self.photometric)
        return torch.from_numpy(standardize(img, self.size))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        flip, i = divmod(index, len(self.anchors))
        anchor = self.anchors[i]
        k = self.epoch * len(self) + index
        if self.fresh is not None:
            anchor = self.fresh(anchor, k)
        item = {anchor.modality: self._image(anchor, rng)}
        present = [True] * len(self.modalities)
        for j, m in enumerate(self.modalities):
            if m == anchor.modality:
                continue
            if self.fresh is not None:  # capture k of the other band: one placement, as multispectral devices capture
                item[m] = self._image(self.fresh(replace(anchor, modality=m), k), rng)
            elif self.groups.get((anchor.identity, m)):
                choices = self.groups[(anchor.identity, m)]
                item[m] = self._image(choices[rng.integers(len(choices))], rng)
            else:  # this identity's database has no such modality: a placeholder the loss step leaves out
                item[m], present[j] = torch.zeros_like(item[anchor.modality]), False
        item = {m: FLIPS[flip](item[m]).contiguous() for m in self.modalities}
        item["label"] = torch.tensor(self._label(anchor.identity, flip))
        item["present"] = torch.tensor(present)
        return item


def image_batches(dataset: Dataset, samples: list[Sample], size: int, batch_size: int = 128):
    """Yield standardised float tensors (B, 1, size, size) in sample order, for encoding."""
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        yield torch.from_numpy(np.stack([standardize(dataset.load(s), size) for s in chunk]))


class UnlabeledSet(TorchDataset):
    """Unlabeled grey images per modality branch, standardised: item i -> {modality: (1, size, size)}, the
    i-th image of each source (shorter sources wrap around). No identity is read."""

    def __init__(self, sources: dict[str, tuple[Dataset, list[Sample]]], size: int) -> None:
        empty = [m for m, (_, samples) in sources.items() if not samples]
        if not sources or empty:
            raise ValueError(f"no unlabeled images for {', '.join(empty) or 'any modality'}")
        self.sources, self.size = sources, size

    def __len__(self) -> int:
        return max(len(samples) for _, samples in self.sources.values())

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {m: torch.from_numpy(standardize(ds.load(samples[i % len(samples)]), self.size))
                for m, (ds, samples) in self.sources.items()}


class IdentityBatchSampler(torch.utils.data.Sampler):
    """Batches of `per_identity` items from each of batch_size // per_identity identities (P x K sampling),
    so pairwise losses see genuine pairs in every batch. One pass covers every item about once.

    Args:
        labels: class index of each item of the dataset.
        batch_size: items per batch (a multiple of per_identity).
        per_identity: K, items per identity in a batch (drawn with replacement when an identity has fewer).
        seed: seeds the draws; set_epoch(e) varies them per epoch.
    """

    def __init__(self, labels: list[int], batch_size: int, per_identity: int = 4, seed: int = 0) -> None:
        if per_identity < 2 or batch_size % per_identity or batch_size < 2 * per_identity:
            raise ConfigError(f"batch_size ({batch_size}) must be a multiple of per_identity ({per_identity} >= 2) "
                             f"holding at least two identities")
        groups: dict[int, list[int]] = defaultdict(list)
        for i, label in enumerate(labels):
            groups[int(label)].append(i)
        if len(groups) < 2:
            raise ConfigError("identity-balanced batches need at least two identities")
        self.groups, self.batch_size, self.k, self.seed, self.epoch = groups, batch_size, per_identity, seed, 0
        self.n_batches = max(1, len(labels) // batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        ids = list(self.groups)
        per_batch = min(self.batch_size // self.k, len(ids))
        for _ in range(self.n_batches):
            batch = []
            for label in rng.choice(ids, per_batch, replace=False):
                members = self.groups[int(label)]
                batch += list(rng.choice(members, self.k, replace=len(members) < self.k))
            yield [int(i) for i in batch]


IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def colour_tensor(img: np.ndarray, size: int) -> np.ndarray:
    """RGB uint8 (H, W, 3), or grey (repeated), -> float32 (3, size, size) with ImageNet mean and std."""
    import cv2

    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {img.shape}")
    if img.shape[:2] != (size, size):
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_LINEAR)
    x = (img.astype(np.float32) / 255 - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(x.transpose(2, 0, 1))


class ShuffledBatches(torch.utils.data.Sampler):
    """Shuffled batches of `batch_size` item indices (the last partial batch dropped), drawn from (seed, epoch)
    alone, so every process of a torchrun launch draws the same global batches."""

    def __init__(self, n_items: int, batch_size: int, seed: int = 0) -> None:
        self.n_items, self.batch_size, self.seed, self.epoch = n_items, batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n_items // self.batch_size

    def __iter__(self):
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n_items)
        for b in range(len(self)):
            yield [int(i) for i in order[b * self.batch_size:(b + 1) * self.batch_size]]


class RankSlice(torch.utils.data.Sampler):
    """This process's share of each global batch: consecutive slice `rank` of `world` equal slices. P x K
    batches list each identity's K items together, so a slice holding whole multiples of K keeps them whole."""

    def __init__(self, batches, rank: int, world: int) -> None:
        self.batches, self.rank, self.world = batches, rank, world

    def set_epoch(self, epoch: int) -> None:
        self.batches.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        for batch in self.batches:
            share = len(batch) // self.world
            yield batch[self.rank * share:(self.rank + 1) * share]


class HandTrainSet(TorchDataset):
    """Colour images with identity labels for whole-hand models; augmentation: random horizontal flip and
    colour jitter (brightness, contrast, saturation each up to +-20 %), seeded per item and epoch."""

    def __init__(self, dataset: Dataset, samples: list[Sample], size: int, augment: bool = True,
                 seed: int = 0) -> None:
        if not samples:
            raise DatasetError("no training samples")
        ids = sorted({s.identity for s in samples})
        self.classes = {identity: k for k, identity in enumerate(ids)}
        self.samples, self.dataset, self.size = samples, dataset, size
        self.augment, self.seed, self.epoch = augment, seed, 0

    def __len__(self) -> int:
        return len(self.samples)

    def labels(self) -> list[int]:
        """Class index of each item, in item order."""
        return [self.classes[s.identity] for s in self.samples]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample = self.samples[index]
        img = self.dataset.load(sample)
        img = np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            if rng.random() < 0.5:
                img = img[:, ::-1]
            x = img.astype(np.float32)
            grey = x.mean(axis=2, keepdims=True)
            x = grey + (x - grey) * rng.uniform(0.8, 1.2)  # saturation
            x = x.mean() + (x - x.mean()) * rng.uniform(0.8, 1.2)  # contrast
            img = np.clip(x * rng.uniform(0.8, 1.2), 0, 255).astype(np.uint8)  # brightness
        return {"image": torch.from_numpy(colour_tensor(img, self.size)),
                "label": torch.tensor(self.classes[sample.identity])}


def colour_batches(dataset: Dataset, samples: list[Sample], size: int, batch_size: int = 64):
    """Yield colour tensors (B, 3, size, size) in sample order, for feature extraction."""
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        yield torch.from_numpy(np.stack([colour_tensor(dataset.load(s), size) for s in chunk]))
