"""The exact scan every other matcher is checked against (numpy only): the Matcher protocol, the argument checks
matchers share, and ExactMatcher, a brute-force Hamming search. biohash.match.matching (faiss, the registry) and
biohash.match.mih (multi-index hashing) both build on it.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from biohash.match.codes import word_distances, words
from biohash.match.types import Codes


class Matcher(Protocol):
    n_bits: int

    def add(self, ids: np.ndarray, codes: Codes) -> None: ...

    def remove(self, ids: np.ndarray) -> int: ...

    def search(self, codes: Codes, k: int) -> tuple[np.ndarray, np.ndarray]: ...

    def distances(self, codes: Codes, ids: np.ndarray) -> np.ndarray: ...

    def codes_of(self, ids: np.ndarray) -> Codes: ...

    def __len__(self) -> int: ...


def check_codes(codes: Codes, n_bits: int) -> None:
    """Codes of the matcher's length, or a TypeError / ValueError saying what came instead."""
    if not isinstance(codes, Codes):
        raise TypeError(f"expected Codes, got {type(codes).__name__}")
    if codes.n_bits != n_bits:
        raise ValueError(f"this matcher holds {n_bits}-bit codes, got {codes.n_bits}-bit codes")


def check_ids(ids, n: int) -> np.ndarray:
    """Template ids as int64, one per code."""
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    if len(ids) != n:
        raise ValueError(f"got {len(ids)} ids for {n} codes")
    return ids


class ExactMatcher:
    """Brute-force Hamming search in numpy: XOR of uint64 words and a hardware popcount (np.bitwise_count),
    over cache-sized chunks of the gallery, keeping only rows within the current k-th best distance.

    threads > 1 answers several queries at once on a thread pool (numpy releases the GIL in these loops).
    """

    def __init__(self, n_bits: int, block: int = 32_768, threads: int = 1) -> None:
        self.n_bits, self.block, self.threads = n_bits, block, threads
        self._words = np.zeros((0, (n_bits + 63) // 64), np.uint64)
        self._ids = np.zeros(0, np.int64)
        self._row: dict[int, int] = {}
        self._cols: list[np.ndarray] | None = None
        self._dtype = np.uint8 if n_bits < 256 else np.uint16

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, ids, codes: Codes) -> None:
        check_codes(codes, self.n_bits)
        ids = check_ids(ids, len(codes))
        dup = [int(i) for i in ids if int(i) in self._row]
        if dup or len(set(ids.tolist())) != len(ids):
            raise ValueError(f"template ids already present or repeated: {dup[:5]}")
        start = len(self._ids)
        self._words = np.concatenate([self._words, words(codes)])
        self._ids = np.concatenate([self._ids, ids])
        self._row.update({int(i): start + k for k, i in enumerate(ids)})
        self._cols = None

    def remove(self, ids) -> int:
        rows = [self._row.pop(int(i)) for i in np.asarray(ids).reshape(-1) if int(i) in self._row]
        if rows:
            keep = np.ones(len(self._ids), bool)
            keep[rows] = False
            self._words, self._ids = self._words[keep], self._ids[keep]
            self._row = {int(i): k for k, i in enumerate(self._ids)}
            self._cols = None
        return len(rows)

    def _columns(self) -> list[np.ndarray]:
        if self._cols is None:  # one contiguous array per 64-bit word: each pass streams one of them
            self._cols = [np.ascontiguousarray(self._words[:, w]) for w in range(self._words.shape[1])]
        return self._cols

    def _search_one(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        cols, n = self._columns(), len(self._ids)
        buf = np.empty(self.block, np.uint64)
        acc, tmp = np.empty(self.block, self._dtype), np.empty(self.block, self._dtype)
        bound = self.n_bits
        rows = np.zeros(0, np.int64)
        dists = np.zeros(0, self._dtype)
        for s in range(0, n, self.block):
            m = min(self.block, n - s)
            np.bitwise_xor(cols[0][s : s + m], q[0], out=buf[:m])
            np.bitwise_count(buf[:m], out=acc[:m])
            for w in range(1, len(cols)):
                np.bitwise_xor(cols[w][s : s + m], q[w], out=buf[:m])
                np.bitwise_count(buf[:m], out=tmp[:m])
                np.add(acc[:m], tmp[:m], out=acc[:m])
            if acc[:m].min() > bound:  # the common case once the bound is tight: nothing here can enter
                continue
            hit = np.flatnonzero(np.less_equal(acc[:m], bound))
            if len(hit):
                rows = np.concatenate([rows, hit + s])
                dists = np.concatenate([dists, acc[hit]])
                if len(rows) >= k:  # only rows within the k-th best distance so far can still make the top k
                    bound = np.partition(dists, k - 1)[k - 1]
                    keep = dists <= bound
                    rows, dists = rows[keep], dists[keep]
        order = np.lexsort((rows, dists))[:k]  # by distance, ties by insertion order
        return dists[order].astype(np.int32), rows[order]

    def search(self, codes: Codes, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(distances int32 (n, k), template ids int64 (n, k)), nearest first; -1 / bits+1 pad when fewer."""
        check_codes(codes, self.n_bits)
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        q = words(codes)
        dist = np.full((len(q), k), self.n_bits + 1, np.int32)
        ids = np.full((len(q), k), -1, np.int64)
        if not len(self._ids):
            return dist, ids
        self._columns()

        def one(i: int) -> None:
            d, r = self._search_one(q[i], k)
            dist[i, : len(d)], ids[i, : len(d)] = d, self._ids[r]

        if self.threads > 1 and len(q) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(self.threads) as pool:
                list(pool.map(one, range(len(q))))
        else:
            for i in range(len(q)):
                one(i)
        return dist, ids

    def _rows(self, ids) -> np.ndarray:
        missing = [int(i) for i in np.asarray(ids).reshape(-1) if int(i) not in self._row]
        if missing:
            raise KeyError(f"unknown template ids: {missing[:5]}")
        return np.array([self._row[int(i)] for i in np.asarray(ids).reshape(-1)], np.int64)

    def distances(self, codes: Codes, ids) -> np.ndarray:
        """Hamming distance of each query row to each listed template, (n, len(ids)); unknown ids are an error."""
        check_codes(codes, self.n_bits)
        return word_distances(words(codes), self._words[self._rows(ids)])

    def codes_of(self, ids) -> Codes:
        """The stored codes of the listed template ids, in that order (what asymmetric matching rescores)."""
        packed = np.ascontiguousarray(self._words[self._rows(ids)]).view(np.uint8)
        return Codes(np.ascontiguousarray(packed[:, : self.n_bits // 8]), self.n_bits)
