"""CompCode as a teacher (`--teachers compcode`): the classic matcher's similarity of every batch pair, in torch.

CompCode's dense orientation code, matched over +-3 cells, separates palms whose principal lines look alike, the
pairs a 32-byte learned code merges; on palms no one trained on it is the best judge we have, and it needs no
training. Its similarity is 1 - distance / UNRELATED: 1 for identical codes, about 0 for different palms,
0.3-0.4 for two captures of one palm on PolyU (a learned code's same-palm cosine is about 0.45).
"""
from __future__ import annotations

import itertools

import numpy as np
import torch
import torch.nn.functional as F

from biohash.imaging.compcode import KERNELS, N_ORIENTATIONS

UNRELATED = 0.47  # CompCode's mean distance between different palms (PolyU green 0.466, NIR 0.468, +-3 cells)
SIZE, CELLS = 128, 32  # the grid CompCode was measured at: one filtered pixel every 4 of 128


def compcode_codes(images: torch.Tensor) -> torch.Tensor:
    """(n, 1, H, W) images -> (n, 32, 32) orientation codes 0..5, as `imaging.compcode.compcode` computes them
    (read at 128 pixels, borders reflected as OpenCV's filter2D does), filtered only where the grid samples."""
    x = images.float()
    if x.shape[-2:] != (SIZE, SIZE):
        x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    kernels = torch.from_numpy(np.stack(KERNELS)).to(x)[:, None]
    half = kernels.shape[-1] // 2
    padded = F.pad(x, (half, half, half, half), mode="reflect")[..., 2:, 2:]  # grid centres at 2, 6, 10, ...
    return F.conv2d(padded, kernels, stride=SIZE // CELLS).argmin(dim=1)


def compcode_distances(codes: torch.Tensor, shift: int = 3) -> torch.Tensor:
    """(n, n) mean angular distance in [0, 1] of every pair of (n, C, C) codes, the best over +-shift cells:
    `imaging.compcode.distance_matrix` as matrix products of one-hot orientations."""
    n, size = len(codes), codes.shape[1]
    j = torch.arange(N_ORIENTATIONS, device=codes.device)
    gap = (j[:, None] - j[None, :]).abs()
    table = torch.minimum(gap, N_ORIENTATIONS - gap).float()
    best = torch.full((n, n), float("inf"), device=codes.device)
    for dy, dx in itertools.product(range(-shift, shift + 1), repeat=2):
        a = codes[:, max(dy, 0): size + min(dy, 0), max(dx, 0): size + min(dx, 0)]
        b = codes[:, max(-dy, 0): size + min(-dy, 0), max(-dx, 0): size + min(-dx, 0)]
        one_hot = F.one_hot(a, N_ORIENTATIONS).float().reshape(n, -1)
        cost = table[b].reshape(n, -1)  # each cell's distance to every orientation
        best = torch.minimum(best, one_hot @ cost.T / (a.shape[1] * a.shape[2] * (N_ORIENTATIONS // 2)))
    return best


def compcode_similarity(images: torch.Tensor) -> torch.Tensor:
    """(n, n) CompCode similarity 1 - distance / UNRELATED of a batch of images."""
    return 1 - compcode_distances(compcode_codes(images)) / UNRELATED


class CompCodeTeacher:
    """The teacher `--teachers compcode` names: no weights, every modality, the same similarity for each."""

    name = "compcode"

    def similarity(self, images: torch.Tensor, modality: str) -> torch.Tensor:
        with torch.no_grad():
            return compcode_similarity(images)
