"""Adapters for public biometric databases and for a user's own folder or CSV manifest.

Each adapter walks a root folder, parses the database's file naming into Samples (identity, modality,
capture, session, hand, band, tags) and returns a Dataset whose loader reads uint8 grey images. A missing
root, an unreadable image or an empty selection is a DatasetError naming the path or the selection.
Registered in data.datasets (import order: datasets imports this module at its end).
"""
from __future__ import annotations

import csv
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import cast

import numpy as np

from biohash.imaging.images import read_image, unreadable  # the one decoder (pixel cap)
from biohash.match.types import Sample
from biohash.train.data.bands import combine, composite_loader, expand, train_only
from biohash.train.data.datasets import DATASETS, Dataset, DatasetError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
VEIN_BANDS = ("850", "940", "nir")


def _root(root: str | Path | None, name: str) -> Path:
    if root is None:
        raise DatasetError(f"dataset {name!r} needs a root folder (--root PATH)")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DatasetError(f"dataset {name!r}: root folder not found: {path}")
    return path


def _images(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


ROI_FAILURE_POLICIES = ("skip", "fail")


def _dataset(name: str, samples: list[Sample], root: Path, selection: str = "", *,
             colour: bool = False, transform: Callable[[np.ndarray, Sample], np.ndarray] | None = None,
             cache: int = 0, on_roi_failure: str = "skip", parts_of: dict | None = None) -> Dataset:
    """A Dataset of files. With an ROI `transform`, every file is cut once here (and cached): a photo whose ROI
    fails is skipped and listed in Dataset.skipped (on_roi_failure="skip"), or stops the opening with every
    failure counted ("fail") — never in the middle of training."""
    if not samples:
        where = f" ({selection})" if selection else ""
        raise DatasetError(f"dataset {name!r}: no images matched under {root}{where}")
    if on_roi_failure not in ROI_FAILURE_POLICIES:
        raise DatasetError(f"on_roi_failure must be skip or fail, got {on_roi_failure!r}")

    read = composite_loader(lambda path: read_image(path, colour), parts_of or {})  # a composite band: mean of parts
    paths = {id(s): _path_of(s) for s in samples}  # every sample of a file database names its file

    def load(sample: Sample) -> np.ndarray:
        img = read(sample)
        return transform(img, sample) if transform else img

    loader = lru_cache(maxsize=cache)(load) if cache else load
    if transform is None:
        bad = unreadable(list(paths.values()))  # found now, not an hour into training
        if bad:
            raise DatasetError(f"dataset {name!r}: {len(bad)} of {len(samples)} files are not readable images "
                               f"({_first_three(bad)}); remove or replace them")
        return Dataset(name, samples, loader)
    from biohash.train.data.roi import RoiError

    kept: list[Sample] = []
    skipped: list[tuple[str, str]] = []
    for sample in samples:
        try:
            loader(sample)
            kept.append(sample)
        except (RoiError, DatasetError) as err:
            path = paths[id(sample)]
            skipped.append((path, str(err).replace(f"{path}: ", "")))
    if skipped and (on_roi_failure == "fail" or not kept):
        raise DatasetError(f"dataset {name!r}: no ROI for {len(skipped)} of {len(samples)} images "
                           f"({_first_three(skipped, lambda p: Path(p).name)}); on_roi_failure=skip "
                           f"leaves them out")
    return Dataset(name, kept, loader, skipped=skipped)


def _path_of(sample: Sample) -> str:
    """The file of a sample; a sample without one cannot come from a file database (DatasetError, not a crash
    inside read_image)."""
    if not sample.path:
        raise DatasetError(f"sample {sample.identity}/{sample.modality}/{sample.capture} has no file path")
    return str(sample.path)


def _first_three(failures: list[tuple[str, str]], label: Callable[[str], str] = str) -> str:
    """'file: reason; ...' of the first three (path, reason) failures, '...' when there are more."""
    return "; ".join(f"{label(p)}: {why}" for p, why in failures[:3]) + (" ..." if len(failures) > 3 else "")


def _choose(values: object, known: tuple[str, ...], what: str) -> tuple[str, ...] | None:
    """Normalise a selection ("940", 940, "green,nir", ["green", "nir"]) and check it against `known`."""
    if values is None:
        return None
    given = (values,) if isinstance(values, str | int) else tuple(cast(Iterable, values))
    chosen = tuple(v.strip().lower() for c in given for v in str(c).split(",") if v.strip())
    unknown = [v for v in chosen if v not in known]
    if unknown:
        raise DatasetError(f"unknown {what} {', '.join(unknown)}; expected some of: {', '.join(known)}")
    return chosen


def _train_bands(values: object, known: tuple[str, ...], bands: tuple[str, ...], what: str) -> tuple[str, ...]:
    """The training-only bands chosen (data.bands.train_only); a band asked for both ways is an error."""
    extra = _choose(values, known, what) or ()
    both = sorted(set(extra) & set(bands))
    if both:
        raise DatasetError(f"band asked for in both bands and train_bands: {', '.join(both)}")
    return extra


CASIA_BANDS = ("460", "630", "700", "850", "940", "wht")
_CASIA = re.compile(r"^(\d+)_([lr])_(\d+|WHT)_(\d+)$", re.IGNORECASE)


@DATASETS.register("casia-ms", aliases=("casiam",))
def casia_ms(root: str | None = None, bands: Iterable[str] | str = ("940",), roi: str | None = "valley",
             size: int = 128, on_roi_failure: str = "skip", *,
             train_bands: Iterable[str] | str | None = None) -> Dataset:
    """CASIA multispectral palmprint: `NNN_{l,r}_{460,630,700,850,940,WHT}_KK.jpg` anywhere under root.

    Identity is palm id + hand; print = visible bands (460, 630, 700, WHT), vein = 850 and 940 nm. The photos
    show the whole hand: with roi="valley" (default) each image is cut to its palm ROI (data.roi) when the
    dataset opens and kept in memory; photos whose ROI fails are skipped and listed (on_roi_failure="fail" stops
    instead); roi="none" gives the full photos (the ROI folders of the database). bands="paper" is the
    co-hashing paper's choice: print = 700 and 460 nm averaged (a composite band "700+460", data.bands), vein =
    850 nm; any "a+b" entry is such a composite. `train_bands` ("630,700,wht,850") are read as extra training
    images of the same captures (data.bands.train_only), never validated or tested.
    """
    base = _root(root, "casia-ms")
    plain, composites = expand("casia-ms", bands)
    chosen = _choose(plain, CASIA_BANDS, "CASIA band") or CASIA_BANDS
    extra = _train_bands(train_bands, CASIA_BANDS, chosen, "CASIA band")
    samples = []
    for path in _images(base):
        m = _CASIA.match(path.stem)
        if not m or m.group(3).lower() not in chosen + extra:
            continue
        palm, hand, band, k = m.groups()
        band = band.lower()
        modality = "vein" if band in VEIN_BANDS else "print"
        samples.append(Sample(f"{int(palm):03d}{hand.lower()}", modality, int(k), str(path), 1, hand.lower(), band))
    samples, parts_of = _with_composites(train_only(samples, extra), plain, composites)
    return _dataset("casia-ms", samples, base, f"bands {','.join(chosen)}", colour=_roi_colour(roi),
                    transform=_roi_transform(roi, size), cache=4096 if roi not in (None, "none") else 0,
                    on_roi_failure=on_roi_failure, parts_of=parts_of)


def _with_composites(samples: list[Sample], plain: object, composites: tuple[str, ...]) -> tuple[list[Sample], dict]:
    """Add the composite bands' samples (data.bands); a band read only as a composite's part is dropped."""
    if not composites:
        return samples, {}
    parts = {p for c in composites for p in c.split("+")}
    asked = {b for b in (plain or []) if b not in parts}  # type: ignore[attr-defined]
    out, parts_of = combine(samples, composites, asked)
    out = [replace(s, modality="vein" if all(p in VEIN_BANDS for p in s.band.split("+")) else "print")
           if s.band in composites else s for s in out]
    return out, parts_of


def _roi_colour(method: str | None) -> bool:
    """MediaPipe finds hands only in colour: read photos in colour for the landmarks method."""
    return method == "landmarks"


def _roi_transform(method: str | None, size: int) -> Callable[[np.ndarray, Sample], np.ndarray] | None:
    """Photo -> grey palm ROI on load; the landmarks method gets colour photos (see `_roi_colour`)."""
    if method in (None, "none"):
        return None
    from biohash.train.data.roi import extract_roi

    return lambda img, sample: extract_roi(img, method=method, size=size, where=sample.path)


POLYU_BANDS = ("red", "green", "blue", "nir")
_POLYU = re.compile(r"^(\d+)_(\d+)(?:_s)?$", re.IGNORECASE)


@DATASETS.register("polyu-ms", aliases=("polyu",))
def polyu_ms(root: str | None = None, bands: Iterable[str] | str = ("green", "nir"),
             train_bands: Iterable[str] | str | None = None) -> Dataset:
    """PolyU multispectral palmprint ROIs: `ROOT/{Red,Green,Blue,NIR}/NNN/S_KK[_s].bmp` (band folder names in
    any case; the full database and the subset here share this layout). Print = red/green/blue, vein = NIR.
    Captures of one palm and file name in two bands are simultaneous, so they pair for fused and cross modes.
    bands="paper" is the co-hashing paper's choice: print = red, green and blue averaged (composite band
    "red+green+blue", data.bands), vein = NIR. `train_bands` ("red,blue") are read as extra training images of
    the same captures (data.bands.train_only), never validated or tested.
    """
    base = _root(root, "polyu-ms")
    plain, composites = expand("polyu-ms", bands)
    chosen = _choose(plain, POLYU_BANDS, "PolyU band") or POLYU_BANDS
    extra = _train_bands(train_bands, POLYU_BANDS, chosen, "PolyU band")
    samples = []
    for band_dir in sorted(p for p in base.iterdir() if p.is_dir() and p.name.lower() in chosen + extra):
        band = band_dir.name.lower()
        modality = "vein" if band in VEIN_BANDS else "print"
        for path in _images(band_dir):
            m = _POLYU.match(path.stem)
            if m and path.parent.parent == band_dir and path.parent.name.isdigit():
                session, k = int(m.group(1)), int(m.group(2))
                samples.append(Sample(f"{int(path.parent.name):03d}", modality, k, str(path), session, band=band))
    samples, parts_of = _with_composites(train_only(samples, extra), plain, composites)
    return _dataset("polyu-ms", samples, base, f"bands {','.join(chosen)}", parts_of=parts_of)


def _palm_major(files: list[Path], per_palm: int, modality: str, session: int, band: str | None = None,
                *, offset: int = 0) -> list[Sample]:
    """Tongji numbering: file n (1-based) belongs to palm (n-1) // per_palm, capture (n-1) % per_palm."""
    out = []
    for path in files:
        if not path.stem.isdigit():
            continue
        n = int(path.stem) - 1 + offset
        out.append(Sample(f"{n // per_palm + 1:04d}", modality, n % per_palm, str(path), session, band=band))
    return out


def _sessions(folder: Path) -> list[tuple[int, Path]]:
    found = []
    for p in sorted(folder.iterdir()):
        m = re.fullmatch(r"session[_ ]?(\d+)", p.name, re.IGNORECASE)
        if p.is_dir() and m:
            found.append((int(m.group(1)), p))
    return found


@DATASETS.register("tongji")
def tongji(root: str | None = None, per_palm: int = 10) -> Dataset:
    """Tongji contactless palmprint ROIs: `ROOT/session{1,2}/NNNNN.bmp`, numbered palm-major (files 1..10 are
    palm 1, 11..20 palm 2, ...) and in the same order in both sessions."""
    base = _root(root, "tongji")
    samples = [s for session, folder in _sessions(base)
               for s in _palm_major(_images(folder), per_palm, "print", session)]
    return _dataset("tongji", samples, base, "session*/NNNNN.bmp")


@DATASETS.register("tjppv")
def tjppv(root: str | None = None, per_palm: int = 10) -> Dataset:
    """Tongji palmprint + palm vein: `ROOT/{print,palmprint}/session{1,2}/NNNNN.bmp` and
    `ROOT/{vein,palmvein}/session{1,2}/NNNNN.bmp`, numbered palm-major; the same file name in both
    modalities is one acquisition (pairs for fused and cross modes)."""
    base = _root(root, "tjppv")
    names = {"print": "print", "palmprint": "print", "vein": "vein", "palmvein": "vein"}
    samples = []
    for folder in sorted(p for p in base.iterdir() if p.is_dir() and p.name.lower() in names):
        for session, sess_dir in _sessions(folder):
            samples += _palm_major(_images(sess_dir), per_palm, names[folder.name.lower()], session)
    return _dataset("tjppv", samples, base, "{print,vein}/session*/NNNNN.bmp")


XJTU_SUBSETS = ("if", "in", "hf", "hn", "lf", "ln", "mf", "mn", "sf", "sn")


@DATASETS.register("xjtu-up")
def xjtu_up(root: str | None = None, subsets: Iterable[str] | str | None = None, roi: str = "none",
            size: int = 128, on_roi_failure: str = "skip") -> Dataset:
    """XJTU-UP (unconstrained palmprint, five phones x flash/natural light): `ROOT/{IF,IN,HF,...}/ID/*.jpg` where
    ID names the person and hand (`12_L`, `12_l` or a plain number). Each sub-database is one band (`if` etc.).
    roi="keypoints" reads each image's 14 keypoints from a `.txt` or `.json` file of the same stem ("x y" per
    line, P0..P13) and cuts the square ROI; "landmarks" detects them with MediaPipe; "none" (default) keeps
    the whole photos.
    """
    base = _root(root, "xjtu-up")
    chosen = _choose(subsets, XJTU_SUBSETS, "XJTU-UP sub-database") or XJTU_SUBSETS
    samples = []
    counts: dict[str, int] = defaultdict(int)  # captures numbered across sub-databases, so keys stay unique
    for sub in sorted(p for p in base.iterdir() if p.is_dir() and p.name.lower() in chosen):
        for person in sorted(p for p in sub.iterdir() if p.is_dir()):
            m = re.fullmatch(r"(\d+)(?:[_-]?([lLrR]))?", person.name)
            identity = person.name if not m else f"{int(m.group(1)):03d}{(m.group(2) or '').lower()}"
            hand = m.group(2).lower() if m and m.group(2) else None
            for path in _images(person):
                samples.append(Sample(identity, "print", counts[identity], str(path), 1, hand, sub.name.lower()))
                counts[identity] += 1
    transform = _roi_transform(roi, size)
    return _dataset("xjtu-up", samples, base, f"sub-databases {','.join(chosen)}", colour=_roi_colour(roi),
                    transform=transform, cache=4096 if transform else 0, on_roi_failure=on_roi_failure)


ASPECTS = ("dorsal-right", "dorsal-left", "palmar-right", "palmar-left")


@DATASETS.register("11k-hands", aliases=("11k",))
def hands_11k(root: str | None = None, aspects: Iterable[str] | str | None = None, accessories: str = "include",
              colour: bool = False) -> Dataset:
    """11K Hands: `ROOT/HandInfo.csv` and the images under `ROOT/images/` (or beside the CSV).

    Modality is "dorsal" or "palmar", hand "l"/"r", band the aspect ("palmar-right", ...); images with
    accessories carry the tag "accessories" (accessories="exclude" drops them, "only" keeps only them).
    """
    base = _root(root, "11k-hands")
    table = base / "HandInfo.csv"
    if not table.is_file():
        raise DatasetError(f"dataset '11k-hands': HandInfo.csv not found in {base}")
    if accessories not in ("include", "exclude", "only"):
        raise DatasetError(f"accessories must be include, exclude or only, got {accessories!r}")
    chosen = _choose(aspects, ASPECTS, "11K aspect") or ASPECTS
    image_dir = base / "images" if (base / "images").is_dir() else base
    counts: dict[tuple[str, str], int] = defaultdict(int)
    samples = []
    with table.open(newline="") as f:
        for row in csv.DictReader(f):
            try:
                side, hand = row["aspectOfHand"].strip().lower().split()
                identity, name, acc = row["id"].strip(), row["imageName"].strip(), int(row["accessories"])
            except (KeyError, ValueError) as err:
                raise DatasetError(f"{table}: unexpected row {row} ({err})") from None
            aspect = f"{side}-{hand}"
            if aspect not in chosen or (accessories == "exclude" and acc) or (accessories == "only" and not acc):
                continue
            path = image_dir / name
            if not path.is_file():
                continue  # the CSV lists the full database; a subset holds only some files
            k = counts[(identity, aspect)]
            counts[(identity, aspect)] += 1
            samples.append(Sample(identity, side, k, str(path), 1, hand[0], aspect, ("accessories",) if acc else ()))
    return _dataset("11k-hands", samples, base, f"aspects {','.join(chosen)}, accessories {accessories}",
                    colour=colour)


_HD = re.compile(r"^(\d+)_(\d+)$")


@DATASETS.register("hd")
def hand_dorsal(root: str | None = None, extra_from: int = 503, colour: bool = False) -> Dataset:
    """HD (PolyU-IITD hand dorsal): `ID_K.jpg` anywhere under root. Identities from `extra_from` on (the 213
    extra people of the full database) carry the tag "extra-gallery": protocols put them in the gallery only."""
    base = _root(root, "hd")
    samples = []
    for path in _images(base):
        m = _HD.match(path.stem)
        if m:
            ident, k = int(m.group(1)), int(m.group(2))
            tags = ("extra-gallery",) if ident >= extra_from else ()
            samples.append(Sample(f"{ident:04d}", "dorsal", k, str(path), 1, None, None, tags))
    return _dataset("hd", samples, base, "ID_K.jpg", colour=colour)


_VEINDEEP = re.compile(r"^p(\d+)_([lr])_(\d+)_(ir|depth)_raw$", re.IGNORECASE)


@DATASETS.register("veindeep")
def veindeep(root: str | None = None, channel: str = "ir") -> Dataset:
    """VeinDeep dorsal hand vein (Kinect V2): `pPP_{l,r}_TIMESTAMP_{ir,depth}_raw.png`, 16-bit.

    Each hand of a person is one identity ("01l"); captures are numbered in time order. channel="ir" gives
    the infrared frames (modality "vein"), "depth" the depth frames (modality "depth").
    """
    base = _root(root, "veindeep")
    if channel not in ("ir", "depth"):
        raise DatasetError(f"channel must be ir or depth, got {channel!r}")
    found = []
    for path in _images(base):
        m = _VEINDEEP.match(path.stem)
        if m and m.group(4).lower() == channel:
            found.append((f"{int(m.group(1)):02d}{m.group(2).lower()}", int(m.group(3)), path, m.group(2).lower()))
    found.sort()
    counts: dict[str, int] = defaultdict(int)
    samples = []
    for identity, _, path, hand in found:
        samples.append(Sample(identity, "vein" if channel == "ir" else "depth", counts[identity], str(path), 1,
                              hand))
        counts[identity] += 1
    return _dataset("veindeep", samples, base, f"channel {channel}")


_IITD = re.compile(r"^(\d+)_([lr])$", re.IGNORECASE)


@DATASETS.register("iitd-iris", aliases=("iitd",))
def iitd_iris(root: str | None = None, per_eye: bool = True) -> Dataset:
    """IITD iris v1.0: `ROOT/NNN/KK_{L,R}.bmp` (the full database; .png or .jpg too), NIR eye images, modality
    "ocular".

    per_eye (default): each eye is its own identity ("001l"), as periocular recognition treats them.
    """
    base = _root(root, "iitd-iris")
    samples = []
    for path in _images(base):
        m = _IITD.match(path.stem)
        if m and path.parent.name.isdigit():
            person, eye = f"{int(path.parent.name):03d}", m.group(2).lower()
            samples.append(Sample(person + eye if per_eye else person, "ocular", int(m.group(1)), str(path), 1, eye))
    return _dataset("iitd-iris", samples, base, "NNN/KK_{L,R}.bmp|png")
