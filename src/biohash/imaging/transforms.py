"""Per-image preprocessing and training augmentation (numpy + OpenCV)."""
from __future__ import annotations

import cv2
import numpy as np


def check_grey(img: np.ndarray, where: str = "image") -> np.ndarray:
    """Accept (H, W) uint8 grey, or (H, W, 3) colour converted to grey; anything else is a clear error."""
    if not isinstance(img, np.ndarray):
        raise TypeError(f"{where}: expected a numpy array, got {type(img).__name__}")
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    if img.ndim != 2 or img.size == 0:
        raise ValueError(f"{where}: expected a grey image (H, W), got shape {img.shape}")
    return img


def standardize(img: np.ndarray, size: int) -> np.ndarray:
    """Grey image -> float32 (1, size, size): local contrast normalisation, then zero mean, unit variance.

    Each pixel is centred on, and divided by, the mean and spread of its neighbourhood (Gaussian, sigma =
    size / 16): illumination gradients vanish and faint structure (veins, creases under NIR) stands out as
    much as strong lines. On synthetic palms it cut validation EER at equal training from 4.35 / 4.43 / 17.6 %
    (print / vein / cross, plain per-image z-score) to 3.98 / 3.16 / 12.9 %; vein learned from the start.
    """
    img = check_grey(img)
    if img.shape != (size, size):
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    x = img.astype(np.float32)
    x -= _smooth(x)
    x /= np.sqrt(_smooth(x * x)) + 2.0  # +2 grey levels: flat areas stay flat
    x = (x - x.mean()) / (x.std() + 1e-6)
    return x[None]


def _smooth(x: np.ndarray) -> np.ndarray:
    """Gaussian blur with sigma = side / 16, computed at a quarter of the resolution (3x faster, within half
    a grey level of the full-resolution blur): the neighbourhood statistics of `standardize`."""
    h, w = x.shape
    small = cv2.resize(x, (max(1, w // 4), max(1, h // 4)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), max(h, w) / 64)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def random_affine(img: np.ndarray, rng: np.random.Generator, degrees: float = 4.0, shift: float = 0.03,
                  scale: float = 0.04, *, strength: float = 1.0) -> np.ndarray:
    """Small random rotation, shift (fraction of the side) and scale, with reflected borders; `strength`
    multiplies all three ranges (a training set's jitter)."""
    degrees, shift, scale = degrees * strength, shift * strength, scale * strength
    h, w = img.shape
    m = np.asarray(cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-degrees, degrees),
                                           1 + rng.uniform(-scale, scale)), np.float64)
    m[:, 2] += rng.uniform(-shift, shift, 2) * (w, h)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def random_photometric(img: np.ndarray, rng: np.random.Generator, *, strength: float = 1.0) -> np.ndarray:
    """Random capture conditions of another session on a grey uint8 image: a smooth illumination field (+-15 %
    over blotches of a fifth to an eighth of the side), gamma (x0.78-1.28), contrast (x0.75-1.1), a blur (sigma
    up to 1 px, half the time) and sensor noise (up to 4 grey levels); `strength` scales every range, 0 is none.
    PolyU's missed genuine pairs gather on second-session captures with bright blotches that CompCode's zero-DC
    filters ignore."""
    if strength <= 0:
        return img
    s = strength
    h, w = img.shape
    x = img.astype(np.float32) / 255.0
    cells = int(rng.integers(5, 9))
    field = cv2.resize(rng.standard_normal((cells, cells)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    x = x * np.exp(0.15 * s * field)
    x = np.clip(x, 0, 1) ** np.exp(rng.uniform(-0.25, 0.25) * s)
    mean = float(x.mean())
    x = mean + (x - mean) * (1 + rng.uniform(-0.25, 0.1) * s)
    if rng.random() < 0.5:
        x = cv2.GaussianBlur(x, (0, 0), 0.3 + 0.7 * s * rng.random())
    x = x + rng.standard_normal(x.shape).astype(np.float32) * (4 / 255) * s * rng.random()
    return np.clip(x * 255 + 0.5, 0, 255).astype(np.uint8)
