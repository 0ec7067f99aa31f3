"""Cost of the distilled-hashing models, like the paper's Table 4: teacher (VGG-16 DHN) vs light student.

Per model: parameters, size (MB of float32 weights), FLOPs per 128x128 grey image (torch's FLOP counter,
multiply-add = 2), feature-extraction time per image on this CPU at batch 1 and 64 with torch and with
onnxruntime (FP32 ONNX export), and matching time per comparison of two 128-bit codes (XOR + popcount over
a gallery of 100,000 packed codes, numpy). The distilled student has the student's architecture, so its
costs are the student's. Untrained weights: cost does not depend on training.

    python bench/distill_cost.py [--bits 128] [--threads 2]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import report, run_main

from biohash.match.codes import hamming
from biohash.match.types import Codes
from biohash.train.models.hashnet import HashNet


def per_image_ms(fn, batch: np.ndarray | torch.Tensor, repeats: int) -> float:
    fn(batch)  # warm up
    t = time.perf_counter()
    for _ in range(repeats):
        fn(batch)
    return (time.perf_counter() - t) / repeats / len(batch) * 1e3


def flops(net: torch.nn.Module, size: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.zeros(1, 1, size, size))
    return float(counter.get_total_flops())


def onnx_session(net: torch.nn.Module, size: int):
    import onnxruntime as ort

    path = Path(tempfile.mkdtemp()) / "model.onnx"
    torch.onnx.export(net, (torch.zeros(1, 1, size, size),), str(path), input_names=["image"],
                      output_names=["code"], dynamic_axes={"image": {0: "batch"}, "code": {0: "batch"}},
                      dynamo=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"image": x})[0], path.stat().st_size / 2**20


def match_us(bits: int, gallery: int = 100_000) -> float:
    rng = np.random.default_rng(0)
    g = Codes(rng.integers(0, 256, (gallery, bits // 8), dtype=np.uint8), bits)
    p = Codes(rng.integers(0, 256, (8, bits // 8), dtype=np.uint8), bits)
    hamming(p, g)
    t = time.perf_counter()
    for _ in range(5):
        hamming(p, g)
    return (time.perf_counter() - t) / 5 / (8 * gallery) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bits", type=int, default=128)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    matching = match_us(args.bits)
    rows = []
    for label, backbone in (("teacher (DHN, VGG-16)", "vgg16"), ("student / distilled student", "student")):
        net = HashNet(backbone, args.bits, head="avg").eval()
        params = sum(p.numel() for p in net.parameters())
        one = torch.randn(1, 1, args.size, args.size)
        many = torch.randn(64, 1, args.size, args.size)
        with torch.no_grad():
            t1 = per_image_ms(net, one, 20)
            t64 = per_image_ms(net, many, 3)
        run, onnx_mb = onnx_session(net, args.size)
        o1 = per_image_ms(run, one.numpy(), 20)
        o64 = per_image_ms(run, many.numpy(), 3)
        rows.append([label, params, round(params * 4 / 2**20, 2), round(onnx_mb, 2),
                     round(flops(net, args.size) / 1e9, 3), round(t1, 2), round(t64, 3), round(o1, 2), round(o64, 3),
                     round(matching, 4)])
    report("distill_cost", f"distilled hashing cost per {args.size}x{args.size} grey image, {args.bits}-bit codes, "
           f"{args.threads} CPU threads",
           ["model", "params", "weights MB", "ONNX MB", "GFLOPs", "torch ms (b=1)", "torch ms (b=64)",
            "ORT ms (b=1)", "ORT ms (b=64)", "match us/pair"], rows)


if __name__ == "__main__":
    run_main(main)
