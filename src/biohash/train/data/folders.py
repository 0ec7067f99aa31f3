"""Adapters for a user's own images: a folder of identity folders, a CSV manifest, or unlabeled images."""
from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

from biohash.match.types import Sample
from biohash.train.data.databases import _dataset, _images, _root
from biohash.train.data.datasets import DATASETS, Dataset, DatasetError


@DATASETS.register("images", aliases=("unlabeled",))
def unlabeled_images(root: str | None = None, modality: str = "print", colour: bool = False) -> Dataset:
    """Every image under root, without identities (identity "unlabeled"): data for label-free work such as
    quantization by embedding distillation."""
    base = _root(root, "images")
    samples = [Sample("unlabeled", modality, k, str(path)) for k, path in enumerate(_images(base))]
    return _dataset("images", samples, base, colour=colour)


@DATASETS.register("folder")
def folder(root: str | None = None, manifest: str | None = None, modality: str = "print",
           colour: bool = False) -> Dataset:
    """A user's own images: `ROOT/IDENTITY/*.png|jpg|bmp`, `ROOT/IDENTITY/MODALITY/*.*`, or a CSV manifest
    with header `path,identity,modality[,session,hand]` (paths relative to the manifest or absolute).

    `modality` names images that sit directly in an identity folder. Root may itself be a CSV file.
    """
    if manifest is None and root is not None and Path(root).suffix.lower() == ".csv":
        manifest, root = root, None
    if manifest is not None:
        return _from_manifest(Path(manifest).expanduser(), colour)
    base = _root(root, "folder")
    samples = []
    for ident_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        groups: dict[str, list[Path]] = defaultdict(list)
        for path in _images(ident_dir):
            rel = path.relative_to(ident_dir).parts
            groups[rel[0] if len(rel) > 1 else modality].append(path)
        for mod, paths in groups.items():
            samples += [Sample(ident_dir.name, mod, k, str(p)) for k, p in enumerate(paths)]
    return _dataset("folder", samples, base, "IDENTITY/[MODALITY/]*.png|jpg|bmp", colour=colour)


def _from_manifest(path: Path, colour: bool) -> Dataset:
    if not path.is_file():
        raise DatasetError(f"manifest not found: {path}")
    samples = []
    counts: dict[tuple[str, str], int] = defaultdict(int)
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = {"path", "identity", "modality"} - set(reader.fieldnames or [])
        if missing:
            raise DatasetError(f"{path}: manifest lacks column(s) {', '.join(sorted(missing))}; expected header "
                               f"path,identity,modality[,session,hand]")
        for line, row in enumerate(reader, start=2):
            image = Path(row["path"].strip())
            image = image if image.is_absolute() else path.parent / image
            ident, mod = row["identity"].strip(), row["modality"].strip()
            if not ident or not mod:
                raise DatasetError(f"{path}:{line}: empty identity or modality")
            try:
                session = int(row.get("session") or 1)
            except ValueError:
                raise DatasetError(f"{path}:{line}: session must be an integer, got {row['session']!r}") from None
            k = counts[(ident, mod)]
            counts[(ident, mod)] += 1
            samples.append(Sample(ident, mod, k, str(image), session, (row.get("hand") or "").strip().lower() or None))
    return _dataset("folder", samples, path.parent, f"manifest {path.name}", colour=colour)
