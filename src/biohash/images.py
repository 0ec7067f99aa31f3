"""The one image decoder of biohash (dataset adapters, the CLI and the REST service): bytes or a file -> uint8
grey (H, W) or RGB (H, W, 3).

The header is read first (Pillow, no pixels decoded) and an image declaring more than `max_pixels` is refused
before any pixel buffer exists: a 1 MB PNG can declare 32000 x 32000 pixels (a decompression bomb). 16-bit
images (infrared sensors) are stretched to 8 bits between their 1st and 99th percentiles. `check_usable` is
the extra gate for enrollment and probes: a minimum size and a refusal of blank, low-contrast images (two
blank probes would match each other at distance 0).
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np

from biohash.errors import DatasetError

MAX_PIXELS = int(os.environ.get("BIOHASH_MAX_PIXELS", "40000000"))  # 40 MP: any palm or hand camera fits
MIN_SIDE = 32  # pixels; smaller than any ROI a model here takes
MIN_CONTRAST = 4.0  # grey-level standard deviation below which an image is blank for matching


class ImageError(DatasetError):
    """An image that cannot or must not be used; the message says which file or field and why."""


class ImageTooLarge(ImageError):
    """An image declaring more pixels than allowed (refused before decoding; HTTP 413)."""


def _header_size(source) -> tuple[int, int]:
    """(width, height) read by Pillow from the header alone (opening decodes no pixels)."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's own bomb warning: our cap decides
        with Image.open(source) as im:
            return int(im.size[0]), int(im.size[1])


def image_size(data: bytes, where: str) -> tuple[int, int]:
    """(width, height) from the header alone; refuses what Pillow cannot identify as an image."""
    from PIL import Image

    try:
        return _header_size(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise ImageTooLarge(f"{where}: image declares more than {2 * (Image.MAX_IMAGE_PIXELS or 0):,} pixels") from None
    except Exception:  # noqa: BLE001  (Pillow raises many types for non-images; all mean the same here)
        raise ImageError(f"{where}: not a readable image (PNG, JPEG, BMP or TIFF expected)") from None


def unreadable(paths: list[str]) -> list[tuple[str, str]]:
    """(path, reason) of files whose header is not an image: a cheap scan before a long job starts."""
    from PIL import Image

    bad = []
    for path in paths:
        try:
            _header_size(path)
        except Image.DecompressionBombError:
            pass  # an image; decode_image applies the pixel cap when it is read
        except Exception as err:  # noqa: BLE001
            bad.append((path, "not a readable image" if not isinstance(err, OSError) or "identify" in str(err)
                        else str(err)))
    return bad


def decode_image(data: bytes, where: str, colour: bool = False, max_pixels: int | None = None) -> np.ndarray:
    """Decode image bytes; `where` names the file or field in every error."""
    try:  # here, not at the top: a matching-only install imports this module without OpenCV
        import cv2
    except ImportError:
        raise ImageError(f"{where}: decoding images needs OpenCV, which this matching-only install lacks: pip install "
                         f"'biohash[train]' (or 'biohash[export]' to encode with onnxruntime)") from None
    if not data:
        raise ImageError(f"{where}: empty image")
    cap = MAX_PIXELS if max_pixels is None else max_pixels
    w, h = image_size(data, where)
    if w * h > cap:
        raise ImageTooLarge(f"{where}: image is {w}x{h} = {w * h:,} pixels, more than the {cap:,} allowed")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise ImageError(f"{where}: cannot decode the image (corrupt or truncated)")
    if img.dtype != np.uint8:
        lo, hi = np.percentile(img, (1, 99))
        img = (np.clip((img.astype(np.float32) - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
    if colour:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB) if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if img.ndim == 3 else img


def read_image(path: str | Path, colour: bool = False, max_pixels: int | None = None) -> np.ndarray:
    """Read an image file (see decode_image)."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"image not found: {path}")
    return decode_image(path.read_bytes(), str(path), colour, max_pixels)


def check_usable(img: np.ndarray, where: str, min_side: int = MIN_SIDE, min_contrast: float = MIN_CONTRAST) -> np.ndarray:
    """Refuse images too small or too flat to enroll or match; returns the image."""
    h, w = img.shape[:2]
    if min(h, w) < min_side:
        raise ImageError(f"{where}: image is {w}x{h}; at least {min_side}x{min_side} pixels are needed")
    spread = float(img.std())
    if spread < min_contrast:
        raise ImageError(f"{where}: image is blank (grey-level spread {spread:.1f} < {min_contrast:g}): no palm to "
                         f"match")
    return img
