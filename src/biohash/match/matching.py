"""Matching: 1:N search over packed binary templates (numpy only, faiss optional).

A Matcher holds (template id, code) pairs of one modality and answers top-k nearest codes by Hamming distance.
Back-ends from factory strings: "exact" (numpy, packed uint64 + popcount: the reference), and faiss binary
indexes "BFlat", "BIVF{nlist}", "BHNSW{M}", with search parameters after a colon ("BIVF1024:nprobe=16",
"BHNSW32:efSearch=64"). Removal is by tombstone in faiss indexes that cannot delete, filtered at search time.
The exact scan and the Matcher protocol live in biohash.match.scan (re-exported here); "mih" is biohash.match.mih.
Every matcher also hands back the codes it holds by id (`codes_of`), which asymmetric identify rescores; a
matcher of your own without it still works there, scored subject by subject from the store.
"""
from __future__ import annotations

import re

import numpy as np

from biohash.match.scan import ExactMatcher, Matcher, check_codes, check_ids
from biohash.registry import Registry

__all__ = ["MATCHERS", "ExactMatcher", "FaissMatcher", "Matcher", "make_matcher", "resolve_matcher"]
from biohash.match.types import Codes

_FACTORY = re.compile(r"^(BFlat|BIVF(\d+)|BHNSW(\d+))(?::(.*))?$")


class FaissMatcher:
    """A faiss binary index (BFlat, BIVF{nlist}, BHNSW{M}) with template ids; codes also kept packed for
    1:1 distances. IVF trains on the first batch added (at least 39 x nlist codes are needed)."""

    def __init__(self, n_bits: int, factory: str = "BFlat", threads: int = 1) -> None:
        import faiss

        m = _FACTORY.match(factory)
        if not m:
            raise ValueError(f"unknown matcher {factory!r}; expected exact, BFlat, BIVF<nlist> or BHNSW<M>, "
                             f"optionally with :nprobe=N or :efSearch=N")
        if n_bits % 8:
            raise ValueError(f"n_bits must be a multiple of 8, got {n_bits}")
        self.n_bits, self.factory, self.threads = n_bits, factory, threads
        self.params = {k: int(v) for k, v in (p.split("=") for p in m.group(4).split(","))} if m.group(4) else {}
        self._faiss = faiss
        inner = faiss.index_binary_factory(n_bits, m.group(1))
        # IVF keeps ids itself (and removes correctly); Flat and HNSW need an id map
        self.index = inner if m.group(2) else faiss.IndexBinaryIDMap2(inner)
        self._exact = ExactMatcher(n_bits)
        self._tombstones: set[int] = set()
        self._apply_params()

    def _inner(self):
        index = self.index.index if isinstance(self.index, self._faiss.IndexBinaryIDMap2) else self.index
        return self._faiss.downcast_IndexBinary(index)

    def set_search_params(self, **params: int) -> None:
        """Change nprobe (IVF) or efSearch (HNSW) without rebuilding."""
        self.params.update(params)
        self._apply_params()

    def _apply_params(self) -> None:
        inner = self._inner()
        if "nprobe" in self.params:
            inner.nprobe = self.params["nprobe"]
        if "efSearch" in self.params:
            inner.hnsw.efSearch = self.params["efSearch"]

    def __len__(self) -> int:
        return len(self._exact)

    def add(self, ids, codes: Codes) -> None:
        check_codes(codes, self.n_bits)
        ids = check_ids(ids, len(codes))
        self._exact.add(ids, codes)  # validates duplicates first
        if not self.index.is_trained:
            self.index.train(codes.bits)
        self.index.add_with_ids(np.ascontiguousarray(codes.bits), ids)

    def remove(self, ids) -> int:
        ids = np.asarray(ids, np.int64).reshape(-1)
        n = self._exact.remove(ids)
        try:
            self.index.remove_ids(ids)
        except RuntimeError:  # HNSW cannot delete: filter at search time
            self._tombstones.update(int(i) for i in ids)
        return n

    def search(self, codes: Codes, k: int) -> tuple[np.ndarray, np.ndarray]:
        check_codes(codes, self.n_bits)
        extra = len(self._tombstones)
        # one query on one OpenMP thread: two threads took 192-480 ms at 1M x 128 bits on a busy machine
        # (spin-waiting workers), one 8-47 ms
        self._faiss.omp_set_num_threads(1 if len(codes) == 1 else self.threads)
        d, i = self.index.search(np.ascontiguousarray(codes.bits), k + extra)
        d, i = d.astype(np.int32), i.astype(np.int64)
        if extra:
            dead = np.isin(i, np.fromiter(self._tombstones, np.int64))
            i = np.where(dead, -1, i)
            order = np.argsort(dead, axis=1, kind="stable")
            d, i = np.take_along_axis(d, order, axis=1), np.take_along_axis(i, order, axis=1)
        d, i = d[:, :k], i[:, :k]
        d[i < 0] = self.n_bits + 1
        return d, i

    def distances(self, codes: Codes, ids) -> np.ndarray:
        return self._exact.distances(codes, ids)

    def codes_of(self, ids) -> Codes:
        return self._exact.codes_of(ids)


MATCHERS: Registry = Registry("matcher")  # name -> factory(n_bits, spec, threads) returning a Matcher


@MATCHERS.register("exact")
def _exact(n_bits: int, spec: str = "exact", threads: int = 1) -> ExactMatcher:
    return ExactMatcher(n_bits, threads=threads)


def _faiss(n_bits: int, spec: str, threads: int = 1) -> FaissMatcher:
    return FaissMatcher(n_bits, spec, threads=threads)


for _family in ("BFlat", "BIVF", "BHNSW"):
    MATCHERS.register(_family)(_faiss)


@MATCHERS.register("mih")
def _mih(n_bits: int, spec: str = "mih", threads: int = 1):
    from biohash.match.mih import MultiIndexMatcher

    return MultiIndexMatcher(n_bits, threads=threads)


def resolve_matcher(factory: str) -> str:
    """'auto' is faiss BFlat where faiss imports (5-10x faster than the numpy scan at 100k codes), exact
    otherwise; any other spec is returned as it is."""
    if factory != "auto":
        return factory
    import importlib.util

    return "BFlat" if importlib.util.find_spec("faiss") else "exact"


def make_matcher(n_bits: int, factory: str = "auto", threads: int = 1) -> Matcher:
    """A matcher from a spec: "auto" (resolve_matcher), a registered name ("exact", "mih", or your own via
    @MATCHERS.register), or a faiss binary index ("BFlat", "BIVF1024:nprobe=16", "BHNSW32:efSearch=64"): the
    leading letters name the family. threads: for batches of queries (one query always runs on one thread)."""
    factory = resolve_matcher(factory)
    family = re.match(r"[A-Za-z_]+", factory)
    return MATCHERS.get(family.group(0) if family else factory)(n_bits, factory, threads=threads)
