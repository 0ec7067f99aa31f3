"""Evaluation protocols: how samples split into train / validation / test, and test into gallery / probes.

- open set (default, the honest one): identity-disjoint train, validation and test identities; within the
  validation and test identities, the first half of each identity's captures enroll (gallery), the rest probe.
- 11k / hd (the GPA-Net paper's whole-hand protocols): identities in id order, first half train, second half
  test with one random enrolled image each; hd also enrolls the extra gallery-only identities (distractors).
- closed set (the co-hashing paper's): per identity, the first half of the captures enroll and the rest test;
  test probes are matched against a gallery of the enrolled captures. Training uses the enrolled captures but
  the last of each identity, which is the validation probe against the trained ones.
Samples tagged train-only (data.bands: other bands of the same captures) are left out of every protocol and
then train exactly where their capture of the same modality (identity, modality, session, capture) trains.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from biohash.match.types import Sample
from biohash.train.data.bands import TRAIN_ONLY
from biohash.train.data.datasets import Dataset, DatasetError

PROTOCOLS = ("open", "closed", "11k", "hd", "all")  # all: every identity tested (evaluation of another folder)


@dataclass(frozen=True)
class Split:
    """One protocol applied to one dataset."""

    protocol: str
    train: list[Sample]
    val_gallery: list[Sample]
    val_probe: list[Sample]
    test_gallery: list[Sample]
    test_probe: list[Sample]

    def summary(self) -> dict[str, int]:
        def ids(xs):
            return len({s.identity for s in xs})
        return {"protocol": self.protocol, "train_samples": len(self.train), "train_identities": ids(self.train),
                "val_identities": ids(self.val_probe), "test_identities": ids(self.test_probe),
                "test_gallery": len(self.test_gallery), "test_probe": len(self.test_probe)}


def enroll_and_probe(samples: list[Sample], first_share: float = 0.5) -> tuple[list[Sample], list[Sample]]:
    """Per identity and modality, sorted by capture: the first `first_share` (rounded up; half by default)
    and the rest."""
    first, rest = [], []
    groups: dict[tuple[str, str], list[Sample]] = {}
    for s in samples:
        groups.setdefault((s.identity, s.modality), []).append(s)
    for group in groups.values():
        group = sorted(group, key=lambda s: (s.session, s.capture))
        k = min(len(group), int(np.ceil(len(group) * first_share - 1e-9)))
        first += group[:k]
        rest += group[k:]
    return first, rest


def open_set(dataset: Dataset, val_fraction: float = 0.1, test_fraction: float = 0.3, seed: int = 0) -> Split:
    """Identity-disjoint split; identities are shuffled with `seed` before assignment."""
    ids = dataset.identities()
    if len(ids) < 5:
        raise DatasetError(f"open-set protocol needs at least 5 identities (2 validation, 2 test, 1 train), "
                           f"dataset has {len(ids)}")
    order = np.random.default_rng(seed).permutation(len(ids))
    # at least 2 test identities, or there are no impostor pairs; none when asked (test on another folder)
    n_test = 0 if test_fraction == 0 else max(2, int(round(len(ids) * test_fraction)))
    n_val = max(2, int(round(len(ids) * val_fraction)))
    test_ids = {ids[i] for i in order[:n_test]}
    val_ids = {ids[i] for i in order[n_test : n_test + n_val]}
    train = [s for s in dataset.samples if s.identity not in test_ids | val_ids]
    if not train:
        raise DatasetError("open-set protocol left no training identities; lower val/test fractions")
    val_g, val_p = enroll_and_probe([s for s in dataset.samples if s.identity in val_ids])
    test_g, test_p = enroll_and_probe([s for s in dataset.samples if s.identity in test_ids])
    return Split("open", train, val_g, val_p, test_g, test_p)


def fewer_training_identities(split: Split, n: int, seed: int = 0) -> Split:
    """The split training on `n` of its training identities (drawn with `seed`), validation and test unchanged."""
    ids = sorted({s.identity for s in split.train})
    if n > len(ids):
        raise DatasetError(f"train_identities {n} is more than the split's {len(ids)} training identities")
    kept = {ids[i] for i in np.random.default_rng(seed).permutation(len(ids))[:n]}
    return replace(split, train=[s for s in split.train if s.identity in kept])


def closed_set(dataset: Dataset, enroll_fraction: float = 0.5) -> Split:
    """Per identity: the first half of the captures (or `enroll_fraction` of them: the co-hashing paper's 2/3,
    captures 1-8 of 12 on PolyU and 1-4 of 6 on CASIA) enroll (test gallery), the rest are test probes.

    Training uses the enrolled captures except the last of each identity (when it has two or more): that one
    is the validation probe against the others, so checkpoint selection never sees a trained-on image as a
    probe, nor any test probe.
    """
    if not 0 < enroll_fraction < 1:
        raise DatasetError(f"enroll_fraction must be in (0, 1), got {enroll_fraction:g}")
    enrolled, test = enroll_and_probe(dataset.samples, enroll_fraction)
    if not test:
        raise DatasetError("closed-set protocol needs at least 2 captures per identity and modality")
    val_probe, train = [], []
    groups: dict[tuple[str, str], list[Sample]] = {}
    for s in enrolled:
        groups.setdefault((s.identity, s.modality), []).append(s)
    for group in groups.values():
        if len(group) >= 2:
            train += group[:-1]
            val_probe.append(group[-1])
        else:
            train += group
    return Split("closed", train, train, val_probe, enrolled, test)


def hands_11k(dataset: Dataset, seed: int = 0, name: str = "11k") -> Split:
    """The GPA-Net paper's 11K Hands protocol, for the aspects the dataset holds (open it with one aspect and
    accessories="exclude" to follow the paper): identities in id order, the first half train and the second
    half test. Per test identity one random image enrolls (gallery), the rest are queries; per training
    identity one random image is held out as the validation probe against the other training images.
    Samples tagged "extra-gallery" (HD's identities 503-715) never train or query: one random image of each
    joins the test gallery as a distractor. Repeat with seeds 0..9 and report the mean and spread (the
    paper's ten draws).
    """
    groups = dataset.by_identity()
    is_extra = {i: all("extra-gallery" in s.tags for s in g) for i, g in groups.items()}
    ids = [i for i in dataset.identities() if not is_extra[i]]
    extra = [i for i in dataset.identities() if is_extra[i]]
    if len(ids) < 4:
        raise DatasetError(f"the {name} protocol needs at least 4 identities, dataset has {len(ids)}")
    train_ids = set(ids[: len(ids) // 2])
    rng = np.random.default_rng(seed)
    train, val_probe, test_gallery, test_probe = [], [], [], []
    for identity in ids + extra:
        group = groups[identity]
        pick = int(rng.integers(len(group)))
        if identity in train_ids:
            if len(group) >= 2:
                val_probe.append(group[pick])
            train += [s for k, s in enumerate(group) if k != pick or len(group) < 2]
        elif is_extra[identity]:
            test_gallery.append(group[pick])
        elif len(group) >= 2:  # an identity with one image cannot be both enrolled and queried
            test_gallery.append(group[pick])
            test_probe += [s for k, s in enumerate(group) if k != pick]
    if not test_probe:
        raise DatasetError(f"the {name} protocol found no test identity with two or more images")
    return Split(name, train, train, val_probe, test_gallery, test_probe)


def hands_hd(dataset: Dataset, seed: int = 0) -> Split:
    """The HD protocol: identities 1-251 train, 252-502 test (one random enrolled image each, the rest
    queries), the 213 gallery-only identities (503-715, tagged "extra-gallery" by the hd adapter) added to
    the gallery. Requires the extra identities, so a plain dataset is not mistaken for HD."""
    if not any("extra-gallery" in s.tags for s in dataset.samples):
        raise DatasetError("the hd protocol needs the HD gallery-only identities (tag extra-gallery); open the "
                           "dataset with the hd adapter, or use --protocol 11k")
    return hands_11k(dataset, seed=seed, name="hd")


def all_identities(dataset: Dataset) -> Split:
    """Every identity is a test identity (first half of its captures enroll, the rest probe); nothing to train
    or validate on: for evaluating a trained model on a folder of other people."""
    if len(dataset.identities()) < 2:
        raise DatasetError(f"the all protocol needs at least 2 identities, dataset has {len(dataset.identities())}")
    gallery, probe = enroll_and_probe(dataset.samples)
    return Split("all", [], [], [], gallery, probe)


def make_split(dataset: Dataset, protocol: str = "open", seed: int = 0, **kwargs: float) -> Split:
    extra = [s for s in dataset.samples if TRAIN_ONLY in s.tags]
    if not extra:
        return _protocol_split(dataset, protocol, seed, **kwargs)
    split = _protocol_split(replace(dataset, samples=[s for s in dataset.samples if TRAIN_ONLY not in s.tags]),
                            protocol, seed, **kwargs)
    trained = {(s.identity, s.modality, s.session, s.capture) for s in split.train}
    return replace(split, train=split.train + [s for s in extra
                                               if (s.identity, s.modality, s.session, s.capture) in trained])


def _protocol_split(dataset: Dataset, protocol: str, seed: int, **kwargs: float) -> Split:
    if protocol == "all":
        return all_identities(dataset)
    if protocol == "open":
        return open_set(dataset, seed=seed, **kwargs)
    if protocol == "closed":
        return closed_set(dataset, **kwargs)
    if protocol == "11k":
        return hands_11k(dataset, seed=seed)
    if protocol == "hd":
        return hands_hd(dataset, seed=seed)
    raise ValueError(f"unknown protocol {protocol!r}; expected one of: {', '.join(PROTOCOLS)}")
