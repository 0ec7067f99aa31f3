"""SyPer-style quantization, measured: FP32 vs post-training quantization (PTQ) vs embedding-distillation QAT
with synthetic images vs with the real training images (no labels), at W8A8, W6A6, W4A4, per model; plus the
deployable INT8 ONNX (onnxruntime static quantization, synthetic calibration) with its size and latency.

Models (each evaluated under its own run's protocol, named in the table):
- co-hash, synthetic palms (open set, 128 bits): bench/results/real_palm_runs/synthetic-128, or --cohash RUN;
- distilled student, synthetic palms (closed set, 128 bits): bench/results/distill_runs/synthetic/distilled-student;
- CASIA 940 nm vein model (closed set, 128 bits): bench/results/real_palm_runs/casia-closed-synthetic; also
  quantized with synthetic *print-look* images (the cross-domain case: visible-looking data for an NIR model);
- ocular NIR model on IITD (open set, identity-disjoint, 128 bits): trained here with the co-hash recipe.
Missing runs are skipped with a message. Sizes: weights at the quantized width (scales included), or the ONNX
file. Latency: onnxruntime, batch 1, one thread, per image (fake-quantized W6/W4 have no integer kernels).

    python bench/quantize.py [--images 1000] [--epochs 5] [--bits 8 6 4]
"""
from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from _common import RESULTS, report, run_main

from biohash.match.scores import CodeSet, mode_scores
from biohash.train.data.config import DataConfig, open_split
from biohash.train.eval_run import evaluate_run
from biohash.train.evaluate import score_metrics
from biohash.train.fit import FitConfig
from biohash.train.models.quant import quantized_size_bytes
from biohash.train.quantize_job import quantize_run
from biohash.train.recipes.base import load_model
from biohash.train.recipes.cohash import CohashConfig
from biohash.train.recipes.quantize import QuantizeConfig
from biohash.train.runs import read_config
from biohash.train.train_job import train

WORK = RESULTS / "quantize_runs"


def encoder_kb(model: torch.nn.Module) -> float:
    """Size of what a device runs: the modality branches (shared parts once), without training-only heads."""
    return quantized_size_bytes(torch.nn.ModuleList(model.net(m) for m in model.modalities)) / 1024


def headline(per_mode: dict[str, dict[str, float]]) -> tuple[str, float, float]:
    """The mode a model is judged on: print for co-hash, else its only mode."""
    mode = "print" if "print" in per_mode else next(iter(per_mode))
    return mode, per_mode[mode]["eer"], per_mode[mode]["rank1"]


def ocular_run(data_root: Path, epochs: int) -> Path:
    run = WORK / "ocular-fp32"
    if not (run / "checkpoints" / "best.pt").exists():
        shutil.rmtree(run, ignore_errors=True)
        data = DataConfig(dataset="iitd-iris", root=str(data_root / "iitd-iris"), protocol="open", seed=0)
        train(run, data, CohashConfig(backbone="small", bits=128),
              FitConfig(epochs=epochs, batch_size=64, lr=1e-3, val_every=2, seed=0))
    return run


def onnx_int8(run: Path) -> dict[str, float]:
    """Export FP32 + INT8 ONNX; size, batch-1 one-thread latency of each, and the INT8 model's test EER/rank-1."""
    from biohash.serve.encoder import Encoder
    from biohash.train.export import export_run

    bundle = export_run(run, fmt="onnx-int8", calibration="synthetic")
    config = read_config(run)
    data = DataConfig(**config["data"])
    dataset, split = open_split(data)
    out = {}
    for backend in ("onnx", "onnx-int8"):
        enc = Encoder(run / "export", backend=backend, threads=1)
        m = bundle["modalities"][0]
        one = enc.preprocess([dataset.load(split.test_probe[0])])
        for _ in range(5):
            enc.embed_batch(one, m)
        t0 = time.perf_counter()
        for _ in range(50):
            enc.embed_batch(one, m)
        out[f"{backend}_ms"] = (time.perf_counter() - t0) / 50 * 1000
        out[f"{backend}_kb"] = sum((run / "export" / f[backend]).stat().st_size for f in bundle["onnx"].values()) / 1024
        if backend == "onnx-int8":
            sets = {}
            for side, samples in (("probe", split.test_probe), ("gallery", split.test_gallery)):
                sets[side] = {}
                for mod in enc.modalities:
                    subset = [s for s in samples if s.modality == mod]
                    codes = enc.encode([dataset.load(s) for s in subset], mod)
                    sets[side][mod] = CodeSet(codes, np.array([s.identity for s in subset]),
                                              np.array([s.capture + 1000 * s.session for s in subset]))
            mode = "print" if "print" in enc.modalities else enc.modalities[0]
            metrics = score_metrics(mode_scores(mode, sets["probe"], sets["gallery"]))
            out["int8_eer"], out["int8_rank1"] = metrics["eer"], metrics["rank1"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    ap.add_argument("--cohash", type=Path, default=RESULTS / "real_palm_runs" / "synthetic-128")
    ap.add_argument("--student", type=Path, default=RESULTS / "distill_runs" / "synthetic" / "distilled-student")
    ap.add_argument("--casia", type=Path, default=RESULTS / "real_palm_runs" / "casia-closed-synthetic")
    ap.add_argument("--bits", type=int, nargs="+", default=[8, 6, 4])
    ap.add_argument("--images", type=int, default=1000, help="unlabeled images per branch")
    ap.add_argument("--epochs", type=int, default=5, help="distillation epochs (paper: 10)")
    ap.add_argument("--ocular-epochs", type=int, default=20)
    ap.add_argument("--only", nargs="*", default=None)
    args = ap.parse_args()
    torch.set_num_threads(2)
    WORK.mkdir(parents=True, exist_ok=True)
    models = {"co-hash (synthetic, open)": (args.cohash, ["synthetic", "real"]),
              "distilled student (synthetic, closed)": (args.student, ["synthetic", "real"]),
              "CASIA 940 vein (closed)": (args.casia, ["synthetic", "synthetic-print", "real"]),
              "ocular IITD NIR (open)": (None, ["synthetic", "real"])}
    rows, results = [], {}
    for label, (run, sources) in models.items():
        if args.only and not any(o in label for o in args.only):
            continue
        if run is None:
            run = ocular_run(args.data, args.ocular_epochs)
        if not (run / "checkpoints" / "best.pt").exists():
            print(f"skip {label}: no trained run at {run} (run bench/real_palm.py or bench/distill.py first)")
            continue
        key = label.split(" (")[0].replace(" ", "-")
        fp32 = load_model(run)
        mode, eer, r1 = headline(evaluate_run(run))
        fp32_kb = encoder_kb(fp32)
        entry = {"run": str(run), "mode": mode, "fp32": {"eer": eer, "rank1": r1, "kb": fp32_kb}, "quantized": {}}
        rows.append([label, "FP32", mode, 100 * eer, 100 * r1, round(fp32_kb, 1), ""])
        ort = onnx_int8(run)
        entry["onnx"] = ort
        rows.append([label, "INT8 ONNX (ORT static, synthetic calib.)", mode, 100 * ort["int8_eer"],
                     100 * ort["int8_rank1"], round(ort["onnx-int8_kb"], 1),
                     f"{ort['onnx-int8_ms']:.3f} (FP32 {ort['onnx_ms']:.3f})"])
        print(rows[-2:], flush=True)
        for bits in args.bits:
            variants = [("PTQ synthetic", "synthetic", None, True)] + [
                (f"QAT {s}", s.split("-")[0], "print" if s == "synthetic-print" else None, False) for s in sources]
            for name, source, look, ptq in variants:
                out = WORK / f"{key}-{name.replace(' ', '-')}-w{bits}"
                shutil.rmtree(out, ignore_errors=True)
                method = QuantizeConfig(bits=bits, source=source, look=look, images=args.images)
                fit_cfg = None if ptq else FitConfig(epochs=args.epochs, batch_size=64, lr=2e-3, optimizer="sgd",
                                                     schedule="cosine", warmup_epochs=0, seed=0)
                t0 = time.time()
                quantize_run(run, out, method, fit_cfg)
                seconds = time.time() - t0
                _, q_eer, q_r1 = headline(evaluate_run(out))
                kb = encoder_kb(load_model(out))
                entry["quantized"][f"{name} W{bits}A{bits}"] = {"eer": q_eer, "rank1": q_r1, "kb": kb,
                                                               "seconds": seconds}
                rows.append([label, f"{name} W{bits}A{bits}", mode, 100 * q_eer, 100 * q_r1, round(kb, 1), ""])
                print(rows[-1], f"{seconds:.0f} s", flush=True)
        results[label] = entry
    report("quantize", f"quantization by embedding distillation: EER / rank-1 % on each model's own test split; "
           f"QAT {args.epochs} epochs on {args.images} unlabeled images per branch",
           ["model", "variant", "mode", "EER %", "rank-1 %", "size KB", "ORT ms/img (b=1, 1 thread)"], rows,
           {"args": {k: str(v) for k, v in vars(args).items()}, "results": results})


if __name__ == "__main__":
    run_main(main)
