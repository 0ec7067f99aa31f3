"""Generator throughput: identity templates (cold) and captures (templates cached), images/s, one core."""
from __future__ import annotations

import time

from _common import report

from biohash.train.data.synthetic import SyntheticPalms


def measure(size: int, n_ids: int = 100, n_captures: int = 2000) -> list:
    gen = SyntheticPalms(seed=0, size=size)
    t = time.perf_counter()
    for i in range(n_ids):
        gen.template(i, "print")
        gen.template(i, "vein")
    cold = n_ids / (time.perf_counter() - t)
    t = time.perf_counter()
    for k in range(n_captures):
        gen.render(k % n_ids, ("print", "vein")[k % 2], k)
    warm = n_captures / (time.perf_counter() - t)
    return [size, round(cold, 1), round(warm, 1)]


if __name__ == "__main__":
    rows = [measure(size) for size in (64, 128, 192)]
    report("synthetic_throughput", "synthetic generator throughput (single process)",
           ["size px", "new identities/s (both modalities)", "captures/s (cached identities)"], rows)
