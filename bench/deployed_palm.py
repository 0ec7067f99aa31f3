"""Real palms through the deployment engine: what a user gets from `biohash enroll / identify / verify` on the test
palms of a run, by Hamming and by asymmetric matching, at the thresholds the export chose on validation palms.

The run is exported (torch back-end; thresholds from its validation split), every test gallery capture is enrolled
(one template per capture) and every test probe capture is sent as a user would: identify (rank-1 among all test
palms) and verify, a genuine claim and claims on `--impostors` other palms, decided at FAR 1e-3. Open set: the
test palms never trained or chose anything. Without test shifts (a run trained without them exports without them).

    python bench/deployed_palm.py bench/results/real_palm_runs/casia-roi-gsmall-arc-flip4-256-seed0
"""
from __future__ import annotations

import argparse
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
from _common import report, run_main

from biohash.match.types import Codes, RelaxedCodes, Sample
from biohash.train.data.config import DataConfig, open_split
from biohash.train.runs import read_config


def by_modality(samples: list[Sample]) -> dict[str, list[Sample]]:
    out: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        out[s.modality].append(s)
    return out


def encode(dep, dataset, samples: list[Sample], modality: str) -> list[Codes]:
    """One RelaxedCodes per sample, encoded in batches of 64 (what codes_from_images does one at a time)."""
    out = []
    for start in range(0, len(samples), 64):
        codes = dep.encoder.encode([dataset.load(s) for s in samples[start : start + 64]], modality)
        out += [RelaxedCodes(codes.bits[k : k + 1], codes.n_bits, codes.values[k : k + 1]) for k in range(len(codes))]
    return out


def measure(dep, gallery: dict[str, list], probes: dict[str, list], impostors: int) -> dict[str, float]:
    """Enroll (subject, codes) pairs, then identify + verify every probe: rank-1, genuine and impostor accepts."""
    for subject, code in gallery["rows"]:
        dep.enroll(subject, code)
    subjects = sorted({s for s, _ in gallery["rows"]})
    rank1 = genuine = impostor = claims = 0
    rng = np.random.default_rng(0)
    for subject, code in probes["rows"]:
        rank1 += dep.identify(code, k=1)[0]["subject"] == subject
        genuine += bool(dep.verify(subject, code).match)
        others = [s for s in subjects if s != subject]
        for other in rng.choice(others, min(impostors, len(others)), replace=False):
            impostor += bool(dep.verify(str(other), code).match)
            claims += 1
    n = len(probes["rows"])
    return {"probes": n, "rank1": 100 * rank1 / n, "genuine_accepted": 100 * genuine / n,
            "impostor_accepted": 100 * impostor / max(claims, 1), "impostor_claims": claims}


def rows_of(samples: list[Sample], codes: dict[str, dict[Sample, Codes]], modalities: list[str]) -> list:
    """(subject, {modality: code}) per capture holding every listed modality (fused: print and vein of one capture)."""
    captures: dict[tuple[str, int], dict[str, Codes]] = defaultdict(dict)
    for s in samples:
        if s.modality in modalities:
            captures[(s.identity, s.capture)][s.modality] = codes[s.modality][s]
    return [(identity, c) for (identity, _), c in sorted(captures.items()) if set(c) == set(modalities)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a training run folder (bench/results/real_palm_runs/...)")
    ap.add_argument("--impostors", type=int, default=10, help="impostor claims per probe (other test palms)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from biohash.serve.deployment import Deployment
    from biohash.train.export import export_run

    bundle = export_run(args.run, fmt="torch")
    dataset, split = open_split(DataConfig(**read_config(args.run)["data"]))
    modalities = [m for m in bundle["modalities"] if m in by_modality(split.test_probe)]
    columns = ["run", "mode", "matching", "threshold (bits, FAR 1e-3 on validation)", "validation impostor pairs",
               "validation impostor palm pairs",
               "probes", "rank-1 %",
               "genuine accepted %", "impostor claims", "impostor accepted %"]
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        reader = Deployment.from_bundle(args.run / "export", Path(tmp) / "codes.db")
        codes = {m: {s: c for side in (split.test_gallery, split.test_probe)
                     for s, c in zip(by_modality(side)[m], encode(reader, dataset, by_modality(side)[m], m))}
                 for m in modalities}
        modes = [[m] for m in modalities] + ([["print", "vein"]] if {"print", "vein"} <= set(modalities) else [])
        for mode in modes:
            gallery = {"rows": rows_of(split.test_gallery, codes, mode)}
            probes = {"rows": rows_of(split.test_probe, codes, mode)}
            for asymmetric in (False, True):
                store = Path(tmp) / f"{'-'.join(mode)}-{asymmetric}.db"
                dep = Deployment.from_bundle(args.run / "export", store, asymmetric=asymmetric)
                r = measure(dep, gallery, probes, args.impostors)
                name = dep.mode_name("fused" if len(mode) > 1 else mode[0], probes["rows"][0][1])
                r["threshold"] = dep.threshold(name)
                support = bundle["threshold_pairs"].get(name, {})
                r["validation_impostor_pairs"] = support.get("impostor")
                r["validation_impostor_palm_pairs"] = support.get("impostor_palm_pairs")
                results[name] = r
                rows.append([args.run.name, name, "asymmetric" if asymmetric else "Hamming", r["threshold"],
                             r["validation_impostor_pairs"], r["validation_impostor_palm_pairs"], r["probes"], round(r["rank1"], 1), round(r["genuine_accepted"], 1),
                             r["impostor_claims"], round(r["impostor_accepted"], 3)])
                dep.store.close()
    report(f"deployed_palm{args.tag}", "real test palms through the deployment engine (open set; thresholds from "
           "validation palms)", columns, rows, {"run": str(args.run), "results": results,
                                               "bundle_thresholds": bundle["thresholds"],
                                               "threshold_pairs": bundle["threshold_pairs"]})


if __name__ == "__main__":
    run_main(main)
