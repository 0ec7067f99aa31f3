"""Service security II (issue 23): memory bombs under the pixel cap, rank and band oracles, the sample quality
gate, fused identify over partly enrolled subjects, error bodies, abuse limits and key files; each test was
an attack or an operator's mistake that worked on the main before it."""
from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

OPERATOR = "operator-key-0123456789abcdef"
H = {"X-API-Key": OPERATOR}


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(w: int, h: int, depth: int, colour: int, channels: int) -> bytes:
    """A valid PNG of zeros written by hand (any bit depth and colour type), compressed about 1000:1."""
    z = zlib.compressobj(6)
    row = b"\x00" * (w * channels * depth // 8 + 1)
    idat = b"".join(z.compress(row) for _ in range(h)) + z.flush()
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0))
            + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def rgba16_bomb() -> bytes:
    return _png(6300, 6300, 16, 6, 4)  # 39.7 MP (under the 40 MP cap), 318 MB decoded, ~300 kB sent


def test_a_deep_png_under_the_pixel_cap_is_refused_before_decoding(rgba16_bomb, monkeypatch):
    from biohash.images import ImageTooLarge, decode_image

    assert len(rgba16_bomb) < 400_000
    monkeypatch.setattr(cv2, "imdecode", lambda *a: pytest.fail("decoded a bomb"))
    with pytest.raises(ImageTooLarge, match=r"6300x6300 and decodes to 303 MB"):
        decode_image(rgba16_bomb, "print")


@pytest.mark.parametrize("shape,dtype,ext", [((40, 50), np.uint8, ".png"), ((40, 50, 3), np.uint16, ".png"),
                                             ((40, 50, 4), np.uint16, ".png"), ((40, 50, 4), np.uint8, ".png"),
                                             ((40, 50), np.uint16, ".tiff"), ((40, 50, 3), np.uint8, ".jpg"),
                                             ((40, 50, 3), np.uint16, ".tiff"), ((40, 50, 3), np.uint8, ".bmp")])
def test_the_decoded_size_read_from_the_header_is_what_opencv_decodes(shape, dtype, ext):
    from biohash.images import decoded_bytes

    data = cv2.imencode(ext, np.zeros(shape, dtype))[1].tobytes()
    assert decoded_bytes(data, 50, 40) == cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED).nbytes


def test_palette_and_grey_alpha_pngs_count_what_opencv_expands_them_to():
    from biohash.images import decoded_bytes

    for colour, depth, channels in ((3, 8, 1), (4, 8, 2), (4, 16, 2)):
        data = _png(20, 10, depth, colour, channels) if colour != 3 else None
        if data is None:  # a palette PNG needs a PLTE chunk
            z = zlib.compress(b"".join(b"\x00" + b"\x00" * 20 for _ in range(10)))
            data = (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 20, 10, 8, 3, 0, 0, 0))
                    + _chunk(b"PLTE", b"\x00\x00\x00") + _chunk(b"IDAT", z) + _chunk(b"IEND", b""))
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        assert decoded_bytes(data, 20, 10) == decoded.nbytes, (colour, depth)


def test_sixteen_bit_images_still_decode_to_stretched_eight_bits():
    from biohash.images import decode_image

    ramp = np.tile(np.linspace(1000, 50_000, 64), (48, 1)).astype(np.uint16)
    img = decode_image(cv2.imencode(".png", np.dstack([ramp] * 4))[1].tobytes(), "vein")
    assert img.dtype == np.uint8 and img.shape == (48, 64)
    assert img[:, 0].max() == 0 and img[:, -1].min() == 255 and np.all(np.diff(img[0].astype(int)) >= 0)
