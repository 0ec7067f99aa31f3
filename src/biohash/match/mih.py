"""Multi-index hashing (Norouzi, Punjani and Fleet, CVPR 2012): exact Hamming range search without a full scan.

A code is cut into m substrings of s bits. If two codes differ in at most r bits, then in at least one
substring they differ in at most floor(r / m) bits (pigeonhole). So every template within r bits of a query
is among the templates whose j-th substring lies within floor(r / m) bits of the query's, for some j: m
table lookups of the C(s, 0) + ... + C(s, floor(r/m)) neighbouring values each, then a full Hamming check of
those candidates. Answers are exactly a scan's. It pays off where decisions are radii (verification and
identification at a threshold) and the radius is small against the code length; for k nearest neighbours
far away (impostors only) it falls back to the scan.

Each table holds the template rows sorted by one substring, a copy of their codes in that order (a lookup
reads whole buckets from contiguous memory) and a bucket offset per value (2^s + 1, s = 16): memory is m + 1
copies of the codes. Tables are rebuilt lazily after a removal; templates added since the last build sit in a tail that is scanned exactly, and the tables
are rebuilt once the tail passes 1/16 of them.
"""
from __future__ import annotations

from itertools import combinations

import numpy as np

from biohash.match.codes import word_distances, words
from biohash.match.scan import ExactMatcher, check_codes
from biohash.match.types import Codes

SUB_BITS = 16  # substring length: 2^16 buckets a table, about log2 of a million templates
MAX_SUB_RADIUS = 5  # 6,885 values of 16 bits within 5 bits: past it, always scan
SCAN_SHARE = 1 / 8  # scan instead when the lookups would touch more than this share of the templates


def _masks(bits: int, radius: int) -> np.ndarray:
    """Every `bits`-bit value with at most `radius` bits set, ordered by popcount."""
    out = [0]
    for r in range(1, radius + 1):
        out += [sum(1 << b for b in c) for c in combinations(range(bits), r)]
    return np.array(out, np.int64)


def _hamming(rows: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Hamming distances of uint64-word codes (n, w) to one query's words (w,)."""
    return word_distances(rows, q[None, :])[:, 0]


class MultiIndexMatcher:
    """Exact range and k-nearest search over packed codes by multi-index hashing; the Matcher protocol plus
    `range_search(codes, radius)`. The full codes live in an ExactMatcher (the scan fallback and 1:1 distances)."""

    def __init__(self, n_bits: int, threads: int = 1) -> None:
        if n_bits % SUB_BITS:
            raise ValueError(f"multi-index hashing cuts codes into {SUB_BITS}-bit substrings: {n_bits} bits is "
                             f"not a multiple of {SUB_BITS}")
        self.n_bits, self.m = n_bits, n_bits // SUB_BITS
        self._exact = ExactMatcher(n_bits, threads=threads)
        self._built = 0  # rows covered by the tables; rows after it are the tail
        self._order: list[np.ndarray] = []
        self._starts: list[np.ndarray] = []
        self._sorted: list[np.ndarray] = []
        self._mask_cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._exact)

    def add(self, ids, codes: Codes) -> None:
        self._exact.add(ids, codes)

    def remove(self, ids) -> int:
        n = self._exact.remove(ids)
        if n:
            self._built = 0  # rows were renumbered: rebuild at the next search
        return n

    def distances(self, codes: Codes, ids) -> np.ndarray:
        return self._exact.distances(codes, ids)

    def codes_of(self, ids) -> Codes:
        return self._exact.codes_of(ids)

    def _substrings(self, words: np.ndarray) -> np.ndarray:
        """(n, m) substring values of uint64-word codes."""
        as16 = words.view(np.uint16)  # little-endian words: the byte order is the same for queries and tables
        return as16[:, : self.m].astype(np.int64)

    def _build(self) -> None:
        """Per table: template rows sorted by the substring, their codes copied in that order (a lookup then
        reads whole buckets from contiguous memory instead of one random row per candidate), bucket offsets."""
        rows = self._exact._words
        subs = self._substrings(rows)
        self._order, self._starts, self._sorted = [], [], []
        for j in range(self.m):
            order = np.argsort(subs[:, j], kind="stable")
            self._order.append(order)
            self._sorted.append(rows[order])
            self._starts.append(np.searchsorted(subs[order, j], np.arange(2**SUB_BITS + 1)))
        self._built = len(subs)

    def _ready(self) -> None:
        n = len(self._exact)
        if self._built == 0 or n - self._built > max(4096, self._built // 16) or self._built > n:
            self._build()

    def _masks(self, radius: int) -> np.ndarray:
        if radius not in self._mask_cache:
            self._mask_cache[radius] = _masks(SUB_BITS, radius)
        return self._mask_cache[radius]

    def _table_radii(self, radius: int) -> list[int]:
        """Substring radius per table (Norouzi et al. 2014, Prop. 2): with r = m r' + a, a code within r bits
        is within r' bits on one of the first a + 1 substrings or within r' - 1 on one of the others."""
        sub, extra = divmod(radius, self.m)
        return [sub if j <= extra else sub - 1 for j in range(self.m)]

    def _worth_it(self, radius: int) -> bool:
        """Whether the lookups of this radius are expected to touch fewer than SCAN_SHARE of the templates
        (buckets assumed evenly filled): at 64 bits and 1M codes, radius 11 touches ~1 %, radius 17 ~10 %."""
        radii = self._table_radii(radius)
        if max(radii) > MAX_SUB_RADIUS:
            return False
        lookups = sum(len(self._masks(r)) for r in radii if r >= 0)
        return lookups / 2**SUB_BITS < SCAN_SHARE

    def _within(self, q: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
        """(distances, rows) of every template within `radius` of one query (q: its uint64 words); a template
        found in several tables is listed once."""
        q_subs = self._substrings(q[None])[0]
        hits_d, hits_rows = [], []
        for j, r in enumerate(self._table_radii(radius)):
            if r < 0:
                continue
            values = q_subs[j] ^ self._masks(r)
            lo, hi = self._starts[j][values], self._starts[j][values + 1]
            sizes = hi - lo
            total = int(sizes.sum())
            if not total:
                continue
            # positions lo..hi-1 of every bucket, gathered without a Python loop over buckets
            pos = np.repeat(lo - np.concatenate([[0], np.cumsum(sizes)[:-1]]), sizes) + np.arange(total)
            d = _hamming(self._sorted[j][pos], q)
            keep = d <= radius
            hits_d.append(d[keep])
            hits_rows.append(self._order[j][pos[keep]])
        tail = np.arange(self._built, len(self._exact))
        if len(tail):
            d = _hamming(self._exact._words[tail], q)
            hits_d.append(d[d <= radius])
            hits_rows.append(tail[d <= radius])
        if not hits_rows:
            return np.zeros(0, np.int32), np.zeros(0, np.int64)
        rows, first = np.unique(np.concatenate(hits_rows), return_index=True)
        return np.concatenate(hits_d)[first], rows

    def range_search(self, codes: Codes, radius: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query, (distances, template ids) of every template within `radius` bits, nearest first (ties by
        insertion order): exactly what a full scan returns."""
        check_codes(codes, self.n_bits)
        if len(self._exact) == 0:
            return [(np.zeros(0, np.int32), np.zeros(0, np.int64)) for _ in range(len(codes))]
        self._ready()
        fast = self._worth_it(radius)
        out = []
        for q in words(codes):
            d, rows = self._within(q, radius) if fast else self._scan_within(q, radius)
            order = np.lexsort((rows, d))
            out.append((d[order], self._exact._ids[rows[order]]))
        return out

    def _scan_within(self, q: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
        d = _hamming(self._exact._words, q)
        rows = np.flatnonzero(d <= radius)
        return d[rows], rows

    def search(self, codes: Codes, k: int) -> tuple[np.ndarray, np.ndarray]:
        """k nearest (as ExactMatcher.search): radii m(t+1) - 1 for t = 0, 1, ... are searched in turn while
        worth it; once k templates lie within one, they are the exact k nearest; queries that find fewer are
        scanned."""
        check_codes(codes, self.n_bits)
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        dist = np.full((len(codes), k), self.n_bits + 1, np.int32)
        ids = np.full((len(codes), k), -1, np.int64)
        if len(self._exact) == 0:
            return dist, ids
        self._ready()
        radii = [r for r in (self.m * (t + 1) - 1 for t in range(MAX_SUB_RADIUS + 1)) if self._worth_it(r)]
        for i, q in enumerate(words(codes)):
            for radius in radii:
                d, rows = self._within(q, radius)
                if len(d) >= k:
                    break
            else:
                d, rows = self._scan_within(q, self.n_bits)
            order = np.lexsort((rows, d))[:k]
            dist[i, : len(order)], ids[i, : len(order)] = d[order], self._exact._ids[rows[order]]
        return dist, ids
