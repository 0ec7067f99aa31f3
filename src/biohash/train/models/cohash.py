"""CoHashNet (PalmCohashNet): one HashNet per modality, trained towards shared identity hash centroids.

Centroids are pre-assigned as in central similarity quantization: rows of a Hadamard matrix and its
negation, then random codes kept at a minimum Hamming distance when identities outnumber them.
"""
from __future__ import annotations

from typing import cast

import numpy as np
import torch
from scipy.linalg import hadamard
from torch import nn

from biohash.errors import ConfigError
from biohash.train.models.hashnet import HashNet

SHARING = ("none", "head", "all")


def hash_centroids(n_classes: int, bits: int, seed: int = 0) -> np.ndarray:
    """Identity centroids in {-1, +1}, float32 (n_classes, bits).

    Hadamard rows and their negations first (mutual distance bits/2 or bits), in a seeded order; beyond 2*bits
    classes (or when bits is not a power of two), random codes accepted greedily at the largest minimum
    Hamming distance to all earlier centroids that can still be met (lowered one bit after 200 misses).
    """
    if n_classes < 1:
        raise ValueError(f"need at least one class, got {n_classes}")
    rng = np.random.default_rng(seed)
    out = np.empty((n_classes, bits), np.float32)  # filled in order; rows[:n] are the accepted ones
    n = 0
    if bits & (bits - 1) == 0:
        h = hadamard(bits).astype(np.float32)
        pool = np.concatenate([h, -h])
        first = pool[rng.permutation(len(pool))][:n_classes]
        out[: len(first)], n = first, len(first)
    target = bits // 2
    misses = 0
    while n < n_classes:
        cand = rng.choice(np.array([-1.0, 1.0], np.float32), bits)
        if n:
            dist = (bits - out[:n] @ cand) / 2
            if dist.min() < target:
                misses += 1
                if misses >= 200:
                    target, misses = target - 1, 0
                continue
        out[n] = cand
        n += 1
        misses = 0
    return out


class CoHashNet(nn.Module):
    """Hashing sub-networks per modality sharing one table of identity centroids.

    Args:
        backbone: registered backbone name for every sub-network.
        bits: code length.
        n_classes: number of training identities (rows of the centroid table).
        modalities: one sub-network per entry.
        weights: optional local backbone weights, loaded into every sub-network.
        seed: seed of the centroid assignment.
        share: what the modalities share. "none": two sub-networks, as in the paper; "head": one hash layer
            (each keeps its own backbone and reduction), so both embeddings are read the same way; "all":
            one network for every modality.
        dropout: dropout before the hash layer.
        grid: side of the spatial head's pooling grid.
        test_shifts, test_views: evaluation averages the embeddings of shifted copies (HashNet).
        parts: blocks per side of each branch's part hash layers (HashNet; training terms only).
        orientation: each branch's head predicting CompCode's orientations, "" for none (HashNet; training only).
    """

    def __init__(self, backbone: str, bits: int, n_classes: int, *, modalities: tuple[str, ...] = ("print", "vein"),
                 weights: str | None = None, seed: int = 0, share: str = "none", dropout: float = 0.0,
                 grid: int = 4, test_shifts: int = 0, test_views: str = "cross", parts: int = 0,
                 orientation: str = "") -> None:
        super().__init__()
        if share not in SHARING:
            raise ConfigError(f"unknown sharing {share!r}; expected one of: {', '.join(SHARING)}")
        self.modalities = tuple(modalities)
        self.bits = bits
        self.nets = nn.ModuleDict({m: HashNet(backbone, bits, weights, dropout=dropout, grid=grid,
                                              test_shifts=test_shifts, test_views=test_views, parts=parts,
                                              orientation=orientation)
                                   for m in self.modalities})
        first = self.nets[self.modalities[0]]
        for m in self.modalities[1:]:
            if share == "all":
                self.nets[m] = first
            elif share == "head":
                self.nets[m].hash = first.hash
        self.register_buffer("centroids", torch.from_numpy(hash_centroids(n_classes, bits, seed)))

    def net(self, modality: str) -> HashNet:
        if modality not in self.nets:
            raise KeyError(f"this model has no {modality!r} branch; it has: {', '.join(self.modalities)}")
        return cast(HashNet, self.nets[modality])

    def forward(self, x: torch.Tensor, modality: str) -> torch.Tensor:
        return self.net(modality)(x)
