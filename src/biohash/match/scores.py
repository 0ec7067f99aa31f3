"""Genuine/impostor score sets per deployment mode, built from codes; bob-style 4-column score files.

Modes are biohash.match.modes' (shared with deployment): "print" and "vein" (same modality), "fused" (mean of the print
and vein similarities of one capture pair), "cross" (print probes against a vein gallery) and "cross-rev" (vein
probes against a print gallery).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from biohash.match.codes import asymmetric_distance, similarity
from biohash.match.modes import MODE_NAMES, fuse, mode
from biohash.match.types import Codes, Scores

__all__ = ["MODE_NAMES", "CodeSet", "mode_scores", "write_score_file", "read_score_file"]


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


def mode_scores(mode_name: str, probe: dict[str, CodeSet], gallery: dict[str, CodeSet], *,
                probe_values: dict[str, np.ndarray] | None = None) -> Scores:
    """Similarity matrix of one mode (biohash.match.modes): the mean of its (probe, gallery) modality pairs' matrices;
    with two pairs (fused) only captures present in every modality of a side take part, matched by (identity,
    capture).

    Args:
        mode_name: one of MODE_NAMES, or any modality both sides hold (e.g. "ocular": same-modality matching).
        probe, gallery: CodeSets keyed by modality ("print", "vein", ...).
        probe_values: the probes' relaxed codes per modality (rows as in `probe`): asymmetric matching, each pair
            scored 1 - asymmetric_distance / bits (the Hamming scale; equal to it for +-1 values).
    """
    m = mode(mode_name)
    values = probe_values or {}
    missing = sorted({p for p, _ in m.pairs if p not in probe or (probe_values is not None and p not in values)}
                     | {g for _, g in m.pairs if g not in gallery})
    if missing:
        raise KeyError(f"mode {mode_name!r} needs {', '.join(missing)} codes on both sides; expected one of: "
                       f"{', '.join(MODE_NAMES)}, or a modality both sides hold")

    def pair_matrix(p: str, g: str, rows_p: np.ndarray | None = None, rows_g: np.ndarray | None = None) -> np.ndarray:
        """One (probe, gallery) modality pair's similarities, over the given rows (all when None)."""
        g_codes = gallery[g].codes if rows_g is None else gallery[g].take(rows_g).codes
        if probe_values is None:
            return similarity(probe[p].codes if rows_p is None else probe[p].take(rows_p).codes, g_codes)
        p_values = values[p] if rows_p is None else values[p][rows_p]
        return 1.0 - asymmetric_distance(p_values, g_codes) / g_codes.n_bits

    if len(m.pairs) == 1:
        (p, g), = m.pairs
        return _scores(mode_name, probe[p], gallery[g], pair_matrix(p, g))
    (p1, g1), (p2, g2) = m.pairs
    rp1, rp2 = _pair_rows(probe[p1], probe[p2])
    rg1, rg2 = _pair_rows(gallery[g1], gallery[g2])
    matrix = fuse([pair_matrix(p1, g1, rp1, rg1), pair_matrix(p2, g2, rp2, rg2)])
    return _scores(mode_name, probe[p1].take(rp1), gallery[g1].take(rg1), matrix)


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
    genuine: list[float] = []
    impostor: list[float] = []
    with Path(path).open() as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if len(parts) != 4:
                raise ValueError(f"{path}:{n}: expected 4 columns 'claimed real probe score', got {len(parts)}")
            (genuine if parts[0] == parts[1] else impostor).append(float(parts[3]))
    return np.array(genuine), np.array(impostor)
