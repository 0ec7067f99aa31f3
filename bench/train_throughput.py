"""Training throughput of biohash's own fit loop (loader, device transfer, autocast, step, optimiser, DDP) per
device and world size, against a bare forward/backward of the same model on one fixed batch, images/s.

Target: the loop reaches >= 90 % of the bare pass. World size 2 runs this script under torchrun (gloo on
CPUs, NCCL on GPUs); each process then takes half of every global batch. Usage:
    python bench/train_throughput.py                      # cpu (and cuda where torch sees a GPU), world 1 and 2
    python bench/train_throughput.py --devices cuda --backbones resnet18 --size 128 --batch 128
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import report, run_main

from biohash.train.data.config import DataConfig, open_split
from biohash.train.data.loaders import PairedTrainSet
from biohash.train.devices import join_process_group, processes, resolve_device, to_device
from biohash.train.fit import _engine, _Epochs, _progress, make_optimizer
from biohash.train.fit_config import FitConfig
from biohash.train.recipes.cohash import CohashConfig, build
from biohash.train.train_job import _loader


def _setup(args, backbone: str, device: torch.device):
    ds, split = open_split(DataConfig(identities=400, captures=8, image_size=args.size))
    train_set = PairedTrainSet(ds, split.train, ("print", "vein"), args.size, augment=False, fresh=True)
    for s in split.train:  # render identity templates up front: a run pays this once, not per step
        ds.load(s)
    torch.manual_seed(0)
    model, step = build(CohashConfig(backbone=backbone, bits=64), len(train_set.classes))
    cfg = FitConfig(epochs=1, batch_size=args.batch, lr=1e-3, device=str(device), amp=args.amp,
                    workers=args.workers if device.type == "cuda" else 0)
    return train_set, model.to(device), step, cfg


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare(engine, optimizer, batch, device, steps: int) -> float:
    """Images/s of forward + backward + step on one batch already on the device (every process)."""
    for i in range(steps + 2):
        if i == 2:
            _sync(device)
            t = time.perf_counter()
        out = engine(batch)
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        optimizer.step()
    _sync(device)
    return 2 * batch["label"].shape[0] * steps / (time.perf_counter() - t)


def loop(engine, model, train_set, cfg, device, procs, steps: int, in_memory: bool = False) -> float:
    """Images/s of biohash's epoch loop over `steps` batches drawn by the loader (this process's share), or
    over the same batches held in memory (the loop's own cost, without rendering and loading)."""
    subset = torch.utils.data.Subset(train_set, range(min(len(train_set), cfg.batch_size * (steps + 1))))
    loader = _loader(subset, cfg, 0, procs, pin_memory=device.type == "cuda")
    if in_memory:
        loader = list(loader)
    epochs = _Epochs(engine, model, loader, make_optimizer(model.parameters(), cfg), cfg, device=device, main=procs.main)
    with _progress(None, show=False) as progress:
        task = progress.add_task("fit", total=len(loader), epoch="1/1", info="")
        _sync(device)
        t = time.perf_counter()
        epochs.train_epoch(0, progress, task)
        _sync(device)
    return 2 * len(loader) * (cfg.batch_size // procs.world) / (time.perf_counter() - t)


def measure(args, backbone: str, device_name: str) -> dict:
    procs = processes()
    device = resolve_device(device_name, procs.local_rank)
    join_process_group(device)
    train_set, model, step, cfg = _setup(args, backbone, device)
    engine = _engine(model, step, device, procs.world)
    share = args.batch // procs.world
    batch = to_device({m: torch.randn(share, 1, args.size, args.size) for m in ("print", "vein")}, device)
    batch["label"] = torch.randint(0, len(train_set.classes), (share,), device=device)
    runs = [(bare(engine, make_optimizer(model.parameters(), cfg), batch, device, args.steps),
             loop(engine, model, train_set, cfg, device, procs, args.steps),
             loop(engine, model, train_set, cfg, device, procs, args.steps, in_memory=True))
            for _ in range(args.repeats)]  # interleaved, medians: single runs here vary by +-20 %
    b, lp, mem = (float(np.median([r[k] for r in runs])) * procs.world for k in (0, 1, 2))  # all processes
    return {"bare": b, "loop": lp, "in_memory": mem}


def _child(args) -> None:
    """One torchrun worker: measure, and rank 0 writes the figures to --out."""
    result = measure(args, args.backbones[0], args.devices[0])
    if processes().main:
        Path(args.out).write_text(json.dumps(result))


def _in_torchrun(args, backbone: str, device: str, world: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(world),
               __file__, "--child", "--out", str(out), "--devices", device, "--backbones", backbone,
               "--size", str(args.size), "--batch", str(args.batch), "--steps", str(args.steps),
               "--repeats", str(args.repeats), "--amp", args.amp, "--threads", str(max(args.threads // world, 1))]
        subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": str(max(args.threads // world, 1))})
        return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", nargs="+", default=["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    ap.add_argument("--backbones", nargs="+", default=["small"])
    ap.add_argument("--worlds", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=4, help="loader workers on a GPU")
    ap.add_argument("--amp", default="off")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--out")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        return _child(args)
    rows = []
    for device in args.devices:
        for backbone in args.backbones:
            for world in args.worlds:
                r = measure(args, backbone, device) if world == 1 else _in_torchrun(args, backbone, device, world)
                rows.append([device, world, backbone, args.size, args.batch, args.amp, round(r["bare"], 1),
                             round(r["in_memory"], 1), f"{100 * r['in_memory'] / r['bare']:.0f}%",
                             round(r["loop"], 1), f"{100 * r['loop'] / r['bare']:.0f}%"])
    report("train_throughput", f"co-hashing training throughput (print+vein pairs, fresh synthetic captures "
           f"rendered in the loop), {args.threads} CPU threads in all",
           ["device", "processes", "backbone", "size", "global batch", "amp", "bare fwd/bwd img/s",
            "loop, batches in memory", "its share", "loop with loader img/s", "its share"], rows)


if __name__ == "__main__":
    run_main(main)
