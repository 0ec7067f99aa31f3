"""Matching modes, defined once for evaluation (scores.py) and deployment (deployment.py), numpy stack.

A mode is a set of (probe modality, gallery modality) pairs whose normalised distances are averaged:
print and vein match like with like, fused averages both, cross matches a print probe against a vein
template (cross-rev the reverse); any other modality (ocular, dorsal, a wavelength) matches itself.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from biohash.errors import BiohashError

T = TypeVar("T", float, np.ndarray)
MODE_NAMES = ("print", "vein", "fused", "cross", "cross-rev")


class ModeError(BiohashError):
    """A combination of probe and gallery modalities no mode covers."""


@dataclass(frozen=True)
class Mode:
    name: str
    pairs: tuple[tuple[str, str], ...]  # (probe modality, gallery modality), averaged

    @property
    def probe_modalities(self) -> tuple[str, ...]:
        return tuple(p for p, _ in self.pairs)

    def gallery_of(self, probe_modality: str) -> str:
        """The gallery modality a probe of this modality is compared with."""
        return dict(self.pairs)[probe_modality]


_KNOWN = {
    "print": (("print", "print"),),
    "vein": (("vein", "vein"),),
    "fused": (("print", "print"), ("vein", "vein")),
    "cross": (("print", "vein"),),
    "cross-rev": (("vein", "print"),),
}


def fuse(parts: Iterable[T]) -> T:
    """Score-level fusion of a mode's modality pairs, the one used by evaluation and deployment alike: the mean
    of the pairs' distances or similarities (the mean commutes with similarity = 1 - distance / bits)."""
    parts = list(parts)
    if not parts:
        raise ValueError("fusion needs at least one modality pair's scores")
    return sum(parts[1:], parts[0]) / len(parts)


def mode(name: str) -> Mode:
    """A mode by name; a name that is not one of MODE_NAMES is same-modality matching of that modality."""
    return Mode(name, _KNOWN.get(name, ((name, name),)))


def modes_for(modalities: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Modes a set of modalities supports: all five for print + vein, otherwise each modality alone."""
    if {"print", "vein"} <= set(modalities):
        return MODE_NAMES
    return tuple(modalities)


def resolve(probe_modalities: list[str] | tuple[str, ...], against: str | None = None) -> Mode:
    """The mode of a request: print + vein probes are fused; one probe modality is matched against its own
    templates, or against `against` (print vs vein: cross, vein vs print: cross-rev)."""
    probe = sorted(set(probe_modalities))
    if probe == ["print", "vein"]:
        if against not in (None, "fused"):
            raise ModeError("a print + vein probe is matched in fused mode; leave 'against' out")
        return mode("fused")
    if len(probe) != 1:
        raise ModeError(f"give one probe modality, or print and vein together; got {', '.join(probe) or 'none'}")
    m = probe[0]
    if against in (None, m):
        return mode(m)
    for name in ("cross", "cross-rev"):
        if _KNOWN[name] == ((m, against),):
            return mode(name)
    raise ModeError(f"cannot match {m!r} probes against {against!r} templates")
