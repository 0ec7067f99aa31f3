"""Band presets and composite bands of the multispectral palm databases.

The co-hashing paper trains on named band choices: PolyU-MS print = red, green and blue stacked, vein = NIR;
CASIA-MS print = 700 and 460 nm stacked, vein = 850 nm. Our backbones read one grey channel, so a composite
band ("red+green+blue") is the per-pixel mean of the simultaneous captures in those bands: the same light
reaching the palm, averaged instead of stacked. A capture missing any of the bands is left out.

Training-only bands (`train_bands`): the other bands of the same captures, read as extra training images of
the same palm and modality (tagged TRAIN_ONLY); protocols keep them out of every validation and test list.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from biohash.match.types import Sample

TRAIN_ONLY = "train-only"  # Sample tag: trains where its capture trains, never validated or tested

# database -> preset name -> bands to read; a "+" joins the bands averaged into one composite image
PRESETS: dict[str, dict[str, tuple[str, ...]]] = {
    "polyu-ms": {"paper": ("red+green+blue", "nir")},
    "casia-ms": {"paper": ("700+460", "850")},
}


def expand(database: str, bands: object) -> tuple[object, tuple[str, ...]]:
    """(plain band selection for the adapter, composite bands) of a `bands` option: a preset name is replaced
    by its bands; "a+b" entries become composites whose parts are read as plain bands."""
    if isinstance(bands, str) and bands.strip().lower() in PRESETS.get(database, {}):
        bands = PRESETS[database][bands.strip().lower()]
    if bands is None:
        return None, ()
    items = [bands] if isinstance(bands, str | int) else list(bands)  # type: ignore[call-overload]
    names = [v.strip().lower() for c in items for v in str(c).split(",") if v.strip()]
    composites = tuple(n for n in names if "+" in n)
    plain = [n for n in names if "+" not in n] + [p for c in composites for p in c.split("+")]
    return list(dict.fromkeys(plain)), composites


def combine(samples: list[Sample], composites: tuple[str, ...], keep: set[str]) -> tuple[list[Sample], dict]:
    """Samples of the plain bands in `keep` plus one sample per capture of each composite (path of its first
    band); returns them and {composite sample path: every part's path} for `composite_loader`."""
    by_key = {(s.identity, s.session, s.capture, s.band): s for s in samples}
    out = [s for s in samples if s.band in keep]
    parts_of: dict[str, tuple[str, ...]] = {}
    for band in composites:
        parts = band.split("+")
        for s in samples:
            if s.band != parts[0]:
                continue
            found = [by_key.get((s.identity, s.session, s.capture, p)) for p in parts]
            if all(found):
                out.append(replace(s, band=band))
                parts_of[str(s.path)] = tuple(str(f.path) for f in found if f)
    return out, parts_of


def composite_loader(read: Callable[[str], np.ndarray], parts_of: dict[str, tuple[str, ...]]
                     ) -> Callable[[Sample], np.ndarray]:
    """Sample -> grey image: a composite band's sample is the mean of its parts, anything else its one file."""
    def load(sample: Sample) -> np.ndarray:
        paths = parts_of.get(str(sample.path)) if sample.band and "+" in sample.band else None
        if not paths:
            return read(str(sample.path))
        stack = np.stack([read(p).astype(np.float32) for p in paths])
        return np.clip(stack.mean(axis=0) + 0.5, 0, 255).astype(np.uint8)

    return load


def train_only(samples: list[Sample], train_bands: tuple[str, ...]) -> list[Sample]:
    """`samples` with those of `train_bands` tagged TRAIN_ONLY."""
    return [replace(s, tags=(*s.tags, TRAIN_ONLY)) if s.band in train_bands else s for s in samples]
