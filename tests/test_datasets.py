import pytest

from biohash.errors import UnknownNameError
from biohash.train.data.datasets import DATASETS, DatasetError, open_dataset
from biohash.train.data.protocols import closed_set, open_set


def test_synthetic_dataset_samples_and_load():
    ds = open_dataset("synthetic", identities=4, captures=3, size=64)
    assert len(ds.samples) == 4 * 3 * 2
    assert ds.identities() == ["0", "1", "2", "3"]
    assert ds.modalities() == ["print", "vein"]
    assert ds.load(ds.samples[0]).shape == (64, 64)


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(UnknownNameError, match="expected one of: .*synthetic"):
        open_dataset("imagenet")


@pytest.mark.parametrize("name", ["casiam", "polyu", "tjppv", "tongji", "xjtu-up", "11k-hands", "hd", "veindeep",
                                  "iitd-iris", "folder"])
def test_real_adapters_name_a_missing_root(name, tmp_path):
    assert name in DATASETS
    with pytest.raises(DatasetError, match="root folder not found: .*nowhere"):
        open_dataset(name, root=str(tmp_path / "nowhere"))
    with pytest.raises(DatasetError, match="needs a root folder"):
        open_dataset(name)


def test_empty_selection_is_an_error():
    with pytest.raises(DatasetError, match="identities >= 1"):
        open_dataset("synthetic", identities=0)


def test_open_set_is_identity_disjoint_and_complete():
    ds = open_dataset("synthetic", identities=20, captures=4)
    split = open_set(ds, val_fraction=0.1, test_fraction=0.3, seed=1)
    train = {s.identity for s in split.train}
    val = {s.identity for s in split.val_probe}
    test = {s.identity for s in split.test_probe}
    assert not (train & val or train & test or val & test)
    assert len(test) == 6 and len(val) == 2 and len(train) == 12
    assert {s.identity for s in split.test_gallery} == test
    assert not set(split.test_gallery) & set(split.test_probe)
    assert len(split.train) + len(split.val_gallery) + len(split.val_probe) + len(split.test_gallery) + len(
        split.test_probe) == len(ds.samples)


def test_closed_set_splits_samples_not_identities():
    ds = open_dataset("synthetic", identities=5, captures=6)
    split = closed_set(ds)
    assert {s.identity for s in split.train} == {s.identity for s in split.test_probe}
    assert not set(split.train) & set(split.test_probe)
    assert set(split.test_gallery) == set(split.train) | set(split.val_probe)
    assert not set(split.val_probe) & set(split.val_gallery)
    assert not set(split.val_probe) & set(split.train)  # validation never probes with a trained-on image
    assert len(split.val_probe) == 5 * 2  # one per identity and modality
    assert max(s.capture for s in split.test_gallery) < min(s.capture for s in split.test_probe)


def test_open_set_needs_enough_identities():
    with pytest.raises(DatasetError, match="at least 5 identities"):
        open_set(open_dataset("synthetic", identities=4, captures=2))


def test_train_identities_keeps_validation_and_test_palms_and_trains_on_fewer():
    """DataConfig.train_identities: the learning-curve ablation (38 / 130 / 870 palms) trains on a seeded subset
    of the training identities while validation and test palms stay those of the full split."""
    from biohash.errors import ConfigError
    from biohash.train.data.config import DataConfig, open_split

    full = open_split(DataConfig(identities=20, captures=2, seed=3))[1]
    few = open_split(DataConfig(identities=20, captures=2, seed=3, train_identities=5))[1]
    trained = {s.identity for s in few.train}
    assert len(trained) == 5 and trained < {s.identity for s in full.train}
    assert len(few.train) == 5 * 2 * 2  # every capture and modality of the kept palms
    assert (few.val_probe, few.test_gallery, few.test_probe) == (full.val_probe, full.test_gallery, full.test_probe)
    again = open_split(DataConfig(identities=20, captures=2, seed=3, train_identities=5))[1]
    assert {s.identity for s in again.train} == trained  # seeded
    with pytest.raises(DatasetError, match="train_identities 13 .* 12 training identities"):
        open_split(DataConfig(identities=20, captures=2, seed=3, train_identities=13))
    with pytest.raises(ConfigError, match="train_identities"):
        DataConfig(train_identities=-1)
    with pytest.raises(ConfigError, match="open"):
        DataConfig(protocol="closed", train_identities=3)
