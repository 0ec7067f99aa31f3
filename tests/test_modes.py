"""One definition of the matching modes for evaluation and deployment (biohash.match.modes)."""
from __future__ import annotations

import numpy as np
import pytest

from biohash.match.codes import hamming, pack
from biohash.match.modes import MODE_NAMES, ModeError, mode, modes_for, resolve
from biohash.match.scores import CodeSet, mode_scores


def test_requests_resolve_to_the_modes_evaluation_scores():
    assert resolve(["print", "vein"]).name == "fused" and resolve(["vein", "print"], "fused").name == "fused"
    assert resolve(["print"]).pairs == (("print", "print"),)
    assert resolve(["print"], "vein").name == "cross" and resolve(["vein"], "print").name == "cross-rev"
    assert resolve(["ocular"]).pairs == (("ocular", "ocular"),)
    for bad, against in ((["print", "vein"], "vein"), (["print", "ocular", "vein"], None), ([], None),
                         (["ocular"], "print")):
        with pytest.raises(ModeError):
            resolve(bad, against)
    assert modes_for(("vein", "print")) == MODE_NAMES and modes_for(["ocular"]) == ("ocular",)
    assert mode("fused").gallery_of("vein") == "vein" and mode("cross").gallery_of("print") == "vein"


def test_a_mode_scores_the_mean_of_its_pairs_as_deployment_does():
    """Evaluation's similarity of a mode equals 1 - deployment's mean normalised distance over the same pairs."""
    rng = np.random.default_rng(0)
    ids, caps = np.array(["a", "b", "c"]), np.array([0, 0, 0])
    codes = {m: pack(rng.integers(0, 2, (3, 32)).astype(np.uint8)) for m in ("print", "vein")}
    probe = {m: CodeSet(c, ids, caps) for m, c in codes.items()}
    gallery = {m: CodeSet(pack(rng.integers(0, 2, (3, 32)).astype(np.uint8)), ids, caps) for m in codes}
    for name in MODE_NAMES:
        m = mode(name)
        expected = np.mean([hamming(probe[p].codes, gallery[g].codes) for p, g in m.pairs], axis=0) / 32
        assert np.allclose(mode_scores(name, probe, gallery).matrix, 1 - expected), name


def test_fusion_is_one_mean_shared_by_evaluation_and_deployment(tmp_path, fixed):
    """modes.fuse against a hand computation, then the same fused figure from both users of it: evaluation's
    fused similarity (scores.mode_scores) and a deployment's fused verify distance, for the same codes."""
    import numpy as np

    from biohash.match.codes import pack
    from biohash.match.modes import fuse
    from biohash.match.scores import CodeSet, mode_scores
    from biohash.match.types import Codes
    from biohash.serve.deployment import Deployment

    assert fuse([np.array([[0.5]]), np.array([[0.0]])])[0, 0] == 0.25 and fuse([3.0, 6.0, 0.0]) == 3.0
    dep = Deployment.from_bundle(fixed, tmp_path / "f.db")
    rng = np.random.default_rng(5)
    bits = {m: rng.integers(0, 2, (1, dep.bits)).astype(np.uint8).repeat(2, axis=0) for m in ("print", "vein")}
    bits["print"][1, :3] ^= 1  # the probe is 3 bits off in print, 7 in vein
    bits["vein"][1, :7] ^= 1
    side = lambda row: {m: Codes(pack(b[row : row + 1]).bits, dep.bits) for m, b in bits.items()}  # noqa: E731
    dep.enroll("a", side(0))
    d = dep.verify("a", side(1))
    assert d.mode == "fused" and d.distance == fuse([3.0, 7.0]) == 5.0
    sets = lambda row: {m: CodeSet(c, np.array(["a"]), np.array([0])) for m, c in side(row).items()}  # noqa: E731
    sim = mode_scores("fused", sets(1), sets(0)).matrix[0, 0]
    assert sim == pytest.approx(1 - d.distance / dep.bits)
