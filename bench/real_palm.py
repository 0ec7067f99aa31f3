"""Real palms: CompCode against every learned variant on the same splits, at 64, 128 and 256 bits.

Sets and protocols (every row names its own): CASIA-MS 940 nm (ROIs cut by valley geometry) closed set
(per palm samples 1-3 enroll, 4-6 probe) and open set (a third of the palms enroll/probe, never trained on);
PolyU green + NIR and Tongji, closed set (session 1 enrolls, session 2 probes). Checkpoints are chosen on
validation captures only (closed: the last enrolled capture of each palm, held out of training; open:
separate validation palms); test captures are only scored.

Variants form an ablation ladder, one ingredient at a time (backbone x loss x pretraining):
- small-csq:        the old recipe: small CNN, per-bit centroid + centroid softmax, random init;
- small-arc:        + ArcFace (s 30, m 0.5) to the identity centroids + 0.2 supervised contrastive;
- small-arc-zoo:    small-arc warm-started from the shipped synthetic pretraining (zoo:small-128);
- compnet-csq:      the palm competition backbone (compnet_lite), small-csq's loss, random init;
- compnet-arc:      compnet-csq + ArcFace + supervised contrastive;
- compnet-csq-zoo:  compnet-csq from zoo:compnet_lite-128;
- compnet-arc-zoo:  compnet-arc from the same checkpoint;
- small-arc-flip4 / small-arc-flip8: small-arc with every training palm also mirrored, upside down (and turned
                    by 90 degrees), each copy a new identity (--identity-flips 4 / 8).
Template size: a learned code is bits / 8 bytes; CompCode's 32 x 32 orientation map at 3 bits a cell is
384 bytes (and needs 49 shifted comparisons per match). CompCode is also scored shrunk to learned-code sizes
(16 x 16 cells = 96 B, 8 x 8 cells = 24 B, responses averaged per cell, +-1 cell of shift) so that each
learned row can be read against a hand-crafted code of the same template size.

    python bench/real_palm.py [--only casia-open] [--variants small-arc] [--bits 64 128 256] [--tag -x]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _common import RESULTS, report, run_main

from biohash.data.config import DataConfig
from biohash.jobs import evaluate_run, train
from biohash.recipes.cohash import CohashConfig
from biohash.train import FitConfig

ARC = {"loss": "arcface", "lambda_supcon": 0.2}
VARIANTS = {
    "small-csq": {"backbone": "small"},
    "small-arc": {"backbone": "small", **ARC},
    "small-arc-zoo": {"backbone": "small", "init": "zoo:small-128", **ARC},
    "small-arc-flip4": {"backbone": "small", "identity_flips": 4, **ARC},
    "small-arc-flip8": {"backbone": "small", "identity_flips": 8, **ARC},
    "compnet-csq": {"backbone": "compnet_lite"},
    "compnet-arc": {"backbone": "compnet_lite", **ARC},
    "compnet-csq-zoo": {"backbone": "compnet_lite", "init": "zoo:compnet_lite-128"},
    "compnet-arc-zoo": {"backbone": "compnet_lite", "init": "zoo:compnet_lite-128", **ARC},
}
SETS = {  # name -> (dataset, folder under --data, protocol, adapter options, DataConfig extras)
    "casia-closed": ("casia-ms", "casia-ms", "closed", {"bands": "940"}, {}),
    "casia-open": ("casia-ms", "casia-ms", "open", {"bands": "940"}, {"val_fraction": 0.1, "test_fraction": 0.33}),
    "polyu-closed": ("polyu-ms", "polyu-ms", "closed", {"bands": "green,nir"}, {}),
    "tongji-closed": ("tongji", "tongji", "closed", {}, {}),
}
COMPCODE_GRIDS = {32: 3, 16: 1, 8: 1}  # cells a side -> shift searched (cells); 3 bits a cell


def compcode_reference(data: DataConfig) -> dict[int, dict[str, dict[str, float]]]:
    """The model-free CompCode matcher on the same test gallery and probes, per grid of COMPCODE_GRIDS and
    modality (no training); each image is loaded once and coded once per grid."""
    import numpy as np

    from biohash import metrics
    from biohash.compcode import compcode, distance
    from biohash.data.config import open_split

    dataset, split = open_split(data)
    out: dict[int, dict[str, dict[str, float]]] = {cells: {} for cells in COMPCODE_GRIDS}
    for modality in sorted({s.modality for s in split.test_probe}):
        gallery = [s for s in split.test_gallery if s.modality == modality]
        probe = [s for s in split.test_probe if s.modality == modality]
        g_images, p_images = [dataset.load(s) for s in gallery], [dataset.load(s) for s in probe]
        same = np.array([[p.identity == g.identity for g in gallery] for p in probe])
        for cells, shift in COMPCODE_GRIDS.items():
            g_codes = [compcode(img, cells) for img in g_images]
            p_codes = [compcode(img, cells) for img in p_images]
            sim = np.array([[1 - distance(p, g, shift) for g in g_codes] for p in p_codes])
            best = np.array([gallery[j].identity for j in sim.argmax(axis=1)])
            out[cells][modality] = {"eer": metrics.eer(sim[same], sim[~same]).rate,
                                    "rank1": float(np.mean(best == np.array([p.identity for p in probe])))}
    return out


def chosen_val_eer(run: Path) -> float:
    """Validation EER of the checkpoint the run chose (what selected it; never a test figure)."""
    history = json.loads((run / "history.json").read_text())
    return min(r["val_eer"] for r in history if "val_eer" in r)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--bits", type=int, nargs="*", default=[64, 128, 256])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="*", choices=list(SETS), default=list(SETS))
    ap.add_argument("--variants", nargs="*", choices=list(VARIANTS), default=list(VARIANTS))
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--tag", default="", help="suffix of the results file (runs in parallel write apart)")
    args = ap.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"real sample data not found at {args.data} (pass --data)")
    rows, runs = [], {}
    for set_name in args.only:
        dataset, folder, protocol, options, extras = SETS[set_name]
        data = DataConfig(dataset=dataset, root=str(args.data / folder), protocol=protocol, seed=args.seed,
                          options=options, **extras)
        for cells, per_mode in compcode_reference(data).items():
            for mode, m in per_mode.items():
                name = "CompCode" if cells == 32 else f"CompCode {cells}x{cells}"
                rows.append([set_name, protocol, name, cells * cells * 3, mode, cells * cells * 3 // 8, "-",
                             round(100 * m["eer"], 2), "-", round(100 * m["rank1"], 1), 0])
        for bits in args.bits:
            for variant in args.variants:
                method = CohashConfig(bits=bits, **VARIANTS[variant])
                fit_cfg = FitConfig(epochs=args.epochs, batch_size=32, lr=1e-3, val_every=2, seed=args.seed)
                seed = f"-seed{args.seed}" if args.seed else ""  # each seed draws its own split: its own runs
                run = RESULTS / "real_palm_runs" / f"{set_name}-{variant}-{bits}{seed}"
                t0 = time.time()
                train(run, data, method, fit_cfg, resume=run.exists(), threads=args.threads)
                seconds = time.time() - t0
                per_mode = evaluate_run(run)
                runs[run.name] = str(run)
                val = round(100 * chosen_val_eer(run), 2)
                for mode, m in per_mode.items():
                    if mode.endswith("-float"):
                        continue
                    floats = per_mode.get(f"{mode}-float")
                    rows.append([set_name, protocol, variant, bits, mode, bits // 8, val, round(100 * m["eer"], 2),
                                 round(100 * floats["eer"], 2) if floats else "-", round(100 * m["rank1"], 1),
                                 round(seconds)])
                report(f"real_palm{args.tag}", "real palms: CompCode vs learned codes (Hamming); checkpoints chosen on "
                       "validation", ["set", "protocol", "variant", "bits", "mode", "template B", "val EER %",
                                      "EER %", "float EER %", "rank-1 %", "train s"], rows,
                       {"epochs": args.epochs, "seed": args.seed, "runs": runs, "variants": VARIANTS})


if __name__ == "__main__":
    run_main(main)
