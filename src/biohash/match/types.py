"""Frozen value types that travel between layers: Sample, Codes, Scores (numpy only)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Sample:
    """One biometric capture.

    Attributes:
        identity: subject (or palm) label, unique within a dataset.
        modality: "print", "vein", "dorsal", "palmar", "ocular" or a wavelength such as "940".
        capture: index of the capture within (identity, modality); pairs print and vein of one session.
        path: image file, or None for generated samples.
        session: acquisition session, when the database has several.
        hand: "l" or "r" where known (for ocular images: which eye).
        band: acquisition wavelength or light where the database has several ("940", "green", "nir").
        tags: database flags a protocol may filter on ("accessories", "extra-gallery").
    """

    identity: str
    modality: str
    capture: int
    path: str | None = None
    session: int = 1
    hand: str | None = None
    band: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Codes:
    """Binary codes, packed 8 per byte (big-endian bit order, as np.packbits).

    Attributes:
        bits: uint8 array of shape (n, n_bits // 8).
        n_bits: code length in bits.
    """

    bits: np.ndarray
    n_bits: int

    def __post_init__(self) -> None:
        if self.n_bits <= 0 or self.n_bits % 8:
            raise ValueError(f"n_bits must be a positive multiple of 8, got {self.n_bits}")
        b = self.bits
        if not isinstance(b, np.ndarray) or b.dtype != np.uint8 or b.ndim != 2 or b.shape[1] != self.n_bits // 8:
            got = f"{getattr(b, 'dtype', type(b).__name__)}{getattr(b, 'shape', '')}"
            raise ValueError(f"Codes.bits must be uint8 of shape (n, {self.n_bits // 8}), got {got}")

    def __len__(self) -> int:
        return self.bits.shape[0]


@dataclass(frozen=True)
class RelaxedCodes(Codes):
    """Codes of a live probe that keep the real values they are the signs of (the hash layer's relaxed output):
    Hamming matching reads `bits` as for any Codes, asymmetric matching reads `values` against stored codes.

    Attributes:
        values: float32 array of shape (n, n_bits); value > 0 where the bit is 1.
    """

    values: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))

    def __post_init__(self) -> None:
        super().__post_init__()
        v = self.values
        if not isinstance(v, np.ndarray) or v.shape != (len(self), self.n_bits):
            raise ValueError(f"RelaxedCodes.values must have shape ({len(self)}, {self.n_bits}), got "
                             f"{getattr(v, 'shape', type(v).__name__)}")


@dataclass(frozen=True)
class Template:
    """One stored template, as a store hands it out (TemplateStore.changes_since).

    Attributes:
        id: the store's template id (what matchers index).
        subject: the enrolled subject.
        modality: "print", "vein", ...
        code: the packed code bytes (protected, where the deployment protects templates).
    """

    id: int
    subject: str
    modality: str
    code: bytes


@dataclass(frozen=True)
class Scores:
    """Comparison scores of one mode: higher means more likely the same identity.

    Attributes:
        mode: one of modes.MODE_NAMES ("print", "vein", "fused", "cross", "cross-rev") or a modality.
        matrix: float array (n_probes, n_gallery), similarity in [0, 1] (1 - normalised Hamming distance).
        probe_ids: identity per probe row.
        gallery_ids: identity per gallery column.
    """

    mode: str
    matrix: np.ndarray
    probe_ids: np.ndarray
    gallery_ids: np.ndarray
    probe_names: list[str] = field(default_factory=list)
    gallery_names: list[str] = field(default_factory=list)

    @property
    def genuine_mask(self) -> np.ndarray:
        return self.probe_ids[:, None] == self.gallery_ids[None, :]

    @property
    def genuine(self) -> np.ndarray:
        return self.matrix[self.genuine_mask]

    @property
    def impostor(self) -> np.ndarray:
        return self.matrix[~self.genuine_mask]
