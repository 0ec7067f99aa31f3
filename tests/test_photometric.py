"""Photometric augmentation: the capture conditions a second session brings (illumination blotches, gamma,
contrast, focus, sensor noise), so that codes learn to ignore them as CompCode's zero-DC filters do."""
import numpy as np

from biohash.imaging import compcode
from biohash.imaging.transforms import random_photometric
from biohash.train.data.datasets import open_dataset


def _palms(n: int = 4) -> list[np.ndarray]:
    ds = open_dataset("synthetic", identities=n, captures=1, size=128)
    return [ds.load(s) for s in ds.samples if s.modality == "print"]


def test_zero_strength_returns_the_image_unchanged_and_a_seed_repeats_the_draw():
    img = _palms(1)[0]
    assert np.array_equal(random_photometric(img, np.random.default_rng(0), strength=0), img)
    a = random_photometric(img, np.random.default_rng(3))
    b = random_photometric(img, np.random.default_rng(3))
    assert a.dtype == np.uint8 and a.shape == img.shape and np.array_equal(a, b)
    assert not np.array_equal(a, random_photometric(img, np.random.default_rng(4)))


def test_stronger_draws_change_the_image_more():
    img = _palms(1)[0].astype(np.float32)

    def change(strength: float) -> float:
        return float(np.mean([np.abs(random_photometric(img.astype(np.uint8), np.random.default_rng(k),
                                                         strength=strength) - img).mean() for k in range(8)]))

    assert 0 < change(0.5) < change(1) < change(2)


def test_an_augmented_palm_stays_nearer_itself_than_other_palms_are():
    """The augmentation changes conditions, not the palm: CompCode (the classic matcher, nothing learned)
    still finds every augmented copy nearer its palm than any other palm is."""
    palms = _palms(4)
    codes = [compcode.compcode(p) for p in palms]
    impostor = min(compcode.distance(codes[i], codes[j]) for i in range(4) for j in range(i + 1, 4))
    genuine = max(compcode.distance(codes[i], compcode.compcode(random_photometric(p, np.random.default_rng(k))))
                  for i, p in enumerate(palms) for k in range(3))
    assert genuine < impostor
