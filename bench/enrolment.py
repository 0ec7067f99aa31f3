"""Enrolment with every capture of a palm: per-image scores against per-palm scores, learned code and CompCode.

real_palm.py scores each probe against each enrolled capture (a template per image). A deployment usually
enrols several captures of a person; scoring a probe against a palm by the mean of its captures' scores (the
learned code: the probe's relaxed code against the palm's codes, asymmetric with test shifts, read from the
run's score files) or their best (CompCode's classic practice) shows how much of each method's error is one
bad capture. Same split, gallery and probes as the run's; validation and test palms.

    python bench/enrolment.py results/real_palm_runs/polyu-gsmall-arc-flip4-256-seed0 --set polyu [--tag -x]
"""
from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np
from _common import report, run_main
from real_palm import PARTS, compcode_similarity, part_config

from biohash.match.metrics import eer
from biohash.train.data.config import open_split

SUB = {"val": "open-val-shifts4", "test": "open-test-shifts4"}


def learned_scores(run: Path, split: str, modality: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The run's asymmetric scores with shifts as a (probe, enrolled image) matrix, and their identities, read from
    its score file (one line per pair, every probe against the gallery in one order)."""
    path = run / "eval" / SUB[split] / f"scores-{modality}-asym.txt"
    by_probe: dict[tuple[str, str], list[tuple[str, float]]] = defaultdict(list)
    for line in path.read_text().splitlines():  # gallery_id probe_id probe_name score
        gallery_id, probe_id, probe_name, score = line.split()
        by_probe[(probe_name, probe_id)].append((gallery_id, float(score)))
    columns = [g for g, _ in next(iter(by_probe.values()))]
    if any([g for g, _ in pairs] != columns for pairs in by_probe.values()):
        raise SystemExit(f"{path}: probes were not all scored against one gallery in one order")
    sim = np.array([[score for _, score in pairs] for pairs in by_probe.values()])
    return sim, np.array([probe_id for _, probe_id in by_probe]), np.array(columns)


def compcode_scores(dataset, gallery: list, probe: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CompCode's (384 B, +-3 cells) similarity of every probe to every enrolled image, and their identities."""
    sim = compcode_similarity([dataset.load(s) for s in probe], [dataset.load(s) for s in gallery])
    return sim, np.array([s.identity for s in probe]), np.array([s.identity for s in gallery])


def palm_eers(sim: np.ndarray, probe_ids: np.ndarray, gallery_ids: np.ndarray) -> tuple[float, float, float]:
    """EER % per image pair, per palm by the mean of its captures' scores, and by their best."""
    palms = np.unique(gallery_ids)
    mean = np.stack([sim[:, gallery_ids == p].mean(axis=1) for p in palms], axis=1)
    best = np.stack([sim[:, gallery_ids == p].max(axis=1) for p in palms], axis=1)
    same, own = probe_ids[:, None] == gallery_ids[None, :], probe_ids[:, None] == palms[None, :]
    return tuple(100 * eer(s[m], s[~m]).rate for s, m in ((sim, same), (mean, own), (best, own)))  # type: ignore


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a real_palm.py run folder (its eval/ score files are read)")
    ap.add_argument("--set", required=True, choices=[n for n in PARTS if PARTS[n][3].get("protocol", "open") == "open"])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--seed", type=int, default=0, help="the run's split seed")
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    dataset, split = open_split(part_config(args.set, args.data, args.seed))
    rows = []
    for name, gallery, probe in (("val", split.val_gallery, split.val_probe), ("test", split.test_gallery,
                                                                              split.test_probe)):
        for modality in ("print", "vein"):
            if not (args.run / "eval" / SUB[name] / f"scores-{modality}-asym.txt").is_file():
                continue  # a print-only database has no vein scores
            chosen = [[s for s in part if s.modality == modality] for part in (gallery, probe)]
            for method, scores in (("learned 32 B, asymmetric with shifts", learned_scores(args.run, name, modality)),
                                   ("CompCode 384 B", compcode_scores(dataset, *chosen))):
                rows.append([args.set, name, modality, method, *(round(e, 3) for e in palm_eers(*scores))])
    if not rows:
        raise SystemExit(f"{args.run}/eval holds no {SUB['test']} score files: run bench/real_palm.py for this run "
                         f"first (it writes them)")
    report(f"enrolment{args.tag}", f"probe against each enrolled image or each palm ({args.run.name}); EER %",
           ["set", "split", "modality", "method", "per image", "palm: mean of captures", "palm: best capture"], rows,
           {"run": str(args.run), "seed": args.seed})


if __name__ == "__main__":
    run_main(main)
