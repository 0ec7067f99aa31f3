"""Ensemble codes: the relaxed codes of several trained runs of one split, concatenated into one code per image.

Two runs of the same recipe from other training seeds err on partly different pairs; concatenating two 128-bit
codes keeps the 32-byte template of one 256-bit run and costs a second encoder. Each run alone and the
concatenation are scored on the same gallery and probes (asymmetric: the probe's relaxed code against the
stored code, with test-time shifts), on the validation palms (which alone may choose) and the test palms.

    python bench/ensemble_codes.py RUN_A RUN_B [--test-shifts 4] [--threads 2]
"""
from __future__ import annotations

import argparse
from pathlib import Path

from _common import report, run_main


def _eer(probe, gallery, same) -> float:
    from biohash.match import metrics
    from biohash.match.codes import asymmetric_similarity, from_real

    sim = asymmetric_similarity(probe, from_real(gallery))
    return round(100 * metrics.eer(sim[same], sim[~same]).rate, 3)


def split_rows(runs: list[Path], models: list, split_name: str, shifts: int) -> list[list]:
    """Each run's asymmetric EER per modality on one split, and that of their concatenated codes (`models`: the
    runs' loaded models)."""
    import numpy as np

    from biohash.train.data.config import DataConfig, open_split
    from biohash.train.evaluate import relaxed_codes
    from biohash.train.runs import read_config

    configs = [read_config(r)["data"] for r in runs]
    data = DataConfig(**{**configs[0], "train_identities": 0})
    if any({**c, "train_identities": 0} != {**configs[0], "train_identities": 0} for c in configs[1:]):
        raise SystemExit("the runs must share one split (dataset, options, protocol, seed and fractions)")
    dataset, split = open_split(data)
    gallery, probe = (split.val_gallery, split.val_probe) if split_name == "val" else (split.test_gallery,
                                                                                       split.test_probe)
    rows = []
    for modality in models[0].modalities:
        g = [s for s in gallery if s.modality == modality]
        p = [s for s in probe if s.modality == modality]
        if not p:
            continue
        same = np.array([s.identity for s in p])[:, None] == np.array([s.identity for s in g])[None, :]
        codes = []
        for model in models:
            model.net(modality).test_shifts = shifts
            codes.append((relaxed_codes(model.net(modality), dataset, p, data.image_size),
                          relaxed_codes(model.net(modality), dataset, g, data.image_size)))
        for run, (pc, gc) in zip(runs, codes, strict=True):
            rows.append([split_name, modality, run.name, gc.shape[1], _eer(pc, gc, same)])
        joined_p = np.concatenate([c[0] for c in codes], axis=1)
        joined_g = np.concatenate([c[1] for c in codes], axis=1)
        rows.append([split_name, modality, " + ".join(r.name for r in runs), joined_g.shape[1],
                     _eer(joined_p, joined_g, same)])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, nargs="+")
    ap.add_argument("--test-shifts", type=int, default=4)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    if len(args.runs) < 2:
        raise SystemExit("give at least two run folders")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from biohash.train.recipes.base import load_model

    models = [load_model(r) for r in args.runs]
    rows = [row for split in ("val", "test") for row in split_rows(args.runs, models, split, args.test_shifts)]
    report(f"ensemble_codes{args.tag}", "runs alone and their codes concatenated (asymmetric EER %, "
           f"test shifts {args.test_shifts})", ["split", "modality", "code", "bits", "EER %"], rows,
           {"runs": [str(r) for r in args.runs], "test_shifts": args.test_shifts})


if __name__ == "__main__":
    run_main(main)
