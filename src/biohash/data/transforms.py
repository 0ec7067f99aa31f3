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
    """Grey image -> float32 (1, size, size), zero mean and unit variance per image (robust to illumination)."""
    img = check_grey(img)
    if img.shape != (size, size):
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    x = img.astype(np.float32)
    x = (x - x.mean()) / (x.std() + 1.0)
    return x[None]


def random_affine(img: np.ndarray, rng: np.random.Generator, degrees: float = 4.0, shift: float = 0.03,
                  scale: float = 0.04) -> np.ndarray:
    """Small random rotation, shift (fraction of the side) and scale, with reflected borders."""
    h, w = img.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-degrees, degrees), 1 + rng.uniform(-scale, scale))
    m[:, 2] += rng.uniform(-shift, shift, 2) * (w, h)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
