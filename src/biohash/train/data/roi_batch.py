"""`biohash roi`: cut palm ROIs from a folder of hand photos, with a contact sheet and a failure list.

OUT/ mirrors INPUT's tree with one PNG ROI per photo that worked; OUT/contact_sheet.png (then _2, _3, ...,
48 photos a page) shows every photo with its ROI square drawn and its file name (failures crossed out in
red); OUT/failures.json maps each failed photo to the reason; OUT/roi.json records the method, size and counts.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from biohash.train.data.databases import IMAGE_SUFFIXES, read_image
from biohash.train.data.datasets import DatasetError
from biohash.train.data.roi import METHODS, RoiError, find_square, grey_roi

PAGE = 48  # photos per contact sheet page


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    """The tile with a strip under it naming the photo (long names keep their end)."""
    strip = np.zeros((18, tile.shape[1], 3), np.uint8)
    fits = max(4, tile.shape[1] // 8)
    text = text if len(text) <= fits else "..." + text[-(fits - 3):]
    cv2.putText(strip, text, (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return np.vstack([tile, strip])


def _thumbnail(img: np.ndarray, corners: np.ndarray | None, roi: np.ndarray | None, height: int = 120) -> np.ndarray:
    vis = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    scale = height / vis.shape[0]
    vis = cv2.resize(vis, (max(1, int(round(vis.shape[1] * scale))), height), interpolation=cv2.INTER_AREA)
    if corners is not None:
        pts = (corners * scale).astype(np.int32)
        cv2.polylines(vis, [pts], True, (0, 0, 255), 2)
        cv2.line(vis, tuple(pts[0]), tuple(pts[1]), (0, 255, 0), 2)  # the ROI's top edge (fingers side)
    else:
        cv2.line(vis, (0, 0), (vis.shape[1] - 1, height - 1), (0, 0, 255), 3)
        cv2.line(vis, (0, height - 1), (vis.shape[1] - 1, 0), (0, 0, 255), 3)
    side = roi if roi is not None else np.zeros((height, height), np.uint8)
    side = cv2.cvtColor(cv2.resize(side, (height, height)), cv2.COLOR_GRAY2BGR)
    return np.hstack([vis, side])


def contact_sheet(tiles: list[np.ndarray], columns: int = 6) -> np.ndarray:
    """Tiles of equal height laid out row by row (each padded to the widest)."""
    if not tiles:
        return np.zeros((10, 10, 3), np.uint8)
    width = max(t.shape[1] for t in tiles)
    tiles = [np.pad(t, ((2, 2), (2, 2 + width - t.shape[1]), (0, 0))) for t in tiles]
    tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % columns)
    return np.vstack([np.hstack(tiles[i : i + columns]) for i in range(0, len(tiles), columns)])


def extract_folder(src: Path, out: Path, method: str = "valley", size: int = 128,
                   progress: bool = True) -> dict[str, int]:
    """Cut the ROI of every image under `src` into `out`; returns counts {"images", "rois", "failures",
    "sheets"}."""
    from rich.progress import track

    if method not in METHODS:
        raise ValueError(f"unknown ROI method {method!r}; expected one of: {', '.join(METHODS)}")
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise DatasetError(f"input folder not found: {src}")
    files = sorted(p for p in src.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                   and out not in p.parents)
    if not files:
        raise DatasetError(f"no images (.png, .jpg, .bmp, ...) under {src}")
    out.mkdir(parents=True, exist_ok=True)
    failures: dict[str, str] = {}
    tiles = []
    for path in track(files, description=f"ROI ({method})", disable=not progress):
        rel, img = path.relative_to(src), None
        try:
            img = read_image(path, colour=method == "landmarks")  # MediaPipe needs colour
            square = find_square(img, method, str(path))
            roi = grey_roi(img, square, size, str(path))
        except (RoiError, DatasetError) as err:
            failures[str(rel)] = str(err).replace(f"{path}: ", "")
            if img is not None:
                tiles.append(_label(_thumbnail(img, None, None), str(rel)))
            continue
        target = out / rel.with_suffix(".png")
        target.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(target), roi)
        tiles.append(_label(_thumbnail(img, square.corners(), roi), str(rel)))
    pages = [tiles[i : i + PAGE] for i in range(0, max(len(tiles), 1), PAGE)]
    for n, page in enumerate(pages, 1):
        cv2.imwrite(str(out / ("contact_sheet.png" if n == 1 else f"contact_sheet_{n}.png")), contact_sheet(page))
    (out / "failures.json").write_text(json.dumps(failures, indent=2) + "\n")
    counts = {"images": len(files), "rois": len(files) - len(failures), "failures": len(failures),
              "sheets": len(pages)}
    (out / "roi.json").write_text(json.dumps({"method": method, "size": size, "input": str(src), **counts},
                                             indent=2) + "\n")
    return counts
