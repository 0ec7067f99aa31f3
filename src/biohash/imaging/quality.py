"""Sample quality of a palm ROI (print or vein), computed on every enrollment and probe: four measures on the
image resized to 128 x 128, each with a limit, so that noise, saturated images and photos that are not a
palm ROI are refused with one clear line instead of enrolling a "wolf" template that matches any noise.

- noise:     share of the grey-level variance above a Gaussian blur of sigma 2 px (white noise ~0.94);
- coherence: energy-weighted orientation coherence of the structure tensor (lines and ridges have one
             direction; white noise ~0.13);
- clipped:   share of pixels at the ends of the grey range;
- uneven:    spread of the illumination (blur of sigma 12 px) over the mean grey level: an ROI is evenly
             lit, a whole-hand photo on a dark background or an eye close-up is not.

LIMITS come from calibration palms (`python bench/quality.py`: the even-numbered palms of every real database
in ../shared/data, 14,783 images; their most extreme value with a 10 % margin, rounded); the bench reports
false rejects on the other palms and refusals of noise and non-palm images. The measures follow ISO/IEC 29794's idea of a per-sample
utility score, not its fingerprint-specific algorithms.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from biohash.errors import DatasetError

SIZE = 128
LIMITS = {"noise": ("max", 0.35), "coherence": ("min", 0.22), "clipped": ("max", 0.05), "uneven": ("max", 0.50)}
_WHY = {"noise": "looks like noise", "coherence": "shows no palm lines", "clipped": "is saturated",
        "uneven": "is unevenly lit (not a palm ROI?)"}


class QualityError(DatasetError):
    """A sample below the quality limits (HTTP 400)."""


@dataclass(frozen=True)
class Quality:
    noise: float
    coherence: float
    clipped: float
    uneven: float

    def failures(self) -> list[str]:
        """Names of the measures outside LIMITS, in LIMITS order."""
        values = asdict(self)
        return [k for k, (side, limit) in LIMITS.items() if (values[k] > limit if side == "max" else values[k] < limit)]


def sample_quality(img: np.ndarray) -> Quality:
    """The four measures of a grey (H, W) or RGB (H, W, 3) uint8 image."""
    import cv2

    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img
    g = cv2.resize(grey, (SIZE, SIZE), interpolation=cv2.INTER_AREA).astype(np.float32)
    var = float(g.var()) + 1e-6
    noise = float(((g - cv2.GaussianBlur(g, (0, 0), 2)) ** 2).mean()) / var
    smooth = cv2.GaussianBlur(g, (0, 0), 1)
    gx, gy = cv2.Sobel(smooth, cv2.CV_32F, 1, 0), cv2.Sobel(smooth, cv2.CV_32F, 0, 1)
    jxx, jyy, jxy = (cv2.GaussianBlur(p, (0, 0), 6) for p in (gx * gx, gy * gy, gx * gy))
    coherence = float(np.sqrt((jxx - jyy) ** 2 + 4 * jxy ** 2).sum() / ((jxx + jyy).sum() + 1e-6))
    clipped = float(((g <= 2) | (g >= 253)).mean())
    uneven = float(cv2.GaussianBlur(g, (0, 0), 12).std() / (g.mean() + 1))
    return Quality(noise, coherence, clipped, uneven)


def check_quality(img: np.ndarray, where: str) -> Quality:
    """The image's quality; QualityError (one line, the first failed measure and its limit) when it fails."""
    q = sample_quality(img)
    failed = q.failures()
    if failed:
        name = failed[0]
        side, limit = LIMITS[name]
        raise QualityError(f"{where}: image {_WHY[name]} ({name} {getattr(q, name):.2f}, palms need "
                           f"{'at most' if side == 'max' else 'at least'} {limit:g}): refused for enrollment and "
                           f"matching")
    return q
