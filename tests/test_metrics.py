import numpy as np
import pytest
from sklearn.metrics import roc_curve

from biohash.match import metrics


def test_eer_hand_computed_case():
    # genuine 0.9 0.8 0.6 0.4, impostor 0.7 0.5 0.3 0.2: at threshold 0.6, FAR = 1/4 (0.7), FRR = 1/4 (0.4)
    e = metrics.eer([0.9, 0.8, 0.6, 0.4], [0.7, 0.5, 0.3, 0.2])
    assert e.rate == pytest.approx(0.25)


def test_eer_perfect_separation_is_zero():
    assert metrics.eer([0.9, 0.95], [0.1, 0.2]).rate == 0.0


def test_roc_matches_sklearn():
    rng = np.random.default_rng(0)
    g = np.round(rng.normal(0.7, 0.1, 400), 3)
    i = np.round(rng.normal(0.5, 0.1, 3000), 3)
    far, tar, thr = metrics.roc(g, i)
    y = np.r_[np.ones(g.size), np.zeros(i.size)]
    fpr, tpr, thr_sk = roc_curve(y, np.r_[g, i], drop_intermediate=False)
    np.testing.assert_allclose(far, fpr)
    np.testing.assert_allclose(tar, tpr)
    np.testing.assert_allclose(thr[1:], thr_sk[1:])


def test_eer_interpolates_where_far_and_frr_cross_between_thresholds():
    # genuine 0.9 0.5, impostor 0.5 0.1: at threshold 0.9 FAR 0 / FRR 1/2, at 0.5 FAR 1/2 / FRR 0; the two
    # straight lines cross half-way: EER 1/4 at threshold 0.7
    e = metrics.eer([0.9, 0.5], [0.5, 0.1])
    assert e.rate == pytest.approx(0.25) and e.threshold == pytest.approx(0.7)


def test_eer_agrees_with_the_best_threshold_found_by_brute_force():
    """Independent of the interpolation: no threshold has both FAR and FRR below the EER, and one has both
    within one sample's step of it."""
    rng = np.random.default_rng(1)
    g, i = rng.normal(0.65, 0.1, 500), rng.normal(0.5, 0.1, 5000)
    worst = [max(np.mean(i >= t), np.mean(g < t)) for t in np.r_[g, i]]
    assert metrics.eer(g, i).rate == pytest.approx(min(worst), abs=1 / 500)


def test_det_points_are_far_and_frr_at_every_threshold_by_hand():
    far, frr = metrics.det([0.9, 0.5, 0.3], [0.5, 0.2])
    # thresholds inf, 0.9, 0.5, 0.3, 0.2 (accept scores >= t)
    np.testing.assert_allclose(far, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(frr, [1, 2 / 3, 1 / 3, 0, 0])


def test_tar_at_far_and_threshold():
    g = np.array([0.9, 0.8, 0.7, 0.65])
    i = np.linspace(0.0, 0.65, 100)  # the top impostor ties the weakest genuine score at 0.65
    assert metrics.tar_at_far(g, i, 0.01) == pytest.approx(1.0)  # threshold 0.65 lets 1 impostor in 100 pass
    assert metrics.tar_at_far(g, i, 0.0) == pytest.approx(0.75)  # threshold 0.7
    assert metrics.threshold_at_far(g, i, 0.0) == pytest.approx(0.7)
    assert metrics.threshold_at_far(g, i, 0.01) == pytest.approx(0.65)
    # tar_at_far takes the loosest threshold within the FAR, i.e. the highest TAR: every threshold is checked
    thresholds = np.r_[g, i]
    best = max(np.mean(g >= t) for t in thresholds if np.mean(i >= t) <= 0.05)
    assert metrics.tar_at_far(g, i, 0.05) == best


def test_d_prime():
    g = np.array([1.0, 3.0])  # mean 2, var 1
    i = np.array([-1.0, 1.0])  # mean 0, var 1
    assert metrics.d_prime(g, i) == pytest.approx(2.0)


def _slow_cmc_map(sim, pid, gid, max_rank):
    hits, aps = np.zeros(max_rank), []
    for r in range(sim.shape[0]):
        order = sorted(range(sim.shape[1]), key=lambda c: (-sim[r, c], c))
        ranked = [gid[c] == pid[r] for c in order]
        first = ranked.index(True)
        hits[first:] += 1 if first < max_rank else 0
        found, precisions = 0, []
        for k, ok in enumerate(ranked, 1):
            if ok:
                found += 1
                precisions.append(found / k)
        aps.append(np.mean(precisions))
    return hits / sim.shape[0], float(np.mean(aps))


def test_cmc_and_map_match_slow_reference():
    rng = np.random.default_rng(2)
    gid = np.repeat(np.arange(12), 3)
    pid = rng.integers(0, 12, 40)
    sim = rng.random((40, gid.size)) + 0.3 * (pid[:, None] == gid[None, :])
    curve, m = _slow_cmc_map(sim, pid, gid, 10)
    np.testing.assert_allclose(metrics.cmc(sim, pid, gid, 10), curve)
    assert metrics.mean_average_precision(sim, pid, gid) == pytest.approx(m)


def test_bad_inputs():
    with pytest.raises(ValueError, match="genuine and impostor"):
        metrics.eer([], [0.1])
    with pytest.raises(ValueError, match="NaN"):
        metrics.eer([np.nan], [0.1])
    with pytest.raises(ValueError, match="n_probes, n_gallery"):
        metrics.cmc(np.zeros((2, 3)), np.zeros(3), np.zeros(3))


def test_bootstrap_ci_brackets_the_eer_and_narrows_with_data():
    rng = np.random.default_rng(3)
    g, i = rng.normal(0.7, 0.1, 200), rng.normal(0.5, 0.1, 2000)
    lo, hi = metrics.bootstrap_eer_ci(g, i, n=100)
    assert lo <= metrics.eer(g, i).rate <= hi
    g4, i4 = rng.normal(0.7, 0.1, 3200), rng.normal(0.5, 0.1, 32000)
    lo4, hi4 = metrics.bootstrap_eer_ci(g4, i4, n=100)
    assert hi4 - lo4 < (hi - lo) / 2


def test_linkability_by_hand():
    from biohash.match.metrics import linkability

    # two bins; mated 3:1, non-mated 1:3 -> LR 3 in the low bin: D = (3 - 1) / (3 + 1) = 0.5, weighted by 3/4
    assert linkability([0, 0, 0, 1], [0, 1, 1, 1], bins=2) == pytest.approx(0.375)
    assert linkability([0, 0, 0, 0], [1, 1, 1, 1], bins=2) == pytest.approx(1.0)  # fully separated
    same = np.random.default_rng(0).normal(size=20_000)
    assert linkability(same[:10_000], same[10_000:], bins=20) < 0.05  # one distribution: not linkable
