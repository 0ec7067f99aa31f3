"""Cancellable templates: same-key distances unchanged, cross-key templates unlinkable, revocation."""
from __future__ import annotations

import numpy as np
import pytest

from biohash.match.codes import hamming, pack
from biohash.match.protect import Protector, key_id, new_key
from test_matching import clustered


def test_same_key_keeps_every_distance_and_inverts():
    codes, _ = clustered(20, 4, 128, 0.1, seed=0)
    p = Protector(new_key(), 128)
    protected = p.protect(codes)
    assert np.array_equal(hamming(protected, protected), hamming(codes, codes))
    assert not np.array_equal(protected.bits, codes.bits)
    assert np.array_equal(p.unprotect(protected).bits, codes.bits)
    assert np.array_equal(Protector(b"k" * 32, 128).protect(codes).bits, Protector(b"k" * 32, 128).protect(codes).bits)


def test_templates_under_two_keys_look_like_impostors():
    codes, labels = clustered(200, 2, 128, 0.1, seed=1)
    first, second = codes.bits[0::2], codes.bits[1::2]  # two captures of each person
    keys = np.random.default_rng(11)  # seeded keys: the figures below are the same on every run
    k1, k2 = Protector(keys.bytes(32), 128), Protector(keys.bytes(32), 128)
    a = k1.protect(pack(np.unpackbits(first, axis=1)))
    b_same = k1.protect(pack(np.unpackbits(second, axis=1)))
    b_other = k2.protect(pack(np.unpackbits(second, axis=1)))
    genuine_same_key = hamming(a, b_same).diagonal()
    mated_cross_key = hamming(a, b_other).diagonal()
    impostor = hamming(a, b_same)[~np.eye(200, dtype=bool)]
    assert genuine_same_key.mean() < 0.25 * 128  # still matches under one key
    # unlinkability: the same person under two keys is indistinguishable from impostors
    assert abs(mated_cross_key.mean() - impostor.mean()) < 2.0 and abs(impostor.mean() - 64) < 2.0
    assert mated_cross_key.min() > genuine_same_key.max()


def test_revoked_key_templates_no_longer_match():
    codes, _ = clustered(1, 2, 64, 0.05, seed=2)
    enrolled = Protector(b"old key, revoked" * 2, 64).protect(pack(np.unpackbits(codes.bits[:1], axis=1)))
    probe_new = Protector(b"new key, current" * 2, 64).protect(pack(np.unpackbits(codes.bits[1:], axis=1)))
    assert hamming(enrolled, probe_new)[0, 0] > 16


def test_key_errors_and_ids():
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Protector(b"short", 64)
    with pytest.raises(ValueError, match="protects 64-bit codes, got 128-bit"):
        Protector(new_key(), 64).protect(pack(np.zeros((1, 128), np.uint8)))
    k = new_key()
    assert key_id(k) == key_id(k) and key_id(k) != key_id(new_key()) and len(key_id(k)) == 16


def linkability_of_protection(people: int = 400, flip: float = 0.1, seed: int = 5) -> dict[str, float]:
    """D<->sys (ISO/IEC 30136 linkability) of templates of the same people protected under two keys, against an
    attacker who only compares templates; the same key and no protection as references."""
    from biohash.match.metrics import linkability

    codes, _ = clustered(people, 2, 128, flip, seed=seed)
    first = pack(np.unpackbits(codes.bits[0::2], axis=1))
    second = pack(np.unpackbits(codes.bits[1::2], axis=1))
    off = ~np.eye(people, dtype=bool)
    out = {}
    keys = np.random.default_rng(seed)  # seeded keys: one answer on every run
    for name, (pa, pb) in {"two keys": (Protector(keys.bytes(32), 128), Protector(keys.bytes(32), 128)),
                           "one key": (Protector(b"k" * 32, 128),) * 2}.items():
        d = -hamming(pa.protect(first), pb.protect(second)).astype(float)  # similarity: higher = more alike
        out[name] = linkability(d.diagonal(), d[off], bins=40)
    return out


def test_templates_under_two_keys_are_unlinkable_by_the_iso_30136_measure():
    d = linkability_of_protection()
    assert d["two keys"] < 0.1  # mated and non-mated cross-key scores overlap: nothing to link
    assert d["one key"] > 0.9  # the measure does see links where they exist
