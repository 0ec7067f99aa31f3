"""GPA-Net on the 11K Hands subset: GPA (global + parts) vs global-only vs local-only on all four aspects,
the Hp x Vp grid on palmar-right, a cross-aspect matrix and the optional hash head; mean +- std over draws.

Protocol: the paper's 11K one (`biohash.train.data.protocols.hands_11k`), per aspect, accessories excluded: ids in
id order, first half train, second half test; one random image per test id enrolls, the rest query; one
random image per training id validates (the checkpoint with the best validation rank-1 is kept; test images
never choose anything). Draw d uses seed d, for training and for the protocol's random picks.

CPU budget variant, said in every result: the ImageNet EfficientNet-Lite0 (packaged weights) with its last
stride removed is frozen up to its last block stage (conv stem + blocks 0-5), whose outputs are computed once
per image and its mirror image; the last stage, the 1x1 head conv and the GPA branches are trained (SGD
Nesterov, lr 0.02 for new layers, lr / 10 for the backbone, x0.1 at half the epochs, label smoothing 0.1,
batch 20, random horizontal flips; no colour jitter, which a cache cannot hold). `biohash train gpa` trains
the whole network with jitter; `--full` here times one such run for reference.

    python bench/gpa_11k.py [--draws 10] [--hash-draws 10] [--grid-draws 10] [--epochs 30] [--size 128] [--full]
"""
from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import torch
from _common import RESULTS, report, run_main
from torch import nn

from biohash.match import metrics
from biohash.train.data.datasets import open_dataset
from biohash.train.data.loaders import colour_batches
from biohash.train.data.protocols import hands_11k
from biohash.train.losses import GPALoss
from biohash.train.models.gpa import GPANet
from biohash.train.recipes.gpa import GpaConfig

ASPECTS = ("dorsal-right", "dorsal-left", "palmar-right", "palmar-left")
LITE0 = "efficientnet_lite0"
VARIANTS = {"GPA (2x2)": GpaConfig(LITE0, horizontal=2, vertical=2),
            "global only": GpaConfig(LITE0, horizontal=0, vertical=0),
            "local only (2x2)": GpaConfig(LITE0, horizontal=2, vertical=2, global_branch=False)}
FROZEN_STAGES = 6  # Lite0 blocks 0-5 frozen (the stride-removed stage included), block 6 + conv_head trained


def _stem(net: GPANet) -> nn.Module:
    trunk = net.backbone.net
    return nn.Sequential(trunk.conv_stem, trunk.bn1, *trunk.blocks[:FROZEN_STAGES]).eval()


def _tail(net: GPANet) -> nn.Module:
    trunk = net.backbone.net
    tail = nn.Sequential(*trunk.blocks[FROZEN_STAGES:], trunk.conv_head, trunk.bn2)
    tail.num_features = trunk.num_features
    return tail


class AspectCache:
    """Frozen-stem outputs of every image of one aspect, as is and mirrored."""

    def __init__(self, root: Path, aspect: str, size: int, stem: nn.Module) -> None:
        self.dataset = open_dataset("11k-hands", root=str(root), aspects=aspect, accessories="exclude",
                                    colour=True)
        self.index = {s: k for k, s in enumerate(self.dataset.samples)}
        with torch.no_grad():
            x = [stem(b) for b in colour_batches(self.dataset, self.dataset.samples, size)]
            xf = [stem(torch.flip(b, dims=[3])) for b in colour_batches(self.dataset, self.dataset.samples, size)]
        self.z, self.z_flip = torch.cat(x), torch.cat(xf)

    def rows(self, samples) -> torch.Tensor:
        return torch.tensor([self.index[s] for s in samples])


def _features(net: GPANet, z: torch.Tensor, codes: bool = False) -> np.ndarray:
    net.eval()
    with torch.no_grad():
        out = torch.cat([(net.forward_code(c) if codes else net.forward_embed(c)) for c in z.split(256)])
    return np.sign(out.numpy()) / np.sqrt(out.shape[1]) if codes else out.numpy()


def identification(net: GPANet, cache: AspectCache, gallery, probe, codes: bool = False) -> dict[str, float]:
    """Rank-1/5/10 and mAP; cosine of float features, or of +-1 codes (= 1 - 2 Hamming / bits)."""
    g = _features(net, cache.z[cache.rows(gallery)], codes)
    p = _features(net, cache.z[cache.rows(probe)], codes)
    sim = p @ g.T
    pid, gid = np.array([s.identity for s in probe]), np.array([s.identity for s in gallery])
    curve = metrics.cmc(sim, pid, gid, max_rank=10)
    return {"rank1": float(curve[0]), "rank5": float(curve[4]), "rank10": float(curve[9]),
            "map": metrics.mean_average_precision(sim, pid, gid)}


def train(cfg: GpaConfig, cache: AspectCache, split, epochs: int, seed: int, lr: float = 0.02,
          batch: int = 20) -> tuple[GPANet, float]:
    """Train the GPA branches and the last backbone stage on cached stem outputs; returns the net with the
    best validation rank-1 (validation probes against the other training images) and that rank-1."""
    torch.manual_seed(seed)
    classes = {i: k for k, i in enumerate(sorted({s.identity for s in split.train}))}
    net = cfg.network(len(classes), weights="imagenet")
    net.backbone = _tail(net)
    rows = cache.rows(split.train)
    labels = torch.tensor([classes[s.identity] for s in split.train])
    groups = [{"params": g["params"], "lr": lr * g["lr_scale"]} for g in net.param_groups()]
    opt = torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=max(epochs // 2, 1), gamma=0.1)
    loss_fn = GPALoss(cfg.smoothing, cfg.part_weight, cfg.quantization_weight)
    gen = torch.Generator().manual_seed(seed)
    best, best_state = -1.0, None
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(rows), generator=gen)
        for start in range(0, len(order) - batch + 1, batch):
            b = order[start : start + batch]
            flip = torch.rand(len(b), generator=gen) < 0.5
            z = torch.where(flip[:, None, None, None], cache.z_flip[rows[b]], cache.z[rows[b]])
            loss = loss_fn(net(z), labels[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        if (epoch + 1) % 5 == 0 or epoch + 1 == epochs:
            val = identification(net, cache, split.val_gallery, split.val_probe)["rank1"]
            if val >= best:
                best, best_state = val, copy.deepcopy(net.state_dict())
    net.load_state_dict(best_state)
    return net, best


def _mean_std(values: list[float]) -> str:
    return f"{100 * np.mean(values):.1f} ± {100 * np.std(values):.1f}"


def run_full_reference(root: Path, size: int, epochs: int) -> dict[str, float]:
    """One `biohash train gpa` run, whole network trainable with jitter (palmar-right, draw 0), for its time."""
    import tempfile

    from biohash.train.data.config import DataConfig
    from biohash.train.eval_run import evaluate_run
    from biohash.train.fit import FitConfig
    from biohash.train.train_job import train as train_run

    with tempfile.TemporaryDirectory() as tmp:
        data = DataConfig(dataset="11k-hands", root=str(root), image_size=size, protocol="11k", seed=0,
                          options={"colour": True, "aspects": "palmar-right", "accessories": "exclude"})
        fit_cfg = FitConfig(epochs=epochs, batch_size=20, lr=0.02, optimizer="sgd", schedule="step",
                            warmup_epochs=0, val_every=5, seed=0)
        t0 = time.time()
        run = train_run(Path(tmp) / "full", data, GpaConfig(LITE0, weights="imagenet"),
                        fit_cfg)
        m = evaluate_run(run)["palmar"]
        return {"rank1": m["rank1"], "map": m["map"], "seconds": time.time() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    ap.add_argument("--draws", type=int, default=10)
    ap.add_argument("--grid-draws", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--hash-draws", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bits", type=int, default=128)
    ap.add_argument("--full", action="store_true", help="also time one whole-network run (slow on a CPU)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    root = args.data / "11k-hands"
    stem = _stem(GpaConfig(LITE0).network(2, weights="imagenet"))
    t0 = time.time()
    caches = {a: AspectCache(root, a, args.size, stem) for a in ASPECTS}
    cache_seconds = time.time() - t0
    rows, results = [], {"variants": {}, "grid": {}, "cross_aspect": {}, "hash": {}}
    partial = RESULTS / "gpa_11k.partial.json"

    def save_partial() -> None:  # a long run keeps what it measured if it is stopped
        import json

        RESULTS.mkdir(exist_ok=True)
        partial.write_text(json.dumps({"rows": rows, "results": results}, indent=1, default=str))

    def experiment(cfg, aspect, draw, cross=False, hashing=False):
        split = hands_11k(caches[aspect].dataset, seed=draw)
        t = time.time()
        net, val = train(cfg, caches[aspect], split, args.epochs, seed=draw)
        out = {"val_rank1": val, **identification(net, caches[aspect], split.test_gallery, split.test_probe)}
        if hashing:
            out["code"] = identification(net, caches[aspect], split.test_gallery, split.test_probe, codes=True)
        if cross:
            out["cross"] = {}
            for other in ASPECTS:
                if other != aspect:
                    s = hands_11k(caches[other].dataset, seed=draw)
                    out["cross"][other] = identification(net, caches[other], s.test_gallery, s.test_probe)["rank1"]
        out["seconds"] = time.time() - t
        return out

    for name, cfg in VARIANTS.items():
        for aspect in ASPECTS:
            runs = [experiment(cfg, aspect, d, cross=name.startswith("GPA")) for d in range(args.draws)]
            results["variants"].setdefault(name, {})[aspect] = runs
            rows.append([name, aspect, _mean_std([r["rank1"] for r in runs]), _mean_std([r["rank5"] for r in runs]),
                         _mean_std([r["map"] for r in runs]), f"{np.mean([r['seconds'] for r in runs]):.0f}"])
            print(rows[-1], flush=True)
            save_partial()
            if name.startswith("GPA"):
                results["cross_aspect"][aspect] = {o: float(np.mean([r["cross"][o] for r in runs]))
                                                   for o in ASPECTS if o != aspect}
    hash_cfg = GpaConfig(LITE0, horizontal=2, vertical=2, bits=args.bits)
    for aspect in ASPECTS:
        runs = [experiment(hash_cfg, aspect, d, hashing=True) for d in range(args.hash_draws)]
        results["hash"][aspect] = runs
        rows.append([f"GPA + {args.bits}-bit head: floats", aspect, _mean_std([r["rank1"] for r in runs]),
                     _mean_std([r["rank5"] for r in runs]), _mean_std([r["map"] for r in runs]),
                     f"{np.mean([r['seconds'] for r in runs]):.0f}"])
        rows.append([f"GPA + {args.bits}-bit head: codes", aspect, _mean_std([r["code"]["rank1"] for r in runs]),
                     _mean_std([r["code"]["rank5"] for r in runs]), _mean_std([r["code"]["map"] for r in runs]), ""])
        print(rows[-2:], flush=True)
        save_partial()
    for hp in range(1, 5):
        for vp in range(1, 4):
            runs = [experiment(GpaConfig(LITE0, horizontal=hp, vertical=vp), "palmar-right", d)
                    for d in range(args.grid_draws)]
            results["grid"][f"{hp}x{vp}"] = runs
            rows.append([f"grid Hp={hp} Vp={vp}", "palmar-right", _mean_std([r["rank1"] for r in runs]),
                         _mean_std([r["rank5"] for r in runs]), _mean_std([r["map"] for r in runs]),
                         f"{np.mean([r['seconds'] for r in runs]):.0f}"])
            print(rows[-1], flush=True)
            save_partial()
    if args.full:
        results["full_reference"] = run_full_reference(root, args.size, args.epochs)
    report("gpa_11k", f"GPA-Net on the 11K subset, 11k protocol (closed gallery of unseen ids, one image each), "
           f"{args.draws} draws (hash head {args.hash_draws}, grid {args.grid_draws}), Lite0 ImageNet stem frozen, {args.size}px, "
           f"{args.epochs} epochs: mean ± std %",
           ["variant", "aspect", "rank-1", "rank-5", "mAP", "s/experiment"], rows,
           {"args": {k: str(v) for k, v in vars(args).items()}, "cache_seconds": cache_seconds,
            "frozen_stages": FROZEN_STAGES, "results": results})


if __name__ == "__main__":
    run_main(main)
