"""The one image decoder of biohash (dataset adapters, the CLI and the REST service): bytes or a file -> uint8
grey (H, W) or RGB (H, W, 3).

The header is read first (Pillow, no pixels decoded) and an image declaring more than `max_pixels`, or whose
decoded buffer (width x height x channels x bytes per sample) would pass `MAX_DECODED_BYTES`, is refused before
any pixel buffer exists: a 1 MB PNG can declare 32000 x 32000 pixels, and a 300 kB 16-bit RGBA PNG under the
pixel cap decodes to 300 MB. At most `MAX_DECODING` images decode at once per process. 16-bit images (infrared
sensors) are stretched to 8 bits between their 1st and 99th percentiles, in place (no float copy). `check_usable` is
the extra gate for enrollment and probes: a minimum size and a refusal of blank, low-contrast images (two
blank probes would match each other at distance 0).
"""
from __future__ import annotations

import io
import struct
import threading
import warnings
from pathlib import Path

import numpy as np

from biohash.errors import DatasetError

MAX_PIXELS = 40_000_000  # 40 MP: any palm or hand camera fits (serve --max-pixels changes it per service)
MAX_DECODED_BYTES = 160 * 2**20  # a 40 MP 8-bit RGB photo (120 MB) fits; a 6300^2 16-bit RGBA PNG (318 MB) does not
MAX_DECODING = 2  # images decoding at once per process: the peak memory is about this many decoded buffers
_DECODING = threading.BoundedSemaphore(MAX_DECODING)
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


_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 4, 6: 4}  # colour type -> channels OpenCV decodes (palette to BGR, grey+alpha
# to BGRA)


def decoded_bytes(data: bytes, width: int, height: int) -> int:
    """Bytes of the buffer OpenCV will decode `data` into, from the header alone: PNG's IHDR gives bit depth and
    colour type (Pillow reports a 16-bit RGBA PNG as 8-bit RGBA); other formats by Pillow's mode and raw mode."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 26 and data[12:16] == b"IHDR":
        depth, colour = struct.unpack(">BB", data[24:26])
        return width * height * _PNG_CHANNELS.get(colour, 4) * (2 if depth == 16 else 1)
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Image.open(io.BytesIO(data)) as im:
            raw = " ".join([im.mode] + [str(t[3]) for t in (im.tile or [])])
            channels = 3 if im.mode == "P" else len(im.getbands())
    sample = 4 if im.mode in ("I", "F") or "32" in raw else 2 if "16" in raw else 1
    return width * height * channels * sample


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
    size = decoded_bytes(data, w, h)
    if size > MAX_DECODED_BYTES:
        raise ImageTooLarge(f"{where}: image is {w}x{h} and decodes to {size / 2**20:,.0f} MB (bit depth and "
                            f"channels), more than the {MAX_DECODED_BYTES / 2**20:,.0f} MB allowed")
    with _DECODING:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if img is None or img.size == 0:
            raise ImageError(f"{where}: cannot decode the image (corrupt or truncated)")
        return _to_uint8(img, colour, cv2)


def _to_uint8(img: np.ndarray, colour: bool, cv2) -> np.ndarray:
    """Drop alpha, convert to grey (or RGB) and then to 8 bits; deeper images stretched between their 1st and
    99th percentiles (of at most ~1M samples), clipped in place: no float copy of a large image."""
    channels = img.shape[2] if img.ndim == 3 else 1
    if colour:
        img = cv2.cvtColor(img, {1: cv2.COLOR_GRAY2RGB, 3: cv2.COLOR_BGR2RGB, 4: cv2.COLOR_BGRA2RGB}[channels])
    elif channels > 1:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY if channels == 4 else cv2.COLOR_BGR2GRAY)
    if img.dtype == np.uint8:
        return img
    step = max(1, int(np.sqrt(img.shape[0] * img.shape[1] / 1e6)))
    lo, hi = (float(v) for v in np.percentile(img[::step, ::step], (1, 99)))
    np.clip(img, lo, hi, out=img, casting="unsafe")
    scale = 255.0 / max(hi - lo, 1e-6)
    return cv2.convertScaleAbs(img, alpha=scale, beta=-lo * scale)


def read_image(path: str | Path, colour: bool = False, max_pixels: int | None = None) -> np.ndarray:
    """Read an image file (see decode_image)."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"image not found: {path}")
    return decode_image(path.read_bytes(), str(path), colour, max_pixels)


def check_usable(img: np.ndarray, where: str, min_side: int = MIN_SIDE, min_contrast: float = MIN_CONTRAST) -> np.ndarray:
    """Refuse images too small, too flat or below the sample quality limits (biohash.imaging.quality: noise, saturated,
    unevenly lit) to enroll or match; returns the image."""
    h, w = img.shape[:2]
    if min(h, w) < min_side:
        raise ImageError(f"{where}: image is {w}x{h}; at least {min_side}x{min_side} pixels are needed")
    spread = float(img.std())
    if spread < min_contrast:
        raise ImageError(f"{where}: image is blank (grey-level spread {spread:.1f} < {min_contrast:g}): no palm to "
                         f"match")
    from biohash.imaging.quality import QualityError, check_quality

    try:
        check_quality(img, where)
    except QualityError as err:
        raise ImageError(str(err)) from None
    return img
