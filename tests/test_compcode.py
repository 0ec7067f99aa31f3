"""CompCode baseline, and the generator's calibration against real ROIs in ../shared/data."""
import glob

import numpy as np
import pytest

from biohash.imaging.compcode import compcode, distance, genuine_impostor
from biohash.train.data.synthetic import SyntheticPalms


def test_code_shape_identity_and_shift_tolerance():
    img = SyntheticPalms(seed=0).render(0, "print", 0)
    code = compcode(img)
    assert code.shape == (32, 32) and code.min() >= 0 and code.max() <= 5
    assert distance(code, code) == 0.0
    shifted = np.roll(img, 8, axis=1)  # 2 grid cells
    assert distance(code, compcode(shifted), shift=3) < 0.1 < distance(code, compcode(shifted), shift=0)


def test_coarse_grid_pools_the_filter_responses():
    """A code at a learned code's budget (8x8 cells x 3 bits = 192 bits): each cell is the argmin of the six
    Gabor responses averaged over the cell, computed here independently with OpenCV."""
    import cv2

    img = SyntheticPalms(seed=0).render(3, "print", 1)
    x = cv2.resize(img, (128, 128)).astype(np.float32)
    kernels = [cv2.getGaborKernel((35, 35), 5.6, j * np.pi / 6, 10.9, 1.0, 0) for j in range(6)]
    resp = np.stack([cv2.filter2D(x, cv2.CV_32F, k - k.mean()) for k in kernels])
    expected = resp.reshape(6, 8, 16, 8, 16).mean(axis=(2, 4)).argmin(axis=0)
    code = compcode(img, cells=8)
    assert code.shape == (8, 8) and (code == expected).all()
    assert len(np.unique(code)) > 2  # the palm's lines give several orientations
    assert (compcode(img, cells=32) == compcode(img)).all()  # the classic code is unchanged
    with pytest.raises(ValueError, match="cells"):
        compcode(img, cells=12)


def test_colour_input_and_bad_shapes():
    rgb = np.dstack([SyntheticPalms(seed=0).render(0, "print", 0)] * 3)
    assert compcode(rgb).shape == (32, 32)
    with pytest.raises(ValueError, match="grey image"):
        compcode(np.zeros((4, 4, 2), np.uint8))


def _load(files):
    import cv2

    return [cv2.imread(f, 0) for f in files]


@pytest.mark.parametrize("band,modality", [("green", "print"), ("nir", "vein")])
def test_synthetic_genuine_pairs_vary_like_real_polyu(shared_data, band, modality):
    """The generator's nuisance ranges were set so that this holds; a change that breaks it must say why."""
    folders = sorted(glob.glob(str(shared_data / "polyu-ms" / band / "*")))
    real = {f: _load(sorted(glob.glob(f + "/*.bmp"))) for f in folders}  # both sessions
    gen = SyntheticPalms(seed=7)
    syn = {str(i): [gen.render(i, modality, c) for c in range(12)] for i in range(len(real))}
    g_real, i_real = genuine_impostor(real, max_impostor=300)
    g_syn, i_syn = genuine_impostor(syn, max_impostor=300)
    assert abs(g_syn.mean() - g_real.mean()) < 0.05, (g_syn.mean(), g_real.mean())
    assert abs(i_syn.mean() - i_real.mean()) < 0.03, (i_syn.mean(), i_real.mean())


def test_distance_matrix_equals_the_pairwise_distance():
    from biohash.imaging.compcode import distance_matrix

    rng = np.random.default_rng(3)
    codes = rng.integers(0, 6, (7, 8, 8))
    codes[1] = np.roll(codes[0], 1, axis=1)  # a shifted copy: the search over shifts finds it
    for shift in (0, 1, 3):
        matrix = distance_matrix(codes[:4], codes, shift)
        by_pair = np.array([[distance(a, b, shift) for b in codes] for a in codes[:4]])
        assert matrix.shape == (4, 7) and np.allclose(matrix, by_pair, atol=1e-6)
    assert distance_matrix(codes[:2], codes[:2], 1)[0, 1] < distance_matrix(codes[:2], codes[:2], 0)[0, 1]
