"""Sample quality gate (biohash.imaging.quality): limits from calibration palms, false rejects on the other palms of every
real database in ../shared/data, refusals of noise and of images that are not palm ROIs.

Calibration: the even-numbered palms (sorted identity ids) of every database and band; each limit is their most
extreme value with a 10 % margin (x 1.1 for an upper limit, x 0.9 for a lower one). The shipped LIMITS are
printed beside the ones derived here; false rejects are counted with the shipped limits.

    python bench/quality.py [--data ../shared/data] [--per-set 0 (all images)]
"""
from __future__ import annotations

import argparse
import random
from dataclasses import asdict
from pathlib import Path

import numpy as np
from _common import report, run_main

from biohash.imaging.images import read_image
from biohash.imaging.quality import LIMITS, Quality, sample_quality
from biohash.train.data.datasets import open_dataset

PALMS = {  # name -> (adapter, folder, options)
    "polyu-ms-full (red, green, blue, nir)": ("polyu-ms", "polyu-ms-full", {"bands": "red,green,blue,nir"}),
    "casia-ms-roi (six bands)": ("casia-ms", "casia-ms-roi", {"bands": "460,630,700,WHT,850,940", "roi": "none"}),
    "tongji-full": ("tongji", "tongji-full", {}),
    "polyu-ms (green, nir)": ("polyu-ms", "polyu-ms", {"bands": "green,nir"}),
    "tongji": ("tongji", "tongji", {}),
    "casia-ms 940 valley ROIs": ("casia-ms", "casia-ms", {"bands": "940"}),
}
OTHERS = {  # name -> glob under --data: images that are not palm ROIs
    "iitd-iris (eye close-ups)": "iitd-iris/*/*.png",
    "11k-hands (whole-hand photos)": "11k-hands/images/*.jpg",
    "hand-keypoints (hand photos)": "hand-keypoints/**/*.jpg",
    "veindeep (infrared scenes)": "veindeep/*_ir_raw.png",
    "casia-ms 940 (whole-hand photos)": "casia-ms/940/*.jpg",
}


def noise_images(rng: np.random.Generator, n: int) -> dict[str, list[np.ndarray]]:
    import cv2

    def blurred(sigma: float) -> np.ndarray:
        x = cv2.GaussianBlur(rng.integers(0, 256, (128, 128)).astype(np.float32), (0, 0), sigma)
        return cv2.normalize(x, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)

    return {"uniform noise 128 px": [rng.integers(0, 256, (128, 128), dtype=np.uint8) for _ in range(n)],
            "uniform noise 64 px": [rng.integers(0, 256, (64, 64), dtype=np.uint8) for _ in range(n)],
            "Gaussian noise 256 px": [np.clip(rng.normal(128, 40, (256, 256)), 0, 255).astype(np.uint8) for _ in range(n)],
            "noise blurred 1 px": [blurred(1) for _ in range(n)],
            "noise blurred 3 px (clouds)": [blurred(3) for _ in range(n)],
            "salt and pepper": [(rng.random((128, 128)) < 0.5).astype(np.uint8) * 255 for _ in range(n)]}


def palm_qualities(data: Path, per_set: int) -> dict[str, tuple[list[Quality], list[Quality]]]:
    """name -> (calibration qualities, held-out qualities)."""
    out = {}
    for name, (adapter, folder, options) in PALMS.items():
        if not (data / folder).is_dir():
            print(f"skipped {name}: {data / folder} not found")
            continue
        ds = open_dataset(adapter, root=str(data / folder), **options)
        ids = sorted(ds.identities())
        even = set(ids[::2])
        samples = list(ds.samples)
        if per_set:
            samples = random.Random(0).sample(samples, min(per_set, len(samples)))
        cal, held = [], []
        for s in samples:
            (cal if s.identity in even else held).append(sample_quality(ds.load(s)))
        out[name] = (cal, held)
        print(f"{name}: {len(cal)} calibration, {len(held)} held-out images")
    return out


def derived_limits(cal: list[Quality]) -> dict[str, float]:
    values = {k: np.array([asdict(q)[k] for q in cal]) for k in LIMITS}
    return {k: float(values[k].max() * 1.1 if side == "max" else values[k].min() * 0.9)
            for k, (side, _) in LIMITS.items()}


def refused(qs: list[Quality]) -> float:
    return 100.0 * sum(bool(q.failures()) for q in qs) / max(len(qs), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--per-set", type=int, default=0, help="images per palm set (0: all)")
    args = ap.parse_args()
    palms = palm_qualities(args.data, args.per_set)
    derived = derived_limits([q for cal, _ in palms.values() for q in cal])
    rows = [[name, "palm ROIs", len(cal), len(held), refused(cal), refused(held)] for name, (cal, held) in palms.items()]
    for name, pattern in OTHERS.items():
        files = sorted(args.data.glob(pattern))[:300]
        qs = [sample_quality(read_image(f)) for f in files]
        rows.append([name, "not palm ROIs", 0, len(qs), "-", refused(qs)])
    for name, imgs in noise_images(np.random.default_rng(0), 100).items():
        rows.append([name, "noise", 0, len(imgs), "-", refused([sample_quality(i) for i in imgs])])
    limits = {k: {"shipped": v, "derived": round(derived[k], 3)} for k, (_, v) in LIMITS.items()}
    print("limits (shipped / derived from calibration palms):",
          ", ".join(f"{k} {v['shipped']} / {v['derived']}" for k, v in limits.items()))
    report("quality", "sample quality gate: % of images refused (shipped LIMITS; palms: false rejects)",
           ["set", "kind", "calibration images", "held-out images", "% refused (calibration)", "% refused (held out)"],
           rows, {"limits": limits})


if __name__ == "__main__":
    run_main(main)
