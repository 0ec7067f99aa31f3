import numpy as np
import pytest

from biohash.match.codes import pack
from biohash.match.scores import CodeSet, mode_scores, read_score_file, write_score_file


def _codeset(bits, ids, caps):
    return CodeSet(pack(np.asarray(bits, np.uint8)), np.asarray(ids), np.asarray(caps))


def _sets():
    rng = np.random.default_rng(0)
    base = {i: rng.integers(0, 2, 16) for i in "ab"}
    def noisy(i, k):
        b = base[i].copy()
        b[k] ^= 1
        return b
    gallery = {m: _codeset([noisy(i, 0) for i in "ab"], list("ab"), [0, 0]) for m in ("print", "vein")}
    probe = {"print": _codeset([noisy(i, 1) for i in "abb"], list("abb"), [1, 1, 2]),
             "vein": _codeset([noisy(i, 2) for i in "ab"], list("ab"), [1, 1])}
    return probe, gallery


def test_modes_shapes_and_fused_pairing():
    probe, gallery = _sets()
    assert mode_scores("print", probe, gallery).matrix.shape == (3, 2)
    assert mode_scores("cross", probe, gallery).matrix.shape == (3, 2)
    assert mode_scores("cross-rev", probe, gallery).matrix.shape == (2, 2)
    fused = mode_scores("fused", probe, gallery)
    assert fused.matrix.shape == (2, 2)  # the print capture 2 of "b" has no vein partner
    p = mode_scores("print", probe, gallery).matrix[:2]
    v = mode_scores("vein", probe, gallery).matrix
    np.testing.assert_allclose(fused.matrix, (p + v) / 2)
    assert (fused.genuine > 0.8).all()


def test_unknown_mode():
    probe, gallery = _sets()
    with pytest.raises(KeyError, match="expected one of"):
        mode_scores("iris", probe, gallery)


def test_score_file_roundtrip(tmp_path):
    probe, gallery = _sets()
    s = mode_scores("print", probe, gallery)
    write_score_file(s, tmp_path / "s.txt")
    lines = (tmp_path / "s.txt").read_text().splitlines()
    assert len(lines) == 6 and len(lines[0].split()) == 4
    g, i = read_score_file(tmp_path / "s.txt")
    np.testing.assert_allclose(np.sort(g), np.sort(s.genuine), atol=1e-6)
    np.testing.assert_allclose(np.sort(i), np.sort(s.impostor), atol=1e-6)
    (tmp_path / "bad.txt").write_text("a b 0.5\n")
    with pytest.raises(ValueError, match="4 columns"):
        read_score_file(tmp_path / "bad.txt")
