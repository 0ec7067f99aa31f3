"""Evaluation: a model + gallery/probe samples -> codes -> scores per mode -> metrics (EER, TAR@FAR, rank-1, mAP)."""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from biohash.match import metrics
from biohash.match.codes import from_real, similarity
from biohash.match.modes import mode, modes_for
from biohash.match.scores import CodeSet, mode_scores
from biohash.match.types import Sample, Scores
from biohash.train.data.datasets import Dataset
from biohash.train.data.loaders import image_batches
from biohash.train.devices import model_device

if TYPE_CHECKING:
    from biohash.train.recipes.base import CodeModel

FAR_POINTS = (1e-3, 1e-2)


@torch.no_grad()
def relaxed_codes(net: Any, dataset: Dataset, samples: list[Sample], size: int,
                  batch_size: int = 128) -> np.ndarray:
    """Relaxed codes in (-1, 1), (n, bits), of `samples` under one hashing network (a CodeModel branch: an
    nn.Module with `bits`); their signs are the code."""
    from rich.console import Console
    from rich.progress import track

    net.eval()
    batches = track(image_batches(dataset, samples, size, batch_size), total=-(-len(samples) // batch_size),
                    description=f"encode {len(samples)} images", transient=True,
                    disable=not Console().is_terminal)  # a log file gets no empty line per bar
    device = model_device(net)
    outs = [net(x.to(device)).float().cpu().numpy() for x in batches]
    return np.concatenate(outs) if outs else np.zeros((0, net.bits), np.float32)


def _code_set(values: np.ndarray, samples: list[Sample]) -> CodeSet:
    return CodeSet(from_real(values), np.array([s.identity for s in samples]),
                   np.array([s.capture + 1000 * s.session for s in samples]))


def encode_by_modality(model: CodeModel, dataset: Dataset, samples: list[Sample], size: int,
                       floats: dict[str, np.ndarray] | None = None) -> dict[str, CodeSet]:
    """CodeSets per modality of a CoHashNet (each modality through its own branch); `floats`, when given,
    receives each modality's relaxed codes."""
    out: dict[str, CodeSet] = {}
    for m in model.modalities:
        subset = [s for s in samples if s.modality == m]
        if subset:
            values = relaxed_codes(model.net(m), dataset, subset, size)
            out[m] = _code_set(values, subset)
            if floats is not None:
                floats[m] = values
    return out


def float_scores(mode: str, probe: np.ndarray, gallery: np.ndarray, p_set: CodeSet, g_set: CodeSet) -> Scores:
    """Cosine similarity of relaxed codes, before binarisation: mode "<modality>-float". Next to the Hamming
    figures of the same modality it shows what taking signs costs."""
    def unit(x: np.ndarray) -> np.ndarray:
        return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12)

    return Scores(f"{mode}-float", unit(probe) @ unit(gallery).T, np.asarray(p_set.identities),
                  np.asarray(g_set.identities), p_set.names(), g_set.names())


def score_metrics(scores: Scores) -> dict[str, float]:
    """Verification and identification figures of one mode's score matrix."""
    g, i = scores.genuine, scores.impostor
    e = metrics.eer(g, i)
    out = {"eer": e.rate, "eer_threshold": e.threshold, "d_prime": metrics.d_prime(g, i)}
    for far in FAR_POINTS:
        out[f"tar@far={far:g}"] = metrics.tar_at_far(g, i, far)
    has_match = scores.genuine_mask.any(axis=1)
    sim, pid = scores.matrix[has_match], scores.probe_ids[has_match]
    curve = metrics.cmc(sim, pid, scores.gallery_ids, max_rank=10)
    out.update({"rank1": float(curve[0]), "rank5": float(curve[4]),
                "map": metrics.mean_average_precision(sim, pid, scores.gallery_ids),
                "genuine_mean": float(g.mean()), "impostor_mean": float(i.mean()),
                "n_genuine": int(g.size), "n_impostor": int(i.size)})
    return out


def evaluate_features(model: Any, dataset: Dataset, gallery: list[Sample], probe: list[Sample],
                      size: int) -> tuple[dict[str, Scores], dict[str, dict[str, float]]]:
    """Scores and metrics of a float-feature model (GPA-Net): cosine similarity of its L2-normalised colour
    features, one mode named after the probes' modality (e.g. "palmar"); a model with a hash head adds the
    Hamming similarity of its binary codes as mode "<modality>-hash". `model`: an nn.Module with
    forward_embed, and forward_code where it has `bits`."""
    from biohash.train.data.loaders import colour_batches

    model.eval()
    hashing = bool(getattr(model, "bits", None))
    feats, codes = {}, {}
    device = model_device(model)
    with torch.no_grad():
        for name, samples in (("gallery", gallery), ("probe", probe)):
            batches = list(colour_batches(dataset, samples, size))
            feats[name] = torch.cat([model.forward_embed(x.to(device)).float().cpu() for x in batches]).numpy()
            if hashing:
                codes[name] = from_real(torch.cat([model.forward_code(x.to(device)).float().cpu()
                                                   for x in batches]).numpy())
    mode = probe[0].modality if probe else "features"
    p_ids, g_ids = np.array([p.identity for p in probe]), np.array([g.identity for g in gallery])
    scores = {mode: Scores(mode, feats["probe"] @ feats["gallery"].T, p_ids, g_ids)}
    if hashing:
        scores[f"{mode}-hash"] = Scores(f"{mode}-hash", similarity(codes["probe"], codes["gallery"]), p_ids, g_ids)
    return scores, {m: score_metrics(s) for m, s in scores.items()}


def evaluate(model: Any, dataset: Dataset, gallery: list[Sample], probe: list[Sample],
             size: int, *, floats: bool = False) -> tuple[dict[str, Scores], dict[str, dict[str, float]]]:
    """Scores and metrics for every mode the model's modalities support (codes), or of its float features
    when the model has no per-modality hashing branches (GPA-Net). floats=True adds "<modality>-float" modes
    (cosine of the relaxed codes before binarisation, same-modality only) and "<mode>-asym" for every mode (the
    probe's relaxed code against the gallery's codes: the stored template, the probe left unbinarised).
    `model`: a CodeModel, or a float-feature model whose `modalities` is empty."""
    if not model.modalities:  # one network for every image (GPA-Net): float features, and codes with bits
        return evaluate_features(model, dataset, gallery, probe, size)
    g_float: dict[str, np.ndarray] = {}
    p_float: dict[str, np.ndarray] = {}
    g_codes = encode_by_modality(model, dataset, gallery, size, g_float)
    p_codes = encode_by_modality(model, dataset, probe, size, p_float)
    held = set(p_codes) & set(g_codes)  # a print-only database of a joined run has no vein, fused or cross mode
    held_modes = [m for m in modes_for(model.modalities) if {a for pair in mode(m).pairs for a in pair} <= held]
    all_scores = {m: mode_scores(m, p_codes, g_codes) for m in held_modes}
    if floats:
        for m in model.modalities:
            if m in p_float and m in g_float:
                all_scores[f"{m}-float"] = float_scores(m, p_float[m], g_float[m], p_codes[m], g_codes[m])
        for m in held_modes:  # the probe's relaxed codes against the stored codes (match.codes.asymmetric_distance)
            asym = mode_scores(m, p_codes, g_codes, probe_values=p_float)
            all_scores[f"{m}-asym"] = dataclasses.replace(asym, mode=f"{m}-asym")
    return all_scores, {mode: score_metrics(s) for mode, s in all_scores.items()}


def validation(dataset: Dataset, gallery: list[Sample], probe: list[Sample], size: int):
    """A `validate(model)` for the fit loop: each mode's EER on the validation split, their mean (`val_eer`),
    the mean of the modes that match like with like (`val_eer_same`: print, vein, fused; cross modes left out)
    and, for code models, that mean scored asymmetrically as the figures are reported (`val_eer_same_asym`: the
    probe's relaxed code against the stored codes), any of which `FitConfig.monitor` may choose the checkpoint by."""

    def validate(model: torch.nn.Module) -> dict[str, float]:
        _, per_mode = evaluate(model, dataset, gallery, probe, size, floats=True)
        plain = {m: v["eer"] for m, v in per_mode.items() if not m.endswith(("-asym", "-float"))}
        row = {f"val_eer_{m}": eer for m, eer in plain.items()}
        same = [eer for m, eer in plain.items() if not m.startswith("cross")]
        row["val_eer"] = float(np.mean(list(plain.values())))
        row["val_eer_same"] = float(np.mean(same)) if same else row["val_eer"]
        asym = [v["eer"] for m, v in per_mode.items() if m.endswith("-asym") and not m.startswith("cross")]
        if asym:
            row["val_eer_same_asym"] = float(np.mean(asym))
        return row

    return validate
