"""Binary codes: binarize real-valued outputs, pack/unpack bits, Hamming distances (numpy only).

Codes are packed 8 bits per byte; lengths are always counted in bits and checked at the boundary.
"""
from __future__ import annotations

import numpy as np

from biohash.match.types import Codes, RelaxedCodes


def binarize(values: np.ndarray) -> np.ndarray:
    """Sign of real-valued outputs as bits: 1 where value > 0, else 0. Shape (n, n_bits) -> uint8 (n, n_bits)."""
    values = np.asarray(values)
    if values.ndim != 2:
        raise ValueError(f"binarize expects a 2-D array (n, n_bits), got shape {values.shape}")
    return (values > 0).astype(np.uint8)


def pack(bits: np.ndarray) -> Codes:
    """Pack a 0/1 array (n, n_bits) into Codes; n_bits must be a multiple of 8."""
    bits = np.asarray(bits)
    if bits.ndim != 2:
        raise ValueError(f"pack expects a 2-D 0/1 array (n, n_bits), got shape {bits.shape}")
    if bits.shape[1] % 8:
        raise ValueError(f"code length must be a multiple of 8 bits, got {bits.shape[1]}")
    if bits.size and not np.isin(bits, (0, 1)).all():
        raise ValueError("pack expects only 0/1 values; use binarize() on real-valued outputs first")
    return Codes(np.packbits(bits.astype(np.uint8), axis=1), bits.shape[1])


def unpack(codes: Codes) -> np.ndarray:
    """Inverse of pack: uint8 0/1 array (n, n_bits)."""
    return np.unpackbits(codes.bits, axis=1, count=codes.n_bits)


def from_real(values: np.ndarray) -> Codes:
    """Binarize by sign and pack in one step."""
    return pack(binarize(values))


def _check_pair(a: Codes, b: Codes) -> None:
    if a.n_bits != b.n_bits:
        raise ValueError(f"code lengths differ: {a.n_bits} bits vs {b.n_bits} bits")


def words(codes: Codes) -> np.ndarray:
    """Packed bytes -> uint64 words (zero-padded to a multiple of 64 bits; zeros never change a distance)."""
    b = codes.bits
    pad = (-b.shape[1]) % 8
    if pad:
        b = np.concatenate([b, np.zeros((len(b), pad), np.uint8)], axis=1)
    return np.ascontiguousarray(b).view(np.uint64)


def word_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distances between uint64-word codes a (n, w) and b (m, w), int32 (n, m): the one kernel
    (XOR and a hardware popcount, np.bitwise_count) behind hamming, the matchers' 1:1 distances and MIH."""
    return np.bitwise_count(a[:, None, :] ^ b[None, :, :]).sum(axis=2, dtype=np.int32)


def hamming(a: Codes, b: Codes, *, block: int = 1024) -> np.ndarray:
    """All-pairs Hamming distances in bits, int32 of shape (len(a), len(b)), in row blocks to bound memory."""
    _check_pair(a, b)
    out = np.empty((len(a), len(b)), dtype=np.int32)
    wa, wb = words(a), words(b)
    for start in range(0, len(a), block):
        out[start : start + block] = word_distances(wa[start : start + block], wb)
    return out


def similarity(a: Codes, b: Codes) -> np.ndarray:
    """1 - normalised Hamming distance, float32 (len(a), len(b)); 1 means identical codes."""
    return 1.0 - hamming(a, b).astype(np.float32) / a.n_bits


def asymmetric_similarity(probe: np.ndarray, gallery: Codes) -> np.ndarray:
    """Cosine of each probe's real vector (n, bits) and each stored code read as +-1 (m codes): (n, m) float32.

    Asymmetric matching: the gallery keeps its packed code (the template size does not change) while the probe,
    encoded live, is not binarised, so only one side pays the sign's quantization error.
    """
    probe = np.asarray(probe, np.float32)
    if probe.ndim != 2 or probe.shape[1] != gallery.n_bits:
        raise ValueError(f"probe has {probe.shape[-1]} values per row, codes have {gallery.n_bits} bits")
    unit = probe / (np.linalg.norm(probe, axis=1, keepdims=True) + 1e-12)
    # x . s = 2 * (x . b) - sum(x) for signs s = 2b - 1 of the bits b
    dots = 2.0 * unit @ unpack(gallery).T.astype(np.float32) - unit.sum(axis=1, keepdims=True)
    return (dots / np.sqrt(gallery.n_bits)).astype(np.float32)


def asymmetric_distance(probe: np.ndarray, gallery: Codes) -> np.ndarray:
    """asymmetric_similarity as a distance in bits, bits * (1 - cosine) / 2, float32 (n, m): for a probe of exact
    +-1 values it is the Hamming distance, so thresholds, score bands and fusion keep their scale."""
    return (gallery.n_bits * (1.0 - asymmetric_similarity(probe, gallery)) / 2.0).astype(np.float32)


def relaxed_from_real(values: np.ndarray) -> RelaxedCodes:
    """Binarize by sign and keep the values: a probe that can be matched by Hamming or asymmetric distance."""
    values = np.ascontiguousarray(values, np.float32)
    codes = from_real(values)
    return RelaxedCodes(codes.bits, codes.n_bits, values)
