import numpy as np
import pytest

from biohash.train.data.synthetic import Nuisance, SyntheticPalms


def _ncc(a, b):
    a = a.astype(float) - a.mean()
    b = b.astype(float) - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def test_deterministic_by_seed_and_shape():
    a = SyntheticPalms(seed=3).render(5, "print", 2)
    b = SyntheticPalms(seed=3).render(5, "print", 2)
    c = SyntheticPalms(seed=4).render(5, "print", 2)
    assert a.shape == (128, 128) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert SyntheticPalms(size=64).render(0, "vein", 0).shape == (64, 64)


def test_captures_differ_but_stay_closer_than_other_identities():
    gen = SyntheticPalms(seed=0, nuisance=Nuisance().scaled(0.3))
    for modality in ("print", "vein"):
        genuine = [_ncc(gen.render(i, modality, 0), gen.render(i, modality, 1)) for i in range(8)]
        impostor = [_ncc(gen.render(i, modality, 0), gen.render(i + 1, modality, 1)) for i in range(8)]
        assert min(genuine) < 0.999  # captures really vary
        assert np.mean(genuine) > np.mean(impostor) + 0.2, modality


def test_print_and_vein_share_capture_geometry():
    """With photometric nuisance off, the faint creases in a vein capture line up with the print capture."""
    gen = SyntheticPalms(seed=1, nuisance=Nuisance(illumination=0, contrast=0, brightness=0, blur_sigma=0,
                                                   noise_sigma=(0, 0)))
    same = _ncc(gen.render(2, "print", 4), gen.render(2, "vein", 4))
    other = _ncc(gen.render(2, "print", 4), gen.render(3, "vein", 4))
    assert same > other + 0.1


def test_vein_looks_near_infrared():
    img = SyntheticPalms(seed=0).render(0, "vein", 0)
    prn = SyntheticPalms(seed=0).render(0, "print", 0)
    assert img.mean() > prn.mean()  # bright background
    assert img.std() < prn.std()  # low-contrast diffuse vessels


def test_bad_arguments():
    gen = SyntheticPalms()
    with pytest.raises(ValueError, match="modality"):
        gen.render(0, "iris", 0)
    with pytest.raises(ValueError, match="non-negative"):
        gen.render(-1, "print", 0)
    with pytest.raises(ValueError, match="at least 32"):
        SyntheticPalms(size=8)
