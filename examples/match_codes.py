"""Match binary codes without torch: what a small device runs after enrollment.

Reads the fused-mode score file of a trained run, or works on random codes when no run is given:
    python examples/match_codes.py [runs/demo]
"""
import sys
from pathlib import Path

import numpy as np

from biohash import from_real, hamming, metrics
from biohash.match.scores import read_score_file

if len(sys.argv) > 1:
    genuine, impostor = read_score_file(Path(sys.argv[1]) / "eval" / "open-test" / "scores-fused.txt")
else:
    rng = np.random.default_rng(0)
    enrolled = rng.normal(size=(100, 64))  # relaxed codes of 100 people
    probes = enrolled + rng.normal(scale=0.6, size=enrolled.shape)  # new captures of the same people
    dist = hamming(from_real(probes), from_real(enrolled))  # XOR + popcount, (100, 100) in bits
    sim = 1 - dist / 64
    same = np.eye(100, dtype=bool)
    genuine, impostor = sim[same], sim[~same]
    print("rank-1:", (dist.argmin(axis=1) == np.arange(100)).mean())
print(f"EER {100 * metrics.eer(genuine, impostor).rate:.2f} %, "
      f"TAR@FAR=1e-3 {100 * metrics.tar_at_far(genuine, impostor, 1e-3):.1f} %")
