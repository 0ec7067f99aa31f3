"""Training throughput of the co-hashing loop vs a bare forward/backward of the same model, images/s.

The loop includes synthetic rendering, augmentation, batching, the loss and the optimiser; the bare pass
reuses one random batch. Target: the loop reaches >= 90 % of the bare pass.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import report

from biohash.data.config import DataConfig, open_split
from biohash.data.loaders import PairedTrainSet
from biohash.recipes.cohash import CohashConfig, build


def bare(model, step, batch_size: int, size: int, steps: int) -> float:
    opt = torch.optim.AdamW(model.parameters())
    batch = {m: torch.randn(batch_size, 1, size, size) for m in ("print", "vein")}
    batch["label"] = torch.randint(0, len(model.centroids), (batch_size,))
    for i in range(steps + 2):
        if i == 2:
            t = time.perf_counter()
        loss = step(model, batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return 2 * batch_size * steps / (time.perf_counter() - t)


def loop(model, step, loader, steps: int) -> float:
    opt = torch.optim.AdamW(model.parameters())
    it = iter(loader)
    n = 0
    for i in range(steps + 2):
        if i == 2:
            t = time.perf_counter()
        batch = next(it)
        loss = step(model, batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 2:
            n += 2 * batch["label"].shape[0]
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(2)
    rows = []
    for backbone, size, workers in (("small", 64, 0), ("small", 128, 0), ("small", 128, 1), ("resnet18", 128, 0)):
        steps = args.steps if backbone == "small" else max(args.steps // 4, 3)
        ds, split = open_split(DataConfig(identities=300, captures=8, image_size=size))
        train = PairedTrainSet(ds, split.train, ("print", "vein"), size, augment=False, fresh=True)
        torch.manual_seed(0)
        model, step = build(CohashConfig(backbone=backbone, bits=64), len(train.classes))
        loader = torch.utils.data.DataLoader(train, batch_size=args.batch, shuffle=True, drop_last=True,
                                             num_workers=workers)
        for s in split.train:  # render identity templates up front: a run pays this once, not per step
            ds.load(s)
        runs = [(bare(model, step, args.batch, size, steps), loop(model, step, loader, steps))
                for _ in range(args.repeats)]  # interleaved, medians: single runs here vary by +-20 %
        b, lp = float(np.median([r[0] for r in runs])), float(np.median([r[1] for r in runs]))
        rows.append([backbone, size, workers, round(b, 1), round(lp, 1), f"{100 * lp / b:.0f}%"])
    report("train_throughput", "co-hashing training throughput, 2 CPU threads, batch of print+vein pairs "
           "(fresh synthetic captures rendered in the loop)",
           ["backbone", "size", "loader workers", "bare fwd/bwd img/s", "full loop img/s", "loop / bare"], rows)


if __name__ == "__main__":
    main()
