"""Training palms against test palms: does a run underfit or overfit?

Scores a trained co-hashing run on its own training palms under the test split's rule (each palm's first half of
captures enroll, the rest probe; the originals, not the flipped copies) beside its test palms. Near-zero EER on
the training palms and a high one on new palms says the model fits what it saw and does not carry it over (more
capacity or longer training is not the lever); equal errors on both say it underfits.

    python bench/fit_gap.py bench/results/real_palm_runs/polyu-gsmall-arc-flip4-256-seed2 --test-shifts 4
"""
from __future__ import annotations

from _common import open_run, parse_run_args, report, run_main

from biohash.train.data.protocols import enroll_and_probe
from biohash.train.eval_run import override_shifts
from biohash.train.evaluate import evaluate
from biohash.train.recipes.base import load_model

MODES = ("print", "vein", "fused", "print-asym", "vein-asym", "fused-asym", "print-float", "vein-float")


def main() -> None:
    args = parse_run_args(__doc__.splitlines()[0], "trained co-hashing run folders (open protocol)", None,
                          "override the run's test-time shifts")
    rows = []
    for run in args.runs:
        config, data, dataset, split = open_run(run)
        model = load_model(run, config)
        override_shifts(model, args.test_shifts, None)
        train_gallery, train_probe = enroll_and_probe(split.train)
        for palms, gallery, probe in (("training", train_gallery, train_probe),
                                      ("test", split.test_gallery, split.test_probe)):
            _, per_mode = evaluate(model, dataset, gallery, probe, data.image_size, floats=True)
            for mode in (m for m in MODES if m in per_mode):
                metrics = per_mode[mode]
                rows.append([run.name, palms, len({s.identity for s in probe}), mode, round(100 * metrics["eer"], 3),
                             round(100 * metrics.get("rank1", float("nan")), 1)])
    report("fit_gap", "EER on a run's training palms against its test palms (open set, first captures enroll)",
           ["run", "palms", "probe palms", "mode", "EER %", "rank-1 %"], rows, {"test_shifts": args.test_shifts})


if __name__ == "__main__":
    run_main(main)
