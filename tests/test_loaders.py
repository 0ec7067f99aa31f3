import numpy as np
import pytest
import torch

from biohash.imaging.transforms import random_affine, standardize
from biohash.train.data.datasets import FRESH_CAPTURES, Dataset, DatasetError, open_dataset
from biohash.train.data.loaders import PairedTrainSet, image_batches


def test_paired_items_carry_both_modalities_and_labels():
    ds = open_dataset("synthetic", identities=3, captures=2, size=64)
    train = PairedTrainSet(ds, ds.samples, ("print", "vein"), 64, augment=True)
    assert len(train) == 6 and set(train.classes) == {"0", "1", "2"}
    item = train[0]
    assert item["print"].shape == (1, 64, 64) and item["vein"].shape == (1, 64, 64)
    assert int(item["label"]) == train.classes[train.anchors[0].identity]
    assert abs(float(item["print"].mean())) < 1e-4  # standardised per image


def test_fresh_captures_change_every_epoch_and_never_reuse_listed_samples():
    ds = open_dataset("synthetic", identities=3, captures=2, size=64)
    train = PairedTrainSet(ds, ds.samples, ("print", "vein"), 64, augment=False, fresh=True)
    first = train[0]["print"]
    train.epoch = 1
    assert not torch.equal(first, train[0]["print"])
    listed = torch.from_numpy(standardize(ds.load(train.anchors[0]), 64))
    assert not torch.equal(first, listed)
    assert ds.fresh(ds.samples[0], 5).capture == FRESH_CAPTURES + 5


def test_fresh_needs_a_generated_dataset():
    files = Dataset("files", open_dataset("synthetic", identities=2, captures=1).samples, lambda s: np.zeros((8, 8)))
    with pytest.raises(DatasetError, match="cannot draw fresh captures"):
        PairedTrainSet(files, files.samples, ("print", "vein"), 32, fresh=True)


def test_flipped_palms_are_new_identities_with_both_modalities_flipped_alike():
    """identity_flips=8: the eight turns and mirror images of a square ROI, each its own class (a flipped palm is
    another plausible palm). Item j*n + i is item i under transform j, in every modality, labelled c + j*k."""
    ds = open_dataset("synthetic", identities=3, captures=1, size=32)  # one capture: the vein partner is fixed
    plain = PairedTrainSet(ds, ds.samples, ("print", "vein"), 32, augment=False)
    flipped = PairedTrainSet(ds, ds.samples, ("print", "vein"), 32, augment=False, identity_flips=8)
    n, k = len(plain), len(plain.classes)
    assert len(flipped) == 8 * n and len(flipped.classes) == 8 * k
    assert flipped.labels() == [c + j * k for j in range(8) for c in plain.labels()]
    base = {m: plain[1][m][0].numpy() for m in ("print", "vein")}
    seen = []
    for j in range(8):
        item = flipped[j * n + 1]
        assert int(item["label"]) == int(plain[1]["label"]) + j * k
        for m, x in base.items():
            by_hand = [x, x[:, ::-1], x[::-1], x[::-1, ::-1], x.T, np.rot90(x), np.rot90(x, 3), x[::-1, ::-1].T][j]
            assert np.allclose(item[m][0].numpy(), by_hand, atol=1e-5), (j, m)
        seen.append(item["print"][0].numpy())
    assert all(not np.allclose(a, b) for i, a in enumerate(seen) for b in seen[i + 1:])  # eight different views
    with pytest.raises(ValueError, match="identity_flips"):
        PairedTrainSet(ds, ds.samples, ("print", "vein"), 32, identity_flips=3)


def test_identities_missing_a_modality_train_the_branches_they_have():
    """(main dropped them: a print-only database could not join a paired one.)"""
    ds = open_dataset("synthetic", identities=3, captures=2, size=32)
    samples = [s for s in ds.samples if not (s.identity == "1" and s.modality == "vein")]
    train = PairedTrainSet(ds, samples, ("print", "vein"), 32)
    assert set(train.classes) == {"0", "1", "2"} and len(train) == 6
    items = [train[i] for i in range(len(train))]
    lacking = [it for it, a in zip(items, train.anchors) if a.identity == "1"]
    assert len(lacking) == 2 and all(it["present"].tolist() == [True, False] for it in lacking)
    assert all(it["vein"].abs().sum() == 0 and it["print"].abs().sum() > 0 for it in lacking)
    assert all(it["present"].all() for it, a in zip(items, train.anchors) if a.identity != "1")
    vein_only = [s for s in ds.samples if s.identity == "2" and s.modality == "vein"]
    alone = PairedTrainSet(ds, vein_only + [s for s in ds.samples if s.identity == "0"], ("print", "vein"), 32)
    assert [a.modality for a in alone.anchors if a.identity == "2"] == ["vein", "vein"]  # anchored on what it has


def test_image_batches_and_transforms():
    ds = open_dataset("synthetic", identities=2, captures=3, size=48)
    batches = list(image_batches(ds, ds.samples, 32, batch_size=5))
    assert [b.shape[0] for b in batches] == [5, 5, 2] and batches[0].shape[1:] == (1, 32, 32)
    img = ds.load(ds.samples[0])
    assert random_affine(img, np.random.default_rng(0)).shape == img.shape
    with pytest.raises(ValueError, match="grey image"):
        standardize(np.zeros((4, 4, 4), np.uint8), 32)


def test_standardize_removes_an_illumination_gradient():
    # the same line pattern lit 6x more strongly on the right: after normalisation both sides look alike
    x = np.arange(128, dtype=np.float32)
    pattern = 1 + 0.3 * np.sign(np.sin(x / 3))[None, :].repeat(128, 0)
    light = np.linspace(20, 120, 128, dtype=np.float32)[None, :]
    img = np.clip(pattern * light, 0, 255).astype(np.uint8)
    out = standardize(img, 128)[0]
    assert abs(out.mean()) < 1e-4 and abs(out.std() - 1) < 1e-3
    def edge_ratio(a):  # strength of the lines (largest horizontal step), right side over left side
        steps = np.abs(np.diff(a.astype(np.float32), axis=1))
        return steps[:, 80:112].max() / steps[:, 16:48].max()

    assert edge_ratio(img) > 1.5  # raw: line contrast grows with the light
    assert 0.8 < edge_ratio(out) < 1.25


class _EpochEcho(torch.utils.data.Dataset):
    """Items report the epoch the dataset was told (as fresh captures and augmentation read it)."""

    epoch = 0

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> dict:
        return {"epoch": torch.tensor(self.epoch), "label": torch.tensor(index % 4)}

    def labels(self) -> list[int]:
        return [i % 4 for i in range(8)]


def test_loader_workers_see_each_new_epoch_of_the_dataset():
    """Workers kept alive across epochs would keep the first epoch's copy: every epoch the same captures."""
    from biohash.train.devices import Processes
    from biohash.train.fit import _set_epoch
    from biohash.train.fit_config import FitConfig
    from biohash.train.train_job import _loader

    loader = _loader(_EpochEcho(), FitConfig(batch_size=4, workers=1, device="cpu"), 0, Processes())
    for epoch in range(3):
        _set_epoch(loader, epoch)
        assert {int(e) for batch in loader for e in batch["epoch"]} == {epoch}


def test_rank_slices_cover_each_global_batch_once_and_keep_identity_groups_whole():
    from biohash.train.data.loaders import IdentityBatchSampler, RankSlice

    labels = [i // 3 for i in range(60)]  # 20 identities, 3 items each
    batches = IdentityBatchSampler(labels, batch_size=16, per_identity=4, seed=3)
    shares = [list(RankSlice(batches, rank, 2)) for rank in range(2)]
    for whole, a, b in zip(batches, *shares, strict=True):
        assert a + b == whole and len(a) == len(b) == 8
        for share in (a, b):  # two identities of 4 items each in every share
            assert len({labels[i] for i in share[:4]}) == 1 and len({labels[i] for i in share[4:]}) == 1


def _mean_change(epochs: int = 6, **data: float) -> float:
    """Mean absolute change of a listed capture's training image against the image as listed, over epochs, under
    the DataConfig settings `data` (fresh captures off, so the listed captures train)."""
    from biohash.train.data.config import DataConfig

    ds = open_dataset("synthetic", identities=3, captures=2, size=64)
    listed = torch.from_numpy(standardize(ds.load(ds.samples[0]), 64))
    config = DataConfig(identities=3, captures=2, image_size=64, fresh_captures=False, **data)
    train = PairedTrainSet.for_run(ds, ds.samples, ("print", "vein"), config, seed=1)
    changes = []
    for epoch in range(epochs):
        train.epoch = epoch
        changes.append(float((train[0][ds.samples[0].modality] - listed).abs().mean()))
    return float(np.mean(changes))


def test_jitter_scales_the_training_affine_and_zero_turns_it_off():
    """DataConfig.jitter multiplies the random affine of listed captures (1 = +-4 deg, 3 % shift, 4 % scale): a
    contactless database that overfits by epoch 6 can ask for more, and 0 trains on the images as they are."""
    from biohash.errors import ConfigError
    from biohash.train.data.config import DataConfig

    assert _mean_change(jitter=0) == 0.0
    assert 0 < _mean_change(jitter=1) < _mean_change(jitter=3)
    with pytest.raises(ConfigError, match="jitter"):
        DataConfig(jitter=-1)


def test_data_config_photometric_reaches_the_training_images_and_zero_leaves_them_alone():
    """DataConfig.photometric scales the random capture conditions of listed captures (with no affine jitter,
    they are the only change); 0, the default, leaves the images as they are."""
    from biohash.errors import ConfigError
    from biohash.train.data.config import DataConfig

    assert _mean_change(4, jitter=0, photometric=0) == 0.0
    assert 0 < _mean_change(4, jitter=0, photometric=1) < _mean_change(4, jitter=0, photometric=3)
    with pytest.raises(ConfigError, match="photometric"):
        DataConfig(photometric=-1)
