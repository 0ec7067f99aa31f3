"""Multi-index hashing answers exactly what the full scan answers: range search at every radius and k nearest,
on identity-structured codes (noisy captures of a few hundred people), through adds, removals and a tail."""
from __future__ import annotations

import numpy as np
import pytest

from biohash.match.codes import pack
from biohash.match.matching import ExactMatcher, make_matcher
from biohash.match.mih import MultiIndexMatcher
from biohash.match.types import Codes


def _captures(bits: int, people: int = 300, per: int = 4, flip: float = 0.12, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.integers(0, 2, (people, bits), dtype=np.uint8)
    who = np.repeat(np.arange(people), per)
    gallery = pack(centres[who] ^ (rng.random((len(who), bits)) < flip).astype(np.uint8))
    probes = pack(centres[rng.choice(people, 40)] ^ (rng.random((40, bits)) < flip).astype(np.uint8))
    return gallery, probes


def _scan_within(exact: ExactMatcher, probes: Codes, radius: int):
    d, ids = exact.search(probes, len(exact))
    return [(row_d[row_d <= radius], row_i[row_d <= radius]) for row_d, row_i in zip(d, ids)]


@pytest.mark.parametrize("bits", [64, 128, 256])
def test_range_search_returns_exactly_the_scans_answers(bits):
    gallery, probes = _captures(bits)
    mih, exact = MultiIndexMatcher(bits), ExactMatcher(bits)
    ids = np.arange(1000, 1000 + len(gallery))
    for m in (mih, exact):
        m.add(ids, gallery)
    for radius in (0, bits // 16, bits // 8, bits // 5, bits // 3, bits // 2):
        got, want = mih.range_search(probes, radius), _scan_within(exact, probes, radius)
        for (gd, gi), (wd, wi) in zip(got, want):
            assert np.array_equal(gd, wd) and np.array_equal(gi, wi), radius
    assert sum(len(d) for d, _ in mih.range_search(probes, bits // 5)) >= len(probes)  # genuine ones are found


def test_k_nearest_search_matches_the_scan_through_adds_removals_and_the_tail():
    gallery, probes = _captures(128, people=500)
    mih, exact = make_matcher(128, "mih"), ExactMatcher(128)
    assert isinstance(mih, MultiIndexMatcher)
    half = len(gallery) // 2
    for m in (mih, exact):
        m.add(np.arange(half), Codes(gallery.bits[:half], 128))
    mih.search(probes, 1)  # builds the tables over the first half
    for m in (mih, exact):
        m.add(np.arange(half, half + 10), Codes(gallery.bits[half:half + 10], 128))  # a tail, scanned exactly
    for k in (1, 5, 20):
        assert all(np.array_equal(a, b) for a, b in zip(mih.search(probes, k), exact.search(probes, k)))
    for m in (mih, exact):
        m.remove(np.arange(0, half, 3))
        m.add(np.arange(half + 10, len(gallery)), Codes(gallery.bits[half + 10:], 128))
    for k in (1, 5):
        assert all(np.array_equal(a, b) for a, b in zip(mih.search(probes, k), exact.search(probes, k)))
    assert len(mih) == len(exact) and np.array_equal(mih.distances(probes, [1, 2]), exact.distances(probes, [1, 2]))


def test_codes_that_do_not_cut_into_16_bit_substrings_are_refused():
    with pytest.raises(ValueError, match="16-bit substrings: 40 bits"):
        MultiIndexMatcher(40)
