"""Write synthetic captures to disk as PNG files (the `folder` layout) with a contact sheet."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from biohash.train.data.synthetic import MODALITIES, SyntheticPalms


def contact_sheet(rows: list[list[np.ndarray]], pad: int = 2) -> np.ndarray:
    """Tile equally sized grey images into one image, one list per row."""
    h, w = rows[0][0].shape
    cols = max(len(r) for r in rows)
    sheet = np.full((len(rows) * (h + pad) + pad, cols * (w + pad) + pad), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            sheet[y : y + h, x : x + w] = img
    return sheet


def export_synthetic(out: Path, identities: int, captures: int, seed: int = 0, size: int = 128,
                     *, sheet_identities: int = 6) -> Path:
    """Render identities x modalities x captures to OUT/IDENTITY/MODALITY/CAPTURE.png; returns the sheet path."""
    if identities < 1 or captures < 1:
        raise ValueError(f"identities and captures must be >= 1, got {identities} and {captures}")
    gen = SyntheticPalms(seed=seed, size=size)
    rows = []
    for i in range(identities):
        for m in MODALITIES:
            folder = out / f"{i:05d}" / m
            folder.mkdir(parents=True, exist_ok=True)
            imgs = [gen.render(i, m, c) for c in range(captures)]
            for c, img in enumerate(imgs):
                cv2.imwrite(str(folder / f"{c:03d}.png"), img)
            if i < sheet_identities:
                rows.append(imgs)
    path = out / "contact_sheet.png"
    cv2.imwrite(str(path), contact_sheet(rows))
    return path
