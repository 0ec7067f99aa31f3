import numpy as np
import pytest

from biohash.match import codes
from biohash.match.types import Codes


def _popcount_reference(a: np.ndarray, b: np.ndarray) -> int:
    """Pure-Python Hamming distance of two packed byte rows."""
    return sum(bin(int(x) ^ int(y)).count("1") for x, y in zip(a, b))


@pytest.mark.parametrize("n_bits", [8, 16, 64, 128, 256])
def test_pack_unpack_roundtrip(n_bits):
    bits = np.random.default_rng(n_bits).integers(0, 2, (7, n_bits)).astype(np.uint8)
    packed = codes.pack(bits)
    assert packed.bits.shape == (7, n_bits // 8)
    np.testing.assert_array_equal(codes.unpack(packed), bits)


def test_hamming_matches_pure_python_popcount():
    rng = np.random.default_rng(0)
    a = codes.pack(rng.integers(0, 2, (13, 64)))
    b = codes.pack(rng.integers(0, 2, (9, 64)))
    d = codes.hamming(a, b, block=4)
    ref = np.array([[_popcount_reference(x, y) for y in b.bits] for x in a.bits])
    np.testing.assert_array_equal(d, ref)

    # the one kernel on word codes (np.bitwise_count) against a byte lookup table, at lengths with padding
    table = np.array([bin(i).count("1") for i in range(256)], np.int32)
    for n_bits in (8, 24, 72, 256):
        x, y = codes.pack(rng.integers(0, 2, (6, n_bits))), codes.pack(rng.integers(0, 2, (5, n_bits)))
        lut = table[x.bits[:, None, :] ^ y.bits[None, :, :]].sum(axis=2)
        np.testing.assert_array_equal(codes.word_distances(codes.words(x), codes.words(y)), lut)


def test_hamming_matches_faiss_binary_flat():
    faiss = pytest.importorskip("faiss")
    rng = np.random.default_rng(1)
    a = codes.pack(rng.integers(0, 2, (20, 128)))
    b = codes.pack(rng.integers(0, 2, (50, 128)))
    index = faiss.IndexBinaryFlat(128)
    index.add(b.bits)
    dist, idx = index.search(a.bits, len(b))
    ours = codes.hamming(a, b)
    for row in range(len(a)):
        np.testing.assert_array_equal(np.sort(ours[row]), dist[row])
        np.testing.assert_array_equal(ours[row, idx[row]], dist[row])


def test_binarize_is_sign_and_similarity_range():
    vals = np.array([[0.3, -0.1, 0.0, 2.0, -5, 1, 1, -1]])
    np.testing.assert_array_equal(codes.binarize(vals), [[1, 0, 0, 1, 0, 1, 1, 0]])
    c = codes.from_real(vals)
    assert codes.similarity(c, c)[0, 0] == 1.0
    flipped = codes.from_real(-vals)
    assert codes.hamming(c, flipped)[0, 0] == 8 - 1  # the zero stays 0 in both


def test_bad_lengths_are_clear_errors():
    with pytest.raises(ValueError, match="multiple of 8"):
        codes.pack(np.zeros((2, 12), np.uint8))
    with pytest.raises(ValueError, match="uint8 of shape"):
        Codes(np.zeros((2, 3), np.uint8), 64)
    with pytest.raises(ValueError, match="code lengths differ"):
        codes.hamming(codes.pack(np.zeros((1, 8))), codes.pack(np.zeros((1, 16))))
    with pytest.raises(ValueError, match="0/1"):
        codes.pack(np.full((1, 8), 2))


def test_asymmetric_similarity_is_the_cosine_of_a_real_probe_and_a_stored_code():
    """The probe's real vector against the gallery's signs (the 32-byte template), checked by hand on an 8-bit
    code, then against float cosines on random data; the gallery side alone is binarised."""
    gallery = codes.from_real(np.array([[1, -1, 1, 1, 1, 1, 1, 1], [-1] * 8], np.float32))
    probe = np.array([[0.6, -0.8, 0, 0, 0, 0, 0, 0]], np.float32)  # unit length
    expected = np.array([[(0.6 + 0.8) / np.sqrt(8), (-0.6 + 0.8) / np.sqrt(8)]])
    assert np.allclose(codes.asymmetric_similarity(probe, gallery), expected, atol=1e-6)
    rng = np.random.default_rng(0)
    p, g = rng.normal(size=(5, 72)).astype(np.float32), rng.normal(size=(7, 72)).astype(np.float32)
    signs = np.where(g >= 0, 1.0, -1.0)
    cos = (p / np.linalg.norm(p, axis=1, keepdims=True)) @ (signs / np.sqrt(72)).T
    assert np.allclose(codes.asymmetric_similarity(p, codes.from_real(g)), cos, atol=1e-5)
    with pytest.raises(ValueError, match="probe has 3 values per row, codes have 72 bits"):
        codes.asymmetric_similarity(np.zeros((1, 3), np.float32), codes.from_real(g))
