"""Several databases in one run: each opens with its own adapter, root, options and protocol; their splits are
joined with identities kept apart (`NAME:identity`, tag `db:NAME`), so training draws from all of them while
evaluation stays per database (`part_of`, `parts`).

A print-only database (Tongji) joined with paired ones (PolyU, CASIA) trains the print branch alone; the
paired ones train both branches and the cross-modal term (data.loaders.PairedTrainSet).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from biohash.match.types import Sample
from biohash.train.data.datasets import Dataset, DatasetError
from biohash.train.data.protocols import Split

TAG = "db:"
PART_KEYS = ("dataset", "root", "options", "protocol", "val_fraction", "test_fraction")


def parse_spec(spec: str) -> dict[str, Any]:
    """`NAME:ROOT[:KEY=VALUE...]` (the CLI's --also) -> a part's settings; KEY is an adapter option, or
    protocol, val_fraction or test_fraction of that database's own split."""
    fields = spec.split(":")
    if len(fields) < 2 or not fields[0] or not fields[1]:
        raise DatasetError(f"--also takes NAME:ROOT[:KEY=VALUE...] (e.g. tongji:../shared/data/tongji-full), "
                           f"got {spec!r}")
    part: dict[str, Any] = {"dataset": fields[0], "root": fields[1], "options": {}}
    for item in fields[2:]:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise DatasetError(f"--also {spec!r}: {item!r} is not KEY=VALUE")
        if key in ("val_fraction", "test_fraction"):
            try:
                part[key] = float(value)
            except ValueError:
                raise DatasetError(f"--also {spec!r}: {key} must be a number, got {value!r}") from None
        elif key == "protocol":
            part[key] = value
        else:
            part["options"][key] = value
    return part


def check_part(part: dict[str, Any]) -> None:
    """A joined database's settings name its dataset and nothing beyond PART_KEYS."""
    unknown = sorted(set(part) - set(PART_KEYS))
    if unknown or "dataset" not in part:
        raise DatasetError(f"a joined database takes {', '.join(PART_KEYS)} (dataset required); got "
                           f"{', '.join(sorted(part)) or 'nothing'}")


def part_names(datasets: list[str]) -> list[str]:
    """A name per joined database: its adapter's, numbered where one adapter appears twice (casia-ms#2)."""
    seen: dict[str, int] = {}
    out = []
    for name in datasets:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return out


def join(parts: list[tuple[str, Dataset, Split]]) -> tuple[Dataset, Split]:
    """One Dataset and Split over named (dataset, split) parts; each sample's identity becomes NAME:identity and
    it carries the tag db:NAME; the joined loader hands every sample back to its own database."""
    origin: dict[Sample, tuple[Dataset, Sample]] = {}  # joined sample -> its database and its own sample
    fields: dict[str, list[Sample]] = {k: [] for k in ("train", "val_gallery", "val_probe", "test_gallery",
                                                       "test_probe")}
    samples: list[Sample] = []
    for name, dataset, split in parts:
        for s in dataset.samples:
            origin[_retag(name, s)] = (dataset, s)
            samples.append(_retag(name, s))
        for key in fields:
            fields[key] += [_retag(name, s) for s in getattr(split, key)]

    def load(sample: Sample) -> np.ndarray:
        dataset, own = origin[sample]
        return dataset.load(own)

    joined = Dataset("+".join(name for name, _, _ in parts), samples, load,
                     skipped=[x for _, d, _ in parts for x in d.skipped])
    protocols = sorted({split.protocol for _, _, split in parts})
    return joined, Split("+".join(protocols), **fields)


def _retag(name: str, sample: Sample) -> Sample:
    return replace(sample, identity=f"{name}:{sample.identity}", tags=(*sample.tags, TAG + name))


def part_of(sample: Sample) -> str | None:
    """The joined database a sample came from, or None outside a joined run."""
    return next((t[len(TAG):] for t in sample.tags if t.startswith(TAG)), None)


def parts(samples: list[Sample]) -> dict[str | None, list[Sample]]:
    """Samples grouped by joined database, in first-seen order."""
    out: dict[str | None, list[Sample]] = {}
    for s in samples:
        out.setdefault(part_of(s), []).append(s)
    return out
