"""Competitive code (CompCode): a classic, model-free palmprint matcher (numpy + OpenCV).

Each ROI becomes the dominant orientation (argmin of six even Gabor filters) on a 32x32 grid; two codes are
compared by mean angular distance (0 = identical, ~0.47 = unrelated), minimised over small grid shifts.
biohash uses it as a baseline and to check that synthetic genuine pairs vary as much as real ones.
"""
from __future__ import annotations

import itertools

import cv2
import numpy as np

from biohash.imaging.transforms import check_grey

N_ORIENTATIONS = 6
KERNELS = [cv2.getGaborKernel((35, 35), 5.6, j * np.pi / N_ORIENTATIONS, 10.9, 1.0, 0)
           for j in range(N_ORIENTATIONS)]
KERNELS = [k - k.mean() for k in KERNELS]  # zero DC: insensitive to brightness


def compcode(img: np.ndarray, cells: int = 32) -> np.ndarray:
    """Orientation code of a grey ROI (resized to 128x128): int array (cells, cells) of values 0..5.

    32 cells is the classic code (one filtered pixel every 4); a coarser grid (16, 8, 4) takes the argmin of
    the responses averaged over each cell, which is how the code is shrunk to a learned code's size."""
    if cells not in (4, 8, 16, 32):
        raise ValueError(f"compcode cells must be 4, 8, 16 or 32 (divisors of 128 the grid was measured at), got {cells}")
    x = cv2.resize(check_grey(img, "compcode"), (128, 128)).astype(np.float32)
    resp = np.stack([cv2.filter2D(x, cv2.CV_32F, k) for k in KERNELS])
    if cells == 32:
        return resp.argmin(axis=0)[2::4, 2::4]
    size = 128 // cells
    return resp.reshape(N_ORIENTATIONS, cells, size, cells, size).mean(axis=(2, 4)).argmin(axis=0)


def distance(a: np.ndarray, b: np.ndarray, shift: int = 3) -> float:
    """Mean angular distance in [0, 1] between two codes, the best over +-shift grid cells of translation."""
    if a.shape != b.shape:
        raise ValueError(f"compcode shapes differ: {a.shape} vs {b.shape}")
    n, best = a.shape[0], 1.0
    half = N_ORIENTATIONS // 2
    for dy, dx in itertools.product(range(-shift, shift + 1), repeat=2):
        pa = a[max(dy, 0) : n + min(dy, 0), max(dx, 0) : n + min(dx, 0)]
        pb = b[max(-dy, 0) : n + min(-dy, 0), max(-dx, 0) : n + min(-dx, 0)]
        d = np.abs(pa - pb)
        best = min(best, float(np.minimum(d, N_ORIENTATIONS - d).mean() / half))
    return best


def distance_matrix(probes: np.ndarray, gallery: np.ndarray, shift: int = 3) -> np.ndarray:
    """`distance` of every probe code against every gallery code, (n_probe, n_gallery), as matrix products:
    per grid shift, one-hot orientations times the 6x6 table of angular distances (thousands of codes in
    seconds where the pairwise loop takes hours)."""
    probes, gallery = np.asarray(probes), np.asarray(gallery)
    if probes.shape[1:] != gallery.shape[1:]:
        raise ValueError(f"compcode shapes differ: {probes.shape[1:]} vs {gallery.shape[1:]}")
    n, half = probes.shape[1], N_ORIENTATIONS // 2
    j = np.arange(N_ORIENTATIONS)
    table = np.minimum(np.abs(j[:, None] - j[None, :]), N_ORIENTATIONS - np.abs(j[:, None] - j[None, :]))
    eye = np.eye(N_ORIENTATIONS, dtype=np.float32)
    best = np.full((len(probes), len(gallery)), np.inf, np.float32)
    for dy, dx in itertools.product(range(-shift, shift + 1), repeat=2):
        pa = probes[:, max(dy, 0) : n + min(dy, 0), max(dx, 0) : n + min(dx, 0)]
        pb = gallery[:, max(-dy, 0) : n + min(-dy, 0), max(-dx, 0) : n + min(-dx, 0)]
        a = eye[pa].reshape(len(probes), -1)  # (n_probe, cells * 6) one-hot
        b = (eye[pb] @ table.astype(np.float32)).reshape(len(gallery), -1)  # distance of each cell to each value
        cells = pa.shape[1] * pa.shape[2]
        best = np.minimum(best, (a @ b.T) / (cells * half))
    return best


def genuine_impostor(groups: dict[str, list[np.ndarray]], max_impostor: int = 1500,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """CompCode distances of all genuine pairs and of up to `max_impostor` random impostor pairs."""
    codes = {k: [compcode(i) for i in v] for k, v in groups.items()}
    genuine = [distance(a, b) for v in codes.values() for a, b in itertools.combinations(v, 2)]
    flat = [(k, c) for k, v in codes.items() for c in v]
    if len(codes) < 2:
        raise ValueError("need at least two identities for impostor pairs")
    rng = np.random.default_rng(seed)
    impostor: list[float] = []
    while len(impostor) < max_impostor:
        i, j = rng.integers(len(flat), size=2)
        if flat[i][0] != flat[j][0]:
            impostor.append(distance(flat[i][1], flat[j][1]))
    return np.array(genuine), np.array(impostor)
