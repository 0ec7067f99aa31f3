"""The distilled-hashing paper's three rows, measured here: teacher, student trained alone, distilled student.

Per data set: a DHN teacher (default `small` standing in for VGG-16, which trains at a few images per second
on this CPU; `--teacher-model vgg16` on a GPU machine), the Table 1 student trained with the teacher's own
loss and no teacher, and the same student distilled from the teacher (eq. 7-8, paper weights). All under the
closed-set protocol (per identity the first half of captures enroll, the rest probe; the last enrolled capture
validates and is not trained on), except `tongji`: the real-palm open set of bench/real_palm.py (Tongji ROIs,
identity-disjoint 60 / 10 / 30 % palms, validation palms choose the checkpoint, session 1 of each test palm
enrolls and session 2 probes). 128-bit codes, Hamming matching. The paper's claim to check: distillation
lowers the student's EER and raises its accuracy at the student's cost.

    python bench/distill.py [--data ../shared/data] [--only synthetic casia-940 tongji] [--epochs 30]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _common import RESULTS, report, run_main

from biohash.train.data.config import DataConfig
from biohash.train.eval_run import evaluate_run
from biohash.train.fit import FitConfig
from biohash.train.recipes.dhn import DhnConfig
from biohash.train.recipes.distill import DistillConfig
from biohash.train.train_job import train


def data_sets(root: Path, seed: int) -> dict[str, DataConfig]:
    return {
        "synthetic": DataConfig(dataset="synthetic", identities=300, captures=8, protocol="closed", seed=seed),
        "casia-940": DataConfig(dataset="casia-ms", root=str(root / "casia-ms"), protocol="closed", seed=seed,
                                options={"bands": "940"}),
        "tongji": DataConfig(dataset="tongji", root=str(root / "tongji-full"), protocol="open", seed=seed),
    }


def cost(run: Path) -> dict[str, float]:
    """Parameters and torch CPU time per image (batch 64) of a run's encoder."""
    import torch

    from biohash.train.recipes.base import load_model

    net = load_model(run).hashnet
    x = torch.randn(64, 1, 128, 128)
    with torch.no_grad():
        net(x)
        t = time.perf_counter()
        for _ in range(3):
            net(x)
    ms = (time.perf_counter() - t) / 3 / 64 * 1e3
    params = sum(p.numel() for p in net.parameters())
    return {"params": params, "mb": params * 4 / 2**20, "ms": ms}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--only", nargs="*", default=["synthetic", "casia-940"])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--teacher-model", default="small")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--tag", default="", help="suffix of the results file")
    args = ap.parse_args()
    sets = data_sets(args.data, args.seed)
    rows, runs = [], {}
    for name in args.only:
        data = sets[name]
        protocol = data.protocol
        fit_cfg = FitConfig(epochs=args.epochs, batch_size=32, lr=1e-3, val_every=2, seed=args.seed)
        base = RESULTS / "distill_runs" / (name if args.seed == 0 else f"{name}-seed{args.seed}")
        plan = [("teacher", DhnConfig(backbone=args.teacher_model, bits=128)),
                ("student alone", DhnConfig(backbone="student", bits=128, head="avg")),
                ("distilled student", DistillConfig(teacher=str(base / "teacher")))]
        for label, method in plan:
            run = base / label.replace(" ", "-")
            if not (run / "train_time.json").exists():  # finished runs are reused, interrupted ones resumed
                train(run, data, method, fit_cfg, resume=run.exists(), threads=args.threads)
            seconds = json.loads((run / "train_time.json").read_text())["seconds"]
            m = next(iter(evaluate_run(run).values()))
            c = cost(run)
            runs[f"{name}/{label}"] = str(run)
            rows.append([name, protocol, label, method.backbone, round(100 * m["eer"], 2), round(100 * m["rank1"], 2),
                         round(100 * m["tar@far=0.01"], 2), c["params"], round(c["mb"], 2), round(c["ms"], 3),
                         round(seconds)])
    report("distill" + args.tag, "distilled hashing, 128-bit codes (Hamming), protocol per row: teacher, student "
           "alone, distilled student", ["set", "protocol", "model", "backbone", "EER %", "rank-1 %", "TAR@FAR=1e-2 %", "params", "MB",
                       "ms/img (b=64)", "train s"], rows, {"epochs": args.epochs, "runs": runs})


if __name__ == "__main__":
    run_main(main)
