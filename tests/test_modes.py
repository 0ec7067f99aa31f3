"""One definition of the matching modes for evaluation and deployment (biohash.modes)."""
from __future__ import annotations

import numpy as np
import pytest

from biohash.codes import hamming, pack
from biohash.modes import MODE_NAMES, ModeError, mode, modes_for, resolve
from biohash.scores import CodeSet, mode_scores


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
