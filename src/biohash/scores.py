"""Genuine/impostor score sets per deployment mode, built from codes; bob-style 4-column score files.

Modes: "print" and "vein" (same modality), "fused" (mean of the print and vein similarities of one capture
pair), "cross" (print probes against a vein gallery) and "cross-rev" (vein probes against a print gallery).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from biohash.codes import similarity
from biohash.types import Codes, Scores

MODE_NAMES = ("print", "vein", "fused", "cross", "cross-rev")


@dataclass(frozen=True)
class CodeSet:
    """Codes of one modality with, per row, its identity and capture index."""

    codes: Codes
    identities: np.ndarray
    captures: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.codes)
        if len(self.identities) != n or len(self.captures) != n:
            raise ValueError(f"CodeSet: {n} codes but {len(self.identities)} identities, {len(self.captures)} captures")

    def names(self) -> list[str]:
        return [f"{i}/{c}" for i, c in zip(self.identities, self.captures)]

    def take(self, rows: np.ndarray) -> CodeSet:
        """The subset at the given row indices, in that order."""
        return CodeSet(Codes(self.codes.bits[rows], self.codes.n_bits), self.identities[rows], self.captures[rows])


def _pair_rows(a: CodeSet, b: CodeSet) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of a and b whose (identity, capture) agree, in a's order."""
    index_b = {(i, c): k for k, (i, c) in enumerate(zip(b.identities, b.captures))}
    ia, ib = [], []
    for k, key in enumerate(zip(a.identities, a.captures)):
        if key in index_b:
            ia.append(k)
            ib.append(index_b[key])
    if not ia:
        raise ValueError("fused mode needs print and vein captures with matching (identity, capture); found none")
    return np.array(ia), np.array(ib)


def _scores(mode: str, probe: CodeSet, gallery: CodeSet, matrix: np.ndarray) -> Scores:
    return Scores(mode, matrix, np.asarray(probe.identities), np.asarray(gallery.identities),
                  probe.names(), gallery.names())


def mode_scores(mode: str, probe: dict[str, CodeSet], gallery: dict[str, CodeSet]) -> Scores:
    """Similarity matrix of one mode.

    Args:
        mode: one of MODE_NAMES, or any modality both sides hold (e.g. "ocular": same-modality matching).
        probe, gallery: CodeSets keyed by modality ("print", "vein", ...).
    """
    if mode in ("print", "vein") or (mode in probe and mode in gallery and mode not in MODE_NAMES):
        return _scores(mode, probe[mode], gallery[mode], similarity(probe[mode].codes, gallery[mode].codes))
    if mode == "cross":
        return _scores(mode, probe["print"], gallery["vein"], similarity(probe["print"].codes, gallery["vein"].codes))
    if mode == "cross-rev":
        return _scores(mode, probe["vein"], gallery["print"], similarity(probe["vein"].codes, gallery["print"].codes))
    if mode == "fused":
        pp, pv = _pair_rows(probe["print"], probe["vein"])
        gp, gv = _pair_rows(gallery["print"], gallery["vein"])
        p_print, g_print = probe["print"].take(pp), gallery["print"].take(gp)
        s_print = similarity(p_print.codes, g_print.codes)
        s_vein = similarity(probe["vein"].take(pv).codes, gallery["vein"].take(gv).codes)
        return _scores(mode, p_print, g_print, (s_print + s_vein) / 2.0)
    raise KeyError(f"unknown mode {mode!r}; expected one of: {', '.join(MODE_NAMES)}")


def write_score_file(scores: Scores, path: str | Path) -> None:
    """Write bob's 4-column format: `claimed_id real_id probe_id score`, one comparison a line."""
    path = Path(path)
    with path.open("w") as f:
        for r, real in enumerate(scores.probe_ids):
            probe_name = scores.probe_names[r] if scores.probe_names else str(r)
            for c, claimed in enumerate(scores.gallery_ids):
                f.write(f"{claimed} {real} {probe_name} {scores.matrix[r, c]:.6f}\n")


def read_score_file(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a 4-column score file back as (genuine, impostor) score arrays."""
    genuine, impostor = [], []
    with Path(path).open() as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if len(parts) != 4:
                raise ValueError(f"{path}:{n}: expected 4 columns 'claimed real probe score', got {len(parts)}")
            (genuine if parts[0] == parts[1] else impostor).append(float(parts[3]))
    return np.array(genuine), np.array(impostor)
