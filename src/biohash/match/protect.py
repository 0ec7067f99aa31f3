"""Cancellable templates: a keyed, renewable transform of binary codes (numpy only).

Under key K a code c becomes t = permute_K(c) XOR mask_K. Both operations are bijections that preserve the
Hamming distance between two codes transformed with the same key, so matching accuracy is unchanged; with
different keys the same person's templates look unrelated (distances near bits / 2, like impostors). Revoke
a key, re-enroll with a new one: old templates no longer match. The permutation and the mask are derived
from the key by HMAC-SHA256 in counter mode (a per-deployment key, or one per subject).
"""
from __future__ import annotations

import hashlib
import hmac
import secrets

import numpy as np

from biohash.match.codes import pack, unpack
from biohash.match.types import Codes, RelaxedCodes


def new_key() -> bytes:
    """A fresh random 256-bit key."""
    return secrets.token_bytes(32)


def key_id(key: bytes) -> str:
    """A short public name of a key (stored with templates; the key itself never is)."""
    return hashlib.sha256(b"biohash-key-id" + key).hexdigest()[:16]


def _stream(key: bytes, label: bytes, n_bytes: int) -> np.ndarray:
    out, counter = b"", 0
    while len(out) < n_bytes:
        out += hmac.new(key, label + counter.to_bytes(8, "big"), hashlib.sha256).digest()
        counter += 1
    return np.frombuffer(out[:n_bytes], dtype=np.uint8)


class Protector:
    """The keyed transform for one key and code length."""

    def __init__(self, key: bytes, n_bits: int) -> None:
        if len(key) < 16:
            raise ValueError(f"a protection key needs at least 16 bytes, got {len(key)}")
        if n_bits <= 0 or n_bits % 8:
            raise ValueError(f"n_bits must be a positive multiple of 8, got {n_bits}")
        self.n_bits, self.key_id = n_bits, key_id(key)
        randomness = _stream(key, b"perm", 8 * n_bits).view(np.uint64)
        self.permutation = np.argsort(randomness, kind="stable")  # a uniformly random permutation of positions
        self.mask = _stream(key, b"mask", n_bits // 8)

    def protect(self, codes: Codes) -> Codes:
        """The keyed transform; a RelaxedCodes probe comes back as RelaxedCodes whose values' signs are the
        transformed code (asymmetric distances are kept as Hamming distances are)."""
        if codes.n_bits != self.n_bits:
            raise ValueError(f"this key protects {self.n_bits}-bit codes, got {codes.n_bits}-bit codes")
        permuted = pack(unpack(codes)[:, self.permutation])
        protected = np.bitwise_xor(permuted.bits, self.mask[None, :])
        if isinstance(codes, RelaxedCodes):  # a live probe's values: the same permutation, negated where masked
            flip = 1.0 - 2.0 * np.unpackbits(self.mask).astype(np.float32)
            return RelaxedCodes(protected, self.n_bits, codes.values[:, self.permutation] * flip[None, :])
        return Codes(protected, self.n_bits)

    def unprotect(self, codes: Codes) -> Codes:
        """Inverse transform (for key rotation by someone holding the key; matching never needs it)."""
        if codes.n_bits != self.n_bits:
            raise ValueError(f"this key protects {self.n_bits}-bit codes, got {codes.n_bits}-bit codes")
        bits = unpack(Codes(np.bitwise_xor(codes.bits, self.mask[None, :]), self.n_bits))
        out = np.empty_like(bits)
        out[:, self.permutation] = bits
        return pack(out)
