"""Deployment: an exported model + a template store + per-modality matchers, behind enroll / verify / identify /
delete in the four modes (print, vein, fused, cross: enroll with vein, verify with print) and any single
modality; the modes are biohash.match.modes', the ones evaluation scores. The store is the truth; matchers are
caches that catch up from its change counter before each search. With a protection key, codes are
transformed before they are stored or matched (cancellable). With asymmetric=True a probe encoded here from an
image keeps its relaxed values and is matched by asymmetric distance (match.codes.asymmetric_distance, in bits) in
modes named "<mode>-asym", against their own thresholds; templates stay the same packed codes.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from biohash.errors import BiohashError
from biohash.imaging.images import check_usable
from biohash.match.matching import make_matcher, resolve_matcher
from biohash.match.modes import Mode, ModeError, fuse, resolve
from biohash.match.protect import Protector
from biohash.match.types import Codes, RelaxedCodes
from biohash.serve.access import check_subject
from biohash.serve.store import StoreError, TemplateStore, open_store

if TYPE_CHECKING:
    from biohash.serve.encoder import Encoder


class RequestError(BiohashError):
    """A request a caller can fix: wrong modality, wrong code length, missing input (HTTP 400)."""


class NotFound(BiohashError):
    """An unknown subject (HTTP 404)."""


@dataclass(frozen=True)
class Decision:
    mode: str
    distance: float  # Hamming (or, in "-asym" modes, asymmetric) distance in bits; fused: the mean of the pairs
    threshold: float | None
    match: bool | None


class Deployment:
    """Thread-safe (one lock) facade used by the CLI and the REST service."""

    def __init__(self, encoder: Encoder, store: TemplateStore, matcher: str = "auto",
                 protector: Protector | None = None, far: float = 1e-3, *, asymmetric: bool = False) -> None:
        """From parts: an encoder (or only its bundle's metadata, for hex codes), a store already bound to the
        model, a matcher spec (biohash.match.matching.MATCHERS) and an optional protector. Most callers want
        `Deployment.from_bundle`."""
        self.encoder = encoder
        self.asymmetric = asymmetric
        self.bits, self.fingerprint = encoder.bits, encoder.fingerprint
        self.store = store
        self.protector = protector
        self.thresholds = encoder.meta.get("thresholds", {})
        self.far = f"{far:g}"
        self.matcher_factory = resolve_matcher(matcher)
        self.matchers = {m: make_matcher(self.bits, self.matcher_factory) for m in encoder.modalities}
        self._seq = 0
        self._lock = threading.Lock()
        self.sync()

    @classmethod
    def from_bundle(cls, bundle: str | Path, store: str | Path, *, backend: str = "auto", matcher: str = "auto",
                    key: bytes | None = None, far: float = 1e-3, threads: int | None = None,
                    mix_encoders: bool = False, device: str = "cpu", create: bool = True,
                    asymmetric: bool = False) -> Deployment:
        """An exported bundle's encoder over the store at `store` (a path or URL), bound to the bundle's model
        and, unless mix_encoders, to its encoder family (float and int8 codes of one model differ). 'auto'
        picks the fastest correct back-end (encoder.resolve_backend) and matcher (matching.resolve_matcher).
        create=False refuses a store that does not exist yet (open_store). asymmetric: match image probes by their
        relaxed values (see the module docstring)."""
        from biohash.serve.encoder import Encoder

        encoder = Encoder(bundle, backend=backend, threads=threads, device=device)
        opened = open_store(store, n_bits=encoder.bits, fingerprint=encoder.fingerprint,
                            encoder=None if mix_encoders else encoder.family, create=create)
        return cls(encoder, opened, matcher, Protector(key, encoder.bits) if key else None, far,
                   asymmetric=asymmetric)

    # --- inputs ------------------------------------------------------------------------------------------
    @staticmethod
    def check_subject(subject: str) -> str:
        """Subject ids are checked once, here, for every route and command (biohash.serve.access.SUBJECT_RULE)."""
        try:
            return check_subject(subject)
        except BiohashError as err:
            raise RequestError(str(err)) from None

    def codes_from_images(self, images: dict[str, np.ndarray]) -> dict[str, Codes]:
        """Codes of one image per modality (RelaxedCodes: asymmetric matching can read their values); images too
        small or blank to match are refused."""
        self.check_modalities(images)
        out: dict[str, Codes] = {}
        for m, img in images.items():
            try:
                check_usable(img, m)
            except BiohashError as err:
                raise RequestError(str(err)) from None
            out[m] = self.encoder.encode([img], m)
        return out

    def codes_from_hex(self, codes: dict[str, str]) -> dict[str, Codes]:
        self.check_modalities(codes)
        out = {}
        for m, text in codes.items():
            try:
                raw = bytes.fromhex(text)
            except (ValueError, TypeError):
                raise RequestError(f"codes for {m!r} must be a hex string") from None
            if len(raw) * 8 != self.bits:
                raise RequestError(f"codes for {m!r} have {len(raw) * 8} bits; this model makes {self.bits}-bit "
                                   f"codes")
            out[m] = Codes(np.frombuffer(raw, np.uint8).reshape(1, -1).copy(), self.bits)
        return out

    def check_modalities(self, names) -> None:
        """Refuse modalities the model lacks (the name is not echoed: it is the caller's input)."""
        if any(m not in self.encoder.modalities for m in names):
            raise RequestError(f"unknown modality; this model takes {', '.join(self.encoder.modalities)}")

    def _protect(self, codes: dict[str, Codes]) -> dict[str, Codes]:
        return {m: self.protector.protect(c) for m, c in codes.items()} if self.protector else codes

    # --- matcher cache -----------------------------------------------------------------------------------
    def sync(self) -> int:
        """Catch the matchers up with the store, a page of changes at a time; returns the change counter
        reached."""
        while True:
            changes = self.store.changes_since(self._seq, limit=50_000)
            self._apply(changes)
            if changes.complete:
                return self._seq

    def _apply(self, changes) -> None:
        if changes.removed:
            for matcher in self.matchers.values():
                matcher.remove(np.array(changes.removed))
        by_modality: dict[str, list[tuple[int, bytes]]] = {}
        removed = set(changes.removed)
        for t in changes.added:
            if t.id not in removed:
                by_modality.setdefault(t.modality, []).append((t.id, t.code))
        for m, rows in by_modality.items():
            if m in self.matchers:
                codes = Codes(np.frombuffer(b"".join(r for _, r in rows), np.uint8).reshape(len(rows), -1).copy(),
                              self.bits)
                self.matchers[m].add(np.array([t for t, _ in rows]), codes)
        self._seq = changes.seq

    # --- operations --------------------------------------------------------------------------------------
    def threshold(self, mode: str) -> float | None:
        """The decision threshold (bits) of a mode at this deployment's FAR; None when the model has none."""
        value = self.thresholds.get(mode, {}).get(self.far)
        return None if value is None else float(value)

    def band(self, distance: float) -> str:
        """Coarse score band of a distance (what callers without the 'scores' scope see): high under 15 % of
        the bits, medium under 30 %, low otherwise (unrelated codes sit near 50 %)."""
        r = distance / self.bits
        return "high" if r < 0.15 else "medium" if r < 0.30 else "low"

    def enroll(self, subject: str, codes: dict[str, Codes]) -> list[int]:
        self.check_subject(subject)
        if not codes:
            raise RequestError("nothing to enroll: give at least one image or code")
        with self._lock:
            key_id = self.protector.key_id if self.protector else None
            try:
                return self.store.enroll(subject, self._protect(codes), self.fingerprint, key_id=key_id)
            except StoreError as err:
                raise RequestError(str(err)) from None

    def delete(self, subject: str) -> int:
        self.check_subject(subject)
        with self._lock:
            n = self.store.delete(subject)
        if not n:  # messages never repeat a caller's input (service error bodies); the caller knows the id
            raise NotFound("no templates for this subject")
        return n

    def mode_of(self, probe: dict[str, Codes], against: str | None) -> Mode:
        """The mode a probe is matched in (see biohash.match.modes.resolve); RequestError names no caller input."""
        if against is not None and against not in self.encoder.modalities and against != "fused":
            raise RequestError(f"unknown 'against' modality; this model has {', '.join(self.encoder.modalities)}")
        try:
            return resolve(list(probe), against)
        except ModeError as err:  # names only modalities checked above
            raise RequestError(str(err)) from None

    def _asymmetric(self, probe: dict[str, Codes]) -> bool:
        """Whether this probe is matched asymmetrically: the deployment asks for it and every code of the probe
        kept its relaxed values (images encoded here; hex codes never do)."""
        return self.asymmetric and all(isinstance(c, RelaxedCodes) for c in probe.values())

    def mode_name(self, name: str, probe: dict[str, Codes]) -> str:
        """The name a probe's mode is reported and thresholded under: "<mode>-asym" when matched asymmetrically."""
        return f"{name}-asym" if self._asymmetric(probe) else name

    def _pair_distances(self, subject: str, probe: dict[str, Codes], mode: Mode) -> dict[tuple[str, str], float]:
        """Per (probe, gallery) modality pair of the mode that the subject has templates for: the nearest
        template's distance (bits; asymmetric for an asymmetric probe)."""
        from biohash.match.codes import asymmetric_distance, hamming

        out = {}
        for p, g in mode.pairs:
            _, _, templates = self.store.templates(subject=subject, modality=g)
            if templates is not None:
                code = probe[p]
                d = asymmetric_distance(code.values, templates) if self._asymmetric(probe) and \
                    isinstance(code, RelaxedCodes) else hamming(code, templates)
                out[(p, g)] = float(d.min())
        return out

    def _distance_to_subject(self, subject: str, probe: dict[str, Codes], mode: Mode) -> float:
        """Mean over the mode's (probe, gallery) modality pairs of the nearest template's distance (bits)."""
        parts = self._pair_distances(subject, probe, mode)
        missing = [g for p, g in mode.pairs if (p, g) not in parts]
        if missing:
            raise NotFound(f"the subject has no {missing[0]} template")
        return float(fuse(parts.values()))

    def _scored(self, subject: str, probe: dict[str, Codes], mode: Mode) -> tuple[float, str, str] | None:
        """(distance, subject, mode scored) of a fused-identify candidate: a subject enrolled with only some of
        the mode's modalities is scored in the modes it has (a print-only subject by print alone, against the
        print threshold), so one partial enrollment fails nobody; None when it has none of them."""
        parts = self._pair_distances(subject, probe, mode)
        if not parts:
            return None
        if len(parts) == len(mode.pairs):
            return float(fuse(parts.values())), subject, self.mode_name(mode.name, probe)
        (p, g), d = next(iter(parts.items()))
        return d, subject, self.mode_name(resolve([p], g).name, probe)

    def verify(self, subject: str, probe: dict[str, Codes], against: str | None = None) -> Decision:
        self.check_subject(subject)
        mode = self.mode_of(probe, against)
        with self._lock:
            d = self._distance_to_subject(subject, self._protect(probe), mode)
        name = self.mode_name(mode.name, probe)
        t = self.threshold(name)
        return Decision(name, d, t, None if t is None else d <= t)

    def identify(self, probe: dict[str, Codes], against: str | None = None, k: int = 5) -> list[dict]:
        return self.identify_many([probe], against, k)[0]

    def identify_many(self, probes: list[dict[str, Codes]], against: str | None = None, k: int = 5) -> list[list[dict]]:
        """identify for each probe, in order; the probes of one single-modality mode go to the matcher as one
        search (faiss scans the gallery once for all of them), fused and asymmetric ones one at a time (their
        candidates come from the Hamming index, then each is scored exactly)."""
        if not 1 <= k <= 100:
            raise RequestError(f"k must be between 1 and 100, got {k}")
        modes = [self.mode_of(p, against) for p in probes]
        probes = [self._protect(p) for p in probes]
        scored: list[list] = [[] for _ in probes]
        with self._lock:
            self.sync()
            groups: dict[tuple[str, str], list[int]] = {}
            for n, mode in enumerate(modes):
                if len(mode.pairs) > 1:
                    scored[n] = self._rescored_candidates(probes[n], mode, k)
                elif self._asymmetric(probes[n]):  # a user's own matcher without codes_of: per subject
                    has_codes = hasattr(self.matchers[mode.pairs[0][1]], "codes_of")
                    scored[n] = (self._asymmetric_candidates if has_codes else self._rescored_candidates)(
                        probes[n], mode, k)
                else:
                    groups.setdefault(mode.pairs[0], []).append(n)
            for (p, g), rows in groups.items():
                stacked = Codes(np.concatenate([probes[n][p].bits for n in rows]), self.bits)
                dist, ids = self.matchers[g].search(stacked, 4 * k)
                subjects = self.store.subjects_of(np.unique(ids))
                for n, d_row, i_row in zip(rows, dist, ids):
                    scored[n] = _nearest_per_subject(d_row, i_row, subjects, modes[n].name)
        return [[self._candidate(s, d, m) for d, s, m in found[:k]] for found in scored]

    def _rescored_candidates(self, probe: dict[str, Codes], mode: Mode, k: int) -> list:
        """Candidates from each modality's index by Hamming distance, then the exact (fused, asymmetric) distance
        of each (lock held)."""
        candidates = set()
        for p, g in mode.pairs:
            _, ids = self.matchers[g].search(probe[p], 10 * k)
            candidates |= set(self.store.subjects_of(ids[0]).values())
        return sorted(x for x in (self._scored(s, probe, mode) for s in candidates) if x is not None)

    def _asymmetric_candidates(self, probe: dict[str, Codes], mode: Mode, k: int) -> list:
        """One modality, asymmetric: the max(10 k, 100) nearest templates by Hamming distance, rescored by their
        asymmetric distance from the matcher's own copy of their codes, the nearest per subject (lock held)."""
        from biohash.match.codes import asymmetric_distance

        (p, g), = mode.pairs
        code = cast(RelaxedCodes, probe[p])
        _, ids = self.matchers[g].search(code, max(10 * k, 100))
        ids = ids[0][ids[0] >= 0]
        if not len(ids):
            return []
        distances = asymmetric_distance(code.values, self.matchers[g].codes_of(ids))[0]
        return _nearest_per_subject(distances, ids, self.store.subjects_of(np.unique(ids)),
                                    self.mode_name(mode.name, probe))

    def busy(self) -> bool:
        """Whether a request holds the deployment's lock right now (the service then answers off the loop)."""
        return self._lock.locked()

    def _candidate(self, subject: str, distance: float, mode: str) -> dict:
        t = self.threshold(mode)
        return {"subject": subject, "distance": distance, "match": None if t is None else distance <= t,
                "mode": mode, "band": self.band(distance)}

    def health(self) -> dict:
        with self._lock:
            return {"status": "ok", "templates": self.store.count(), "model": self.fingerprint, "bits": self.bits,
                    "modalities": list(self.encoder.modalities), "matcher": self.matcher_factory,
                    "backend": self.encoder.backend,
                    "store": self.store.dialect, "protected": self.protector is not None,
                    "asymmetric": self.asymmetric}


def _nearest_per_subject(distances, ids, subjects: dict[int, str], mode: str) -> list[tuple[float, str, str]]:
    """(distance, subject, mode) of each subject's nearest template among the searched ones, nearest first;
    template ids the store no longer knows (deleted since the search) are skipped."""
    best: dict[str, float] = {}
    for d, i in zip(distances, ids):
        s = subjects.get(int(i))
        if s is not None and (s not in best or float(d) < best[s]):
            best[s] = float(d)
    return sorted((d, s, mode) for s, d in best.items())
