"""Palm ROI extraction: a square, upright crop of the palm centre from a hand photo.

Three ways to the same square rule (the distilled-hashing paper's, on its 14 keypoints P0..P13):
direction from P3 (index-middle valley) to P9 (ring-little valley); L = |P0 P12| (the palm's two sides);
side 3/5 L; centre on the perpendicular through P6 (middle-ring valley), 2/5 L into the palm.

- `keypoint_roi`: the rule itself, on given keypoints (e.g. XJTU-UP's annotations).
- `valley_roi`: for photos of a hand on a plain dark background (CASIA-MS, PolyU full images): segment the
  hand, find the three finger valleys from the contour's convexity defects, estimate L = 2 |P3 P9|.
- `landmark_roi`: from 21 hand landmarks (MediaPipe Hands order; `mediapipe_landmarks` detects them, an
  optional back-end chosen explicitly): valleys and palm sides from the knuckle landmarks.

Every failure is a RoiError with the reason; no silent bad crops.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from biohash.errors import BiohashError

METHODS = ("valley", "keypoints", "landmarks")
SIDE, OFFSET = 3 / 5, 2 / 5  # square side and centre offset, as fractions of the palm width L


class RoiError(BiohashError):
    """No trustworthy ROI could be cut; the message says why (and where, when known)."""


@dataclass(frozen=True)
class Square:
    """An ROI square in image coordinates: centre (x, y), side in pixels, and the unit vector pointing from the
    palm centre towards the fingers (the ROI's "up")."""

    centre: tuple[float, float]
    side: float
    up: tuple[float, float]

    def corners(self) -> np.ndarray:
        """(4, 2) float32 corners: top-left, top-right, bottom-right, bottom-left of the upright ROI."""
        c, u = np.array(self.centre), np.array(self.up)
        r = np.array([-u[1], u[0]])  # right-hand direction in image coordinates (y down)
        h = self.side / 2
        return np.stack([c + h * u - h * r, c + h * u + h * r, c - h * u + h * r, c - h * u - h * r]).astype(np.float32)


def square_from_points(p3: np.ndarray, p6: np.ndarray, p9: np.ndarray, palm_width: float,
                       inside: np.ndarray, *, offset: float | None = None) -> Square:
    """The square rule: `inside` is any point on the palm side of the valley line (picks the perpendicular);
    `offset` overrides the centre's distance from P6 (default 2/5 L)."""
    p3, p6, p9, inside = (np.asarray(p, np.float64) for p in (p3, p6, p9, inside))
    axis = p9 - p3
    norm = np.linalg.norm(axis)
    if norm < 1e-6 or palm_width <= 0:
        raise RoiError("degenerate keypoints: the two valleys coincide or the palm width is zero")
    axis /= norm
    down = np.array([-axis[1], axis[0]])
    if np.dot(inside - p6, down) < 0:
        down = -down
    centre = p6 + (OFFSET * palm_width if offset is None else offset) * down
    return Square((float(centre[0]), float(centre[1])), float(SIDE * palm_width), (float(-down[0]), float(-down[1])))


def keypoint_square(points: np.ndarray) -> Square:
    """The paper's rule on 14 keypoints (14, 2): P3, P6, P9 valleys, P0 and P12 the palm's sides."""
    points = np.asarray(points, np.float64)
    if points.shape != (14, 2) or not np.isfinite(points).all():
        raise RoiError(f"expected 14 finite (x, y) keypoints, got an array of shape {points.shape}")
    width = float(np.linalg.norm(points[12] - points[0]))
    return square_from_points(points[3], points[6], points[9], width, (points[0] + points[12]) / 2)


def cut(img: np.ndarray, square: Square, size: int = 128, where: str | None = None,
        max_outside: float = 0.02) -> np.ndarray:
    """Warp the square to an upright size x size crop; refuse when more than `max_outside` of it lies outside
    the image."""
    corners = square.corners()
    h, w = img.shape[:2]
    grid = np.linspace(0.05, 0.95, 10)  # sample the square on a grid to measure how much lies outside
    tl, tr, bl = corners[0], corners[1], corners[3]
    pts = tl + grid[:, None, None] * (tr - tl) + grid[None, :, None] * (bl - tl)
    outside = np.mean((pts[..., 0] < 0) | (pts[..., 0] >= w) | (pts[..., 1] < 0) | (pts[..., 1] >= h))
    if outside > max_outside:
        raise RoiError(f"{_at(where)}ROI square lies {outside:.0%} outside the image (the palm is cut off)")
    if square.side < 16:
        raise RoiError(f"{_at(where)}ROI square is only {square.side:.0f} px wide: hand too small or points wrong")
    dst = np.array([[0, 0], [size, 0], [size, size], [0, size]], np.float32)
    m = cv2.getPerspectiveTransform(corners, dst)
    return cv2.warpPerspective(img, m, (size, size), flags=cv2.INTER_AREA if square.side > size else cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)


def _at(where: str | Path | None) -> str:
    return f"{where}: " if where else ""


def keypoint_roi(img: np.ndarray, points: np.ndarray, size: int = 128, where: str | None = None) -> np.ndarray:
    """ROI by the 14-keypoint rule."""
    try:
        return cut(img, keypoint_square(points), size, where)
    except RoiError as err:
        raise RoiError(f"{_at(where)}{err}" if where and str(where) not in str(err) else str(err)) from None


def read_keypoints(image_path: str | Path) -> np.ndarray:
    """14 keypoints stored beside an image: STEM.txt ("x y" or "x,y" per line) or STEM.json ([[x, y], ...])."""
    base = Path(image_path)
    for path in (base.with_suffix(".txt"), base.with_suffix(".json")):
        if path.is_file():
            try:
                if path.suffix == ".json":
                    pts = np.asarray(json.loads(path.read_text()), np.float64)
                else:
                    rows = [ln.replace(",", " ").split() for ln in path.read_text().splitlines() if ln.strip()]
                    pts = np.asarray(rows, np.float64)
            except (ValueError, json.JSONDecodeError) as err:
                raise RoiError(f"{path}: cannot parse keypoints ({err})") from None
            return pts.reshape(-1, 2) if pts.size == 28 else pts
    raise RoiError(f"{base}: no keypoint file {base.with_suffix('.txt').name} or {base.with_suffix('.json').name}")


# ---- valley geometry (plain dark background) -------------------------------------------------------------


@dataclass(frozen=True)
class Valleys:
    """Finger valleys found on a hand photo: index-middle (p3), middle-ring (p6), ring-little (p9), and the
    palm centre (centre of the largest inscribed circle) with its radius."""

    p3: np.ndarray
    p6: np.ndarray
    p9: np.ndarray
    centre: np.ndarray
    radius: float


def hand_mask(img: np.ndarray, where: str | None = None) -> np.ndarray:
    """Binary mask (uint8 0/255) of the hand on a dark background: Otsu threshold of the blurred image, largest
    component, holes filled, thin bridges to clutter opened away. A bright background is refused."""
    grey = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    blur = cv2.GaussianBlur(grey, (0, 0), 2)
    level, mask = cv2.threshold(blur, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    border = np.concatenate([blur[0], blur[-1], blur[:, 0], blur[:, -1]])
    if np.median(border) > level:  # e.g. 11K Hands on white paper: fingers closed and small, valleys unreliable
        raise RoiError(f"{_at(where)}the background is brighter than the hand: the valley method needs a plain "
                       f"dark background (use --method landmarks or keypoints)")
    k = max(3, int(round(min(grey.shape) / 60)) | 1)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n < 2:
        raise RoiError(f"{_at(where)}no hand found: no region stands out from a plain background")
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    mask = np.where(labels == biggest, 255, 0).astype(np.uint8)
    frac = stats[biggest, cv2.CC_STAT_AREA] / mask.size
    if not 0.05 <= frac <= 0.8:
        raise RoiError(f"{_at(where)}no hand found: the largest bright region covers {frac:.0%} of the image")
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    filled = np.zeros_like(mask)
    cv2.drawContours(filled, contours, -1, 255, thickness=cv2.FILLED)
    return filled


def find_valleys(mask: np.ndarray, where: str | None = None) -> Valleys:
    """The three valleys between index, middle, ring and little fingers.

    Along the hand contour, the distance to the palm centre dips at every gap between fingers: a valley is a
    local minimum of that radial profile lying at least 0.35 palm radii below the highest points within
    about one finger length on both sides (fingertips). Convexity defects would miss gaps whose fingertips
    line up under one hull edge. Ordered along the contour, gaps run thumb-index, index-middle, middle-ring,
    ring-little (or the reverse); `_finger_triple` picks the three between the four fingers.
    """
    dist = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
    radius = float(dist.max())
    cy, cx = np.unravel_index(int(np.argmax(dist)), dist.shape)
    centre = np.array([cx, cy], np.float64)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    contour = max(contours, key=cv2.contourArea)[:, 0].astype(np.float64)
    idx = _radial_minima(np.linalg.norm(contour - centre, axis=1), radius)
    # keep gaps whose bottom lies near the palm (not notches far out on a finger or the arm)
    idx = [i for i in idx if np.linalg.norm(contour[i] - centre) < 2.2 * radius]
    if len(idx) < 3:
        raise RoiError(f"{_at(where)}found {len(idx)} finger valleys, need 3 (fingers closed, cut off or the "
                       f"background is not plain)")
    triple = _finger_triple(contour, idx, centre, radius)
    if triple is None:
        raise RoiError(f"{_at(where)}finger valleys are not evenly spaced: {len(idx)} gaps found, none "
                       f"three in a row look like index-middle, middle-ring, ring-little")
    p3, p6, p9 = triple
    return Valleys(p3, p6, p9, centre, radius)


def _radial_minima(r: np.ndarray, radius: float) -> list[int]:
    """Contour indices (ascending) of radial-profile minima at least 0.35 radius below the maxima within
    2.5 radii of contour length on each side; one index per dip."""
    from numpy.lib.stride_tricks import sliding_window_view

    n = len(r)
    w = max(3, min(int(2.5 * radius), n // 3))
    r = np.convolve(np.concatenate([r[-2:], r, r[:2]]), np.ones(5) / 5, mode="valid")  # light smoothing
    wrapped = np.concatenate([r[-w:], r, r[:w]])
    windows = sliding_window_view(wrapped, w)  # windows[i] = wrapped[i : i + w]
    left, right = windows[:n].max(axis=1), windows[w + 1 : w + 1 + n].max(axis=1)
    depth = np.minimum(left, right) - r
    half = max(1, w // 4)
    near = sliding_window_view(np.concatenate([r[-half:], r, r[:half]]), 2 * half + 1)[:n].min(axis=1)
    candidates = np.flatnonzero((depth > 0.35 * radius) & (r <= near))
    out: list[list[int]] = []
    for i in candidates:  # a flat-bottomed dip gives a run of equal minima: keep its middle
        if out and i - out[-1][-1] <= half:
            out[-1].append(int(i))
        else:
            out.append([int(i)])
    if len(out) > 1 and out[0][0] + n - out[-1][-1] <= half:  # a run wrapping past index 0
        out[0] = out.pop() + out[0]
    return sorted(run[len(run) // 2] % n for run in out)


def _finger_triple(contour: np.ndarray, idx: list[int], centre: np.ndarray,
                   radius: float) -> tuple[np.ndarray, ...] | None:
    """Pick three consecutive valleys (contour indices `idx`, in contour order) with a finger between each
    pair (the contour runs at least 0.8 palm radii away from the pair's midpoint: a sleeve or watch notch has
    none), even spacing (ratio < 2) and a compact span; among those, the triple farthest from the remaining
    valleys (the thumb gap lies apart)."""
    n = len(idx)
    valleys = [contour[i] for i in idx]

    def finger_between(i: int, j: int) -> bool:
        """A finger: the contour between the valleys runs far out, beyond the valley line, away from the palm."""
        a, b = idx[i], idx[j]
        seg = contour[a : b + 1] if a < b else np.concatenate([contour[a:], contour[: b + 1]])
        mid = (contour[a] + contour[b]) / 2
        far = np.linalg.norm(seg - mid, axis=1)
        tip = seg[int(np.argmax(far))]
        return float(far.max()) > 0.8 * radius and np.dot(tip - mid, mid - centre) > 0

    best, best_score = None, -np.inf
    for i in range(n):  # the contour is closed: consecutive includes the wrap-around
        j, k = (i + 1) % n, (i + 2) % n
        a, b, c = valleys[i], valleys[j], valleys[k]
        ab, bc, ac = (float(np.linalg.norm(v)) for v in (b - a, c - b, c - a))
        if min(ab, bc) < 0.15 * radius or max(ab, bc) / max(min(ab, bc), 1e-6) > 2.0 or ac > 2.5 * radius:
            continue
        if not (finger_between(i, j) and finger_between(j, k)):
            continue
        others = [valleys[m] for m in range(n) if m not in {i, j, k}]
        spread = min((float(min(np.linalg.norm(o - a), np.linalg.norm(o - c))) for o in others), default=0.0)
        score = spread - ac
        if score > best_score:
            best, best_score = (a, b, c), score
    return best


def valley_square(img: np.ndarray, where: str | None = None) -> Square:
    """Square by valley geometry; P3/P9 assignment does not matter for the rule (only their line does)."""
    mask = hand_mask(img, where)
    v = find_valleys(mask, where)
    width = 2.0 * float(np.linalg.norm(v.p9 - v.p3))
    square = square_from_points(v.p3, v.p6, v.p9, width, v.centre)
    # the square must lie on the hand: most of it inside the mask
    poly = square.corners().astype(np.int32)
    roi_mask = np.zeros_like(mask)
    cv2.fillConvexPoly(roi_mask, poly, 255)
    area = max(int(roi_mask.sum() // 255), 1)
    covered = int(((roi_mask > 0) & (mask > 0)).sum()) / area
    if covered < 0.9:
        raise RoiError(f"{_at(where)}ROI square is only {covered:.0%} on the hand: valleys misplaced")
    return square


def valley_roi(img: np.ndarray, size: int = 128, where: str | None = None) -> np.ndarray:
    return cut(img, valley_square(img, where), size, where)


# ---- 21 hand landmarks (MediaPipe order) ------------------------------------------------------------------

WRIST, INDEX_MCP, MIDDLE_MCP, RING_MCP, PINKY_MCP = 0, 5, 9, 13, 17


def landmark_square(landmarks: np.ndarray) -> Square:
    """Square rule from 21 landmarks (x, y): valleys lie just beyond the knuckle midpoints towards the fingers
    (a third of the knuckle-to-knuckle gap), the palm width L is 1.25 x the index-to-little knuckle span."""
    lm = np.asarray(landmarks, np.float64)
    if lm.ndim != 2 or lm.shape[0] != 21 or lm.shape[1] < 2 or not np.isfinite(lm[:, :2]).all():
        raise RoiError(f"expected 21 finite hand landmarks, got an array of shape {lm.shape}")
    lm = lm[:, :2]
    span = float(np.linalg.norm(lm[PINKY_MCP] - lm[INDEX_MCP]))
    if span < 1e-6:
        raise RoiError("degenerate landmarks: index and little knuckles coincide")
    axis = (lm[PINKY_MCP] - lm[INDEX_MCP]) / span
    up = np.array([axis[1], -axis[0]])
    if np.dot(lm[MIDDLE_MCP] - lm[WRIST], up) < 0:
        up = -up
    length = float(np.dot(lm[MIDDLE_MCP] - lm[WRIST], up))  # palm length as seen (shrinks when tilted)
    if span < 0.3 * length or length < 0.2 * span:
        raise RoiError(f"palm seen edge-on (knuckle span {span:.0f} px, palm length {length:.0f} px): no ROI")
    lift = span / 9  # knuckles sit below the valleys by about a third of the knuckle gap (span / 3)
    p3 = (lm[INDEX_MCP] + lm[MIDDLE_MCP]) / 2 + lift * up
    p6 = (lm[MIDDLE_MCP] + lm[RING_MCP]) / 2 + lift * up
    p9 = (lm[RING_MCP] + lm[PINKY_MCP]) / 2 + lift * up
    width = 1.25 * span
    # on a palm tilted away from the camera the rule's offset would run past the wrist: keep the centre
    # within the palm (at most 55 % of the way from the valleys to the wrist)
    offset = min(OFFSET * width, 0.55 * (length + lift))
    return square_from_points(p3, p6, p9, width, lm[WRIST], offset=offset)


def landmark_roi(img: np.ndarray, landmarks: np.ndarray, size: int = 128, where: str | None = None) -> np.ndarray:
    return cut(img, landmark_square(landmarks), size, where)


@functools.cache
def _hands_graph(mp):
    """The MediaPipe Hands graph, built once per process on first use (it takes seconds; its settings never
    change), like a compiled pattern rather than state a caller could set."""
    return mp.solutions.hands.Hands(static_image_mode=True, max_num_hands=1, min_detection_confidence=0.3)


def mediapipe_landmarks(img: np.ndarray, where: str | None = None) -> np.ndarray:
    """21 hand landmarks in pixels from MediaPipe Hands (optional back-end, chosen explicitly: install
    `make landmarks-env`, which pins mediapipe==0.10.21 with numpy < 2 in its own environment).

    Give a colour (RGB) image: on grey ones MediaPipe finds almost no hands (0 of 40 11K photos, 37 of 40 in
    colour). The image is padded by half its size first, so hands that fill the frame are found (40 of 40).
    """
    try:
        import mediapipe as mp
    except ImportError:
        raise RoiError("the landmarks method needs MediaPipe: run `make landmarks-env` and use "
                       ".venv-landmarks/bin/biohash (mediapipe==0.10.21 needs numpy < 2)") from None
    rgb = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB) if img.ndim == 2 else img
    pad = max(rgb.shape[:2]) // 2
    padded = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    result = _hands_graph(mp).process(np.ascontiguousarray(padded))
    if not result.multi_hand_landmarks:
        raise RoiError(f"{_at(where)}MediaPipe found no hand")
    h, w = padded.shape[:2]
    pts = np.array([[p.x * w, p.y * h] for p in result.multi_hand_landmarks[0].landmark], np.float64)
    return pts - pad


def find_square(img: np.ndarray, method: str = "valley", where: str | None = None) -> Square:
    """The ROI square of one photo by `method` ("keypoints" reads STEM.txt/.json beside `where`)."""
    if method == "valley":
        return valley_square(img, where)
    if method == "keypoints":
        if where is None:
            raise RoiError("the keypoints method needs the image path to find its keypoint file")
        return keypoint_square(read_keypoints(where))
    if method == "landmarks":
        return landmark_square(mediapipe_landmarks(img, where))
    raise ValueError(f"unknown ROI method {method!r}; expected one of: {', '.join(METHODS)}")


def grey_roi(img: np.ndarray, square: Square, size: int = 128, where: str | None = None) -> np.ndarray:
    """`cut`, then grey: palm ROIs are grey whatever photo they came from."""
    roi = cut(img, square, size, where)
    return cv2.cvtColor(roi, cv2.COLOR_RGB2GRAY) if roi.ndim == 3 else roi


def extract_roi(img: np.ndarray, method: str = "valley", size: int = 128, where: str | None = None) -> np.ndarray:
    """Cut the palm ROI (uint8 grey, size x size, fingers up) from a hand photo (grey, or RGB for landmarks)."""
    return grey_roi(img, find_square(img, method, where), size, where)
