"""Binary codes: binarize real-valued outputs, pack/unpack bits, Hamming distances (numpy only).

Codes are packed 8 bits per byte; lengths are always counted in bits and checked at the boundary.
"""
from __future__ import annotations

import numpy as np

from biohash.types import Codes

# popcount of every byte value, used for table-driven Hamming distance
_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


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


def hamming(a: Codes, b: Codes, *, block: int = 1024) -> np.ndarray:
    """All-pairs Hamming distances in bits, int32 of shape (len(a), len(b)).

    XOR of packed bytes and a 256-entry popcount table, in row blocks to bound memory.
    """
    _check_pair(a, b)
    out = np.empty((len(a), len(b)), dtype=np.int32)
    xb = b.bits
    for start in range(0, len(a), block):
        xa = a.bits[start : start + block]
        x = np.bitwise_xor(xa[:, None, :], xb[None, :, :])
        out[start : start + block] = _POPCOUNT8[x].sum(axis=2, dtype=np.int32)
    return out


def hamming_pairs(a: Codes, b: Codes) -> np.ndarray:
    """Row-wise Hamming distances between a[i] and b[i], int32 of shape (n,)."""
    _check_pair(a, b)
    if len(a) != len(b):
        raise ValueError(f"hamming_pairs needs equal counts, got {len(a)} and {len(b)}")
    return _POPCOUNT8[np.bitwise_xor(a.bits, b.bits)].sum(axis=1, dtype=np.int32)


def similarity(a: Codes, b: Codes) -> np.ndarray:
    """1 - normalised Hamming distance, float32 (len(a), len(b)); 1 means identical codes."""
    return 1.0 - hamming(a, b).astype(np.float32) / a.n_bits


def concat(parts: list[Codes]) -> Codes:
    """Stack code sets of equal length."""
    if not parts:
        raise ValueError("concat needs at least one Codes")
    n_bits = parts[0].n_bits
    for p in parts:
        if p.n_bits != n_bits:
            raise ValueError(f"code lengths differ: {n_bits} vs {p.n_bits} bits")
    return Codes(np.concatenate([p.bits for p in parts]), n_bits)
