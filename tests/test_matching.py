"""Matchers: the exact numpy back-end against faiss on random and identity-clustered codes; removal, errors,
fusion."""
from __future__ import annotations

import numpy as np
import pytest

from biohash.match.codes import hamming, pack
from biohash.match.matching import ExactMatcher, make_matcher
from biohash.match.types import Codes


def clustered(n_ids: int, per_id: int, bits: int, flip: float, seed: int) -> tuple[Codes, np.ndarray]:
    """Codes of n_ids identities, each capture its identity's centre with a fraction `flip` of bits flipped."""
    rng = np.random.default_rng(seed)
    centres = rng.integers(0, 2, (n_ids, bits)).astype(np.uint8)
    labels = np.repeat(np.arange(n_ids), per_id)
    noise = (rng.random((len(labels), bits)) < flip).astype(np.uint8)
    return pack(centres[labels] ^ noise), labels


@pytest.mark.parametrize("bits", [64, 128, 72])
def test_exact_matches_brute_force_reference(bits):
    rng = np.random.default_rng(bits)
    g = pack(rng.integers(0, 2, (500, bits)).astype(np.uint8))
    q = pack(rng.integers(0, 2, (7, bits)).astype(np.uint8))
    m = ExactMatcher(bits, block=128)  # several chunks
    m.add(np.arange(500) * 3, g)
    d, ids = m.search(q, 10)
    ref = hamming(q, g)
    assert np.array_equal(d, np.sort(ref, axis=1)[:, :10])
    assert np.array_equal(ref[np.arange(7)[:, None], ids // 3], d)
    assert np.array_equal(m.distances(q, [0, 3, 6]), ref[:, :3])


@pytest.mark.parametrize("factory", ["BFlat", "BIVF16:nprobe=16", "BHNSW16:efSearch=64"])
def test_faiss_agrees_with_exact_on_random_and_clustered_codes(factory):
    rng = np.random.default_rng(0)
    random_codes = pack(rng.integers(0, 2, (2000, 128)).astype(np.uint8))
    clustered_codes, _ = clustered(200, 10, 128, 0.1, seed=1)
    for gallery in (random_codes, clustered_codes):
        queries = Codes(gallery.bits[::97].copy(), 128)
        exact, other = make_matcher(128, "exact"), make_matcher(128, factory)
        ids = np.arange(len(gallery)) + 1000
        exact.add(ids, gallery)
        other.add(ids, gallery)
        d_e, _ = exact.search(queries, 5)
        d_o, i_o = other.search(queries, 5)
        assert np.array_equal(d_e[:, 0], d_o[:, 0])  # every back-end finds the query itself (distance 0)
        if factory == "BFlat":
            assert np.array_equal(d_e, d_o)  # exact search: the same distances at every rank
        assert np.array_equal(exact.distances(queries, i_o[:, 0]).diagonal(), d_o[:, 0])


def test_identity_clustered_search_finds_the_identity():
    codes, labels = clustered(100, 5, 128, 0.15, seed=3)
    enrolled = np.arange(0, 500, 5)  # first capture of each identity
    probes = np.setdiff1d(np.arange(500), enrolled)
    # exact and HNSW find nearly every identity; IVF probing half its lists misses some (it is approximate)
    for factory, floor in (("exact", 0.99), ("BHNSW16", 0.99), ("BIVF8:nprobe=8", 0.99), ("BIVF8:nprobe=4", 0.8)):
        m = make_matcher(128, factory)
        m.add(enrolled, Codes(codes.bits[enrolled], 128))
        _, ids = m.search(Codes(codes.bits[probes], 128), 1)
        assert (labels[ids[:, 0]] == labels[probes]).mean() > floor, factory


@pytest.mark.parametrize("factory", ["exact", "BFlat", "BIVF4:nprobe=4", "BHNSW8"])
def test_remove_and_padding(factory):
    rng = np.random.default_rng(5)
    g = pack(rng.integers(0, 2, (200, 64)).astype(np.uint8))
    m = make_matcher(64, factory)
    m.add(np.arange(200), g)
    q = Codes(g.bits[:1].copy(), 64)
    assert m.search(q, 1)[1][0, 0] == 0
    assert m.remove([0, 12345]) == 1 and len(m) == 199
    d, ids = m.search(q, 1)
    assert ids[0, 0] != 0 and d[0, 0] > 0
    small = make_matcher(64, factory if factory != "BIVF4:nprobe=4" else "exact")
    small.add([7], Codes(g.bits[:1].copy(), 64))
    d, ids = small.search(q, 3)
    assert ids[0].tolist() == [7, -1, -1] and d[0, 1] == 65  # fewer than k: padded


def test_matcher_errors():
    m = make_matcher(64)
    with pytest.raises(ValueError, match="holds 64-bit codes, got 128-bit"):
        m.add([1], pack(np.zeros((1, 128), np.uint8)))
    m.add([1], pack(np.zeros((1, 64), np.uint8)))
    with pytest.raises(ValueError, match="already present"):
        m.add([1], pack(np.zeros((1, 64), np.uint8)))
    with pytest.raises(ValueError, match="2 ids for 1 codes"):
        m.add([2, 3], pack(np.zeros((1, 64), np.uint8)))
    with pytest.raises(KeyError, match="unknown template ids"):
        m.distances(pack(np.zeros((1, 64), np.uint8)), [9])
    with pytest.raises(ValueError, match="unknown matcher"):
        make_matcher(64, "IVF1024")


def test_matchers_come_from_a_registry_users_can_extend():
    from biohash.errors import UnknownNameError
    from biohash.match.matching import MATCHERS, ExactMatcher, make_matcher

    assert isinstance(make_matcher(64, "exact"), ExactMatcher)
    assert make_matcher(64, "BIVF16:nprobe=4").params == {"nprobe": 4}

    @MATCHERS.register("test_brute_force")
    def brute(n_bits, spec, threads=1):
        return ExactMatcher(n_bits, threads=1)

    assert isinstance(make_matcher(64, "test_brute_force"), ExactMatcher)
    with pytest.raises(UnknownNameError, match="unknown matcher 'annoy'; expected one of: BFlat, BHNSW, BIVF, exact"):
        make_matcher(64, "annoy")


@pytest.mark.parametrize("factory", ["exact", "BFlat", "BHNSW16", "mih"])
def test_every_matcher_hands_back_the_codes_it_holds(factory):
    """What asymmetric identify rescores its Hamming shortlist with: the stored code of each template id."""
    rng = np.random.default_rng(8)
    codes = pack(rng.integers(0, 2, (50, 64)))
    m = make_matcher(64, factory)
    m.add(np.arange(100, 150), codes)
    assert np.array_equal(m.codes_of(np.array([149, 100, 120])).bits, codes.bits[[49, 0, 20]])
    m.remove(np.array([120]))
    with pytest.raises(KeyError, match="120"):
        m.codes_of(np.array([120]))
