"""Biometric metrics as array functions (numpy only): FAR/FRR, ROC, DET, EER, TAR@FAR, d', CMC, mAP.

Scores follow one convention everywhere: higher means "more likely the same identity". An attempt is
accepted when its score is >= the threshold.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _check_scores(genuine: np.ndarray, impostor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    g = np.asarray(genuine, dtype=np.float64).ravel()
    i = np.asarray(impostor, dtype=np.float64).ravel()
    if g.size == 0 or i.size == 0:
        raise ValueError(f"need genuine and impostor scores, got {g.size} genuine and {i.size} impostor")
    if not (np.isfinite(g).all() and np.isfinite(i).all()):
        raise ValueError("scores contain NaN or infinity")
    return g, i


def far_frr(genuine: np.ndarray, impostor: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False accept and false reject rates at every distinct score used as threshold.

    Args:
        genuine: scores of same-identity comparisons, shape (G,).
        impostor: scores of different-identity comparisons, shape (I,).

    Returns:
        thresholds (T,) in decreasing order, with +inf first (accept nothing);
        far (T,): fraction of impostor scores >= threshold; frr (T,): fraction of genuine scores < threshold.
    """
    g, i = _check_scores(genuine, impostor)
    thresholds = np.unique(np.concatenate([g, i]))[::-1]
    g_sorted = np.sort(g)
    i_sorted = np.sort(i)
    # count of scores >= t  =  n - (count of scores < t)
    g_accept = g.size - np.searchsorted(g_sorted, thresholds, side="left")
    i_accept = i.size - np.searchsorted(i_sorted, thresholds, side="left")
    thresholds = np.concatenate([[np.inf], thresholds])
    far = np.concatenate([[0.0], i_accept / i.size])
    frr = np.concatenate([[1.0], 1.0 - g_accept / g.size])
    return thresholds, far, frr


def roc(genuine: np.ndarray, impostor: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve: (far, tar, thresholds), far increasing from 0 to 1."""
    thresholds, far, frr = far_frr(genuine, impostor)
    return far, 1.0 - frr, thresholds


def det(genuine: np.ndarray, impostor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DET curve points: (far, frr)."""
    _, far, frr = far_frr(genuine, impostor)
    return far, frr


@dataclass(frozen=True)
class EER:
    """Equal error rate and the threshold where FAR and FRR cross."""

    rate: float
    threshold: float


def eer(genuine: np.ndarray, impostor: np.ndarray) -> EER:
    """Equal error rate: the point where FAR = FRR, linearly interpolated between the two nearest thresholds."""
    thresholds, far, frr = far_frr(genuine, impostor)
    diff = far - frr  # goes from -1 (t=inf) up to >= 0 (lowest threshold)
    k = int(np.argmax(diff >= 0))
    if k == 0 or diff[k] == 0:
        t = thresholds[k] if np.isfinite(thresholds[k]) else thresholds[min(k + 1, len(thresholds) - 1)]
        return EER(float((far[k] + frr[k]) / 2), float(t))
    # segment between k-1 (far < frr) and k (far >= frr): intersect the two lines
    d0, d1 = diff[k - 1], diff[k]
    w = d0 / (d0 - d1)
    rate = far[k - 1] + w * (far[k] - far[k - 1])
    t_prev = thresholds[k - 1] if np.isfinite(thresholds[k - 1]) else thresholds[k]
    return EER(float(rate), float(t_prev + w * (thresholds[k] - t_prev)))


def tar_at_far(genuine: np.ndarray, impostor: np.ndarray, far_target: float) -> float:
    """True accept rate at the loosest threshold whose FAR does not exceed `far_target`: the highest TAR any
    threshold reaches within that FAR."""
    if not 0.0 <= far_target <= 1.0:
        raise ValueError(f"far_target must lie in [0, 1], got {far_target}")
    _, far, frr = far_frr(genuine, impostor)
    ok = np.nonzero(far <= far_target)[0]
    return float(1.0 - frr[ok[-1]])


def threshold_at_far(genuine: np.ndarray, impostor: np.ndarray, far_target: float) -> float:
    """Lowest (loosest) threshold whose FAR does not exceed `far_target`, the one tar_at_far scores (to be
    chosen on validation data only)."""
    thresholds, far, _ = far_frr(genuine, impostor)
    ok = np.nonzero(far <= far_target)[0]
    return float(thresholds[ok[-1]])


def d_prime(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """Decidability index d' = |mu_g - mu_i| / sqrt((var_g + var_i) / 2)."""
    g, i = _check_scores(genuine, impostor)
    denom = np.sqrt((g.var() + i.var()) / 2.0)
    if denom > 0:
        return float(abs(g.mean() - i.mean()) / denom)
    return 0.0 if g.mean() == i.mean() else float("inf")  # every code identical: no separation at all


def _ranked_matches(similarity: np.ndarray, probe_ids: np.ndarray, gallery_ids: np.ndarray) -> np.ndarray:
    s = np.asarray(similarity)
    p, g = np.asarray(probe_ids), np.asarray(gallery_ids)
    if s.ndim != 2 or s.shape != (p.size, g.size):
        raise ValueError(f"similarity must be (n_probes, n_gallery) = ({p.size}, {g.size}), got {s.shape}")
    order = np.argsort(-s, axis=1, kind="stable")
    return g[order] == p[:, None]


def cmc(similarity: np.ndarray, probe_ids: np.ndarray, gallery_ids: np.ndarray, max_rank: int = 20) -> np.ndarray:
    """Cumulative match characteristic.

    Args:
        similarity: (n_probes, n_gallery), higher is closer.
        probe_ids: (n_probes,) identities; gallery_ids: (n_gallery,) identities.
        max_rank: length of the curve.

    Returns:
        (max_rank,) fraction of probes with a correct gallery match within the first k ranks. Probes whose
        identity is absent from the gallery count as misses (open-set probes should be filtered first).
        Ties are broken by gallery order.
    """
    matches = _ranked_matches(similarity, probe_ids, gallery_ids)
    first = np.where(matches.any(axis=1), matches.argmax(axis=1), np.iinfo(np.int64).max)
    ranks = np.arange(1, max_rank + 1)
    return (first[:, None] < ranks[None, :]).mean(axis=0)


def mean_average_precision(similarity: np.ndarray, probe_ids: np.ndarray, gallery_ids: np.ndarray) -> float:
    """mAP over probes that have at least one gallery match; ties broken by gallery order."""
    matches = _ranked_matches(similarity, probe_ids, gallery_ids)
    valid = matches.any(axis=1)
    if not valid.any():
        raise ValueError("no probe has a matching identity in the gallery")
    m = matches[valid].astype(np.float64)
    hits = np.cumsum(m, axis=1)
    precision = hits / np.arange(1, m.shape[1] + 1)
    return float(((precision * m).sum(axis=1) / m.sum(axis=1)).mean())


def bootstrap_eer_ci(genuine: np.ndarray, impostor: np.ndarray, n: int = 200, seed: int = 0,
                     level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the EER (resampling scores independently)."""
    g, i = _check_scores(genuine, impostor)
    rng = np.random.default_rng(seed)
    vals = [eer(rng.choice(g, g.size), rng.choice(i, i.size)).rate for _ in range(n)]
    lo, hi = np.quantile(vals, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def linkability(mated: np.ndarray, non_mated: np.ndarray, bins: int = 100, omega: float = 1.0) -> float:
    """Global linkability D<->sys in [0, 1] of protected templates (Gomez-Barrero et al. 2018, the measure of
    ISO/IEC 30136): scores between templates of one subject under two keys (mated) and of two subjects
    (non-mated). Per score bin, D<->(s) = (LR * omega - 1) / (LR * omega + 1) where LR = f_mated / f_non-mated
    exceeds 1 / omega (else 0); D<->sys is D<->(s) averaged over the mated scores. 0: the templates cannot be
    linked; 1: every mated pair can."""
    mated, non_mated = _check_scores(mated, non_mated)
    edges = np.linspace(min(mated.min(), non_mated.min()), max(mated.max(), non_mated.max()) + 1e-12, bins + 1)
    f_m = np.histogram(mated, edges)[0] / len(mated)
    f_n = np.histogram(non_mated, edges)[0] / len(non_mated)
    lr = np.where(f_n > 0, f_m / np.where(f_n > 0, f_n, 1), np.inf)
    with np.errstate(invalid="ignore"):  # inf / inf where no non-mated score falls: D = 1 there
        local = np.where(np.isinf(lr), 1.0, (lr * omega - 1) / (lr * omega + 1))
    local = np.where(lr * omega > 1, local, 0.0)
    return float((local * f_m).sum())
