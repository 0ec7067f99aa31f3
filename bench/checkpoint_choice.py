"""Which checkpoint should the validation palms pick: the one best by plain Hamming EER, or the last?

A run keeps best.pt (its lowest validation `--monitor`, plain Hamming codes without shifts by default) and
last.pt (its final epoch). Both are scored here on the validation and the test palms the way the figures are
reported (asymmetric matching with test shifts); the validation palms alone then pick between the two, by the
mean EER of the like-with-like modes. Test palms only report.

    python bench/checkpoint_choice.py bench/results/real_palm_runs/polyu-gsmall-arc-flip4-256-seed2 --test-shifts 4
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import open_run, parse_run_args, report, run_main

from biohash.train.eval_run import override_shifts
from biohash.train.evaluate import evaluate
from biohash.train.recipes.base import build_untrained

SAME = ("print-asym", "vein-asym", "fused-asym")  # like with like; a print-only run has print-asym alone


def scored(run: Path, checkpoint: str, shifts: int | None, opened: tuple) -> dict[str, Any]:
    """{split: {mode: EER %}, "epoch": N} of one checkpoint on the validation and test palms; `opened` is the
    run's (config, data, dataset, split), read once for both checkpoints."""
    config, data, dataset, split = opened
    model = build_untrained(config)
    state = torch.load(run / "checkpoints" / checkpoint, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    model.eval()
    override_shifts(model, shifts, None)
    out: dict[str, Any] = {"epoch": state.get("epoch")}
    for name, gallery, probe in (("val", split.val_gallery, split.val_probe),
                                 ("test", split.test_gallery, split.test_probe)):
        _, per_mode = evaluate(model, dataset, gallery, probe, data.image_size, floats=True)
        out[name] = {m: 100 * v["eer"] for m, v in per_mode.items() if m in SAME}
    return out


def main() -> None:
    args = parse_run_args(__doc__.splitlines()[0], "trained co-hashing run folders with best.pt and last.pt", 4,
                          "test-time shifts both checkpoints encode with")
    rows = []
    for run in args.runs:
        opened = open_run(run)
        found = {c: scored(run, c, args.test_shifts, opened) for c in ("best.pt", "last.pt")}
        val_mean = {c: float(np.mean(list(f["val"].values()))) for c, f in found.items()}
        picked = min(val_mean, key=lambda c: val_mean[c])
        for c, f in found.items():
            rows.append([run.name, c, f["epoch"], round(val_mean[c], 3), "yes" if c == picked else "",
                         *[round(f[s].get(m, float("nan")), 3) for s in ("val", "test") for m in SAME]])
    columns = ["run", "checkpoint", "epoch", "val mean EER %", "picked", *[f"{s} {m} %" for s in ("val", "test")
                                                                          for m in SAME]]
    report("checkpoint_choice", "best.pt (plain Hamming validation) against last.pt, scored asymmetrically with "
           "shifts; the validation palms pick", columns, rows, {"test_shifts": args.test_shifts})


if __name__ == "__main__":
    run_main(main)
