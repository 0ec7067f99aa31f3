"""Encoder: loads an exported bundle (torch or onnxruntime back-end) and turns images into Codes.

    enc = Encoder("runs/demo/export", backend="onnx-int8")
    codes = enc.encode([grey_image, ...], modality="print")   # Codes, packed bits
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from biohash.errors import BiohashError, FileFormatError, MissingFileError, check_fields
from biohash.match.codes import relaxed_from_real
from biohash.match.types import RelaxedCodes

if TYPE_CHECKING:
    from biohash.train.recipes.base import CodeModel

BACKENDS = ("torch", "onnx", "onnx-int8")


BUNDLE_FIELDS: dict[str, Any] = {"modalities": list, "bits": int, "image_size": int, "fingerprint": str}
BUNDLE_OPTIONAL: dict[str, Any] = {"build_config": dict, "onnx": dict, "thresholds": dict, "threshold_pairs": dict,
                                   "checks": dict,
                                   "failed_checks": list, "preprocessing": str, "format_version": int}


def read_bundle_meta(path: Path) -> dict:
    """bundle.json, checked: FileFormatError naming the file and the first missing or mistyped key."""
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise FileFormatError(f"{path}: not valid JSON ({err})") from None
    check_fields(meta, BUNDLE_FIELDS, str(path), optional=BUNDLE_OPTIONAL)
    if not meta["modalities"] or not all(isinstance(m, str) for m in meta["modalities"]):
        raise FileFormatError(f"{path}: key 'modalities' must be a non-empty list of names")
    return meta


def resolve_backend(meta: dict, backend: str) -> str:
    """'auto' is ONNX Runtime FP32 where the bundle has an ONNX model for every modality, it passed its export
    check and onnxruntime imports (about 40x faster than torch at batch 1 on a CPU), torch otherwise; INT8 is
    never chosen for the user (measured slower than FP32 on these CPUs, and its codes differ by a few bits)."""
    if backend != "auto":
        return backend
    import importlib.util

    files = meta.get("onnx", {})
    complete = bool(files) and all("onnx" in files.get(m, {}) for m in meta.get("modalities", []))
    failed = any(k.endswith("/onnx") for k in meta.get("failed_checks", []))
    return "onnx" if complete and not failed and importlib.util.find_spec("onnxruntime") else "torch"


class Encoder:
    """Images -> binary codes with one exported model; the back-end is chosen, never fallen back from."""

    @property
    def family(self) -> str:
        """Codes of one family are interchangeable: float (torch, onnx) or int8."""
        return "int8" if self.backend.endswith("int8") else "float"

    def __init__(self, bundle: str | Path, backend: str = "auto", threads: int | None = None,
                 allow_failed: bool = False, device: str = "cpu") -> None:
        self.path = Path(bundle)
        meta_path = self.path / "bundle.json"
        if not self.path.is_dir():
            raise MissingFileError(f"bundle folder not found: {self.path}")
        if not meta_path.is_file():
            raise MissingFileError(f"no bundle.json in {self.path}: export the run first (biohash export RUN)")
        if backend not in BACKENDS + ("auto",):
            raise BiohashError(f"unknown backend {backend!r}; expected auto or one of: {', '.join(BACKENDS)}")
        self.meta = read_bundle_meta(meta_path)
        backend = self.backend = resolve_backend(self.meta, backend)
        self.modalities: tuple[str, ...] = tuple(self.meta["modalities"])
        self.bits, self.image_size = int(self.meta["bits"]), int(self.meta["image_size"])
        self.fingerprint: str = self.meta["fingerprint"]
        failed = [k for k in self.meta.get("failed_checks", []) if k.endswith(f"/{backend}")]
        if failed and not allow_failed:
            raise BiohashError(f"the {backend} model of {self.path} failed its export check ({', '.join(failed)}: "
                               f"codes disagree with torch); use another back-end or re-export")
        # either back-end loads on the first image: a device that only matches hex codes needs neither torch
        # nor onnxruntime
        self._threads, self._device = threads, device  # device: where the torch back-end runs (--device)
        if backend == "torch" and device != "cpu":  # a GPU asked for: refuse a missing one now, not per image
            from biohash.train.devices import resolve_device

            resolve_device(device)
        self._runner: Any = None
        self._onnx_files = self._model_files() if backend != "torch" else {}

    def _run(self, x: np.ndarray, modality: str) -> tuple[np.ndarray, np.ndarray]:
        if self._runner is None:
            import importlib.util

            if self.backend == "torch" and importlib.util.find_spec("torch") is None:
                raise BiohashError("encoding images with the torch back-end needs torch: pip install 'biohash[train]' "
                                 "(or --backend onnx with 'biohash[export]')")
            if self.backend != "torch" and importlib.util.find_spec("onnxruntime") is None:
                raise BiohashError(f"encoding images with the {self.backend} back-end needs onnxruntime: pip install "
                                 f"'biohash[export]'")
            self._runner = self._torch_runner(self._threads) if self.backend == "torch" else \
                self._onnx_runner(self._threads)
        return self._runner(x, modality)

    def _torch_runner(self, threads: int | None):
        import torch

        from biohash.train.devices import resolve_device
        from biohash.train.recipes.base import build_untrained

        if threads:
            torch.set_num_threads(threads)
        device = resolve_device(self._device)
        if "build_config" not in self.meta:
            raise FileFormatError(f"{self.path / 'bundle.json'}: the torch back-end needs key 'build_config' "
                                  f"(export the run again, or encode with onnx)")
        model = build_untrained(self.meta["build_config"])
        model.load_state_dict(torch.load(self.path / "weights.pt", map_location="cpu", weights_only=True))
        model.to(device).eval()

        branches = cast("CodeModel", model)

        def run(x: np.ndarray, modality: str) -> tuple[np.ndarray, np.ndarray]:
            net = branches.net(modality)
            # oneDNN is ~8x slower than torch's own CPU kernels for one or two images (compnet_lite: 119 vs 15 ms)
            # and faster from batches of about 4 up
            with torch.no_grad(), _onednn(device.type != "cpu" or len(x) > 2):
                e, c = net.embed_and_code(torch.from_numpy(x).to(device))
                return e.float().cpu().numpy(), c.float().cpu().numpy()

        return run

    def _model_files(self) -> dict[str, Path]:
        """modality -> ONNX file of this back-end; a missing one is an error at start, not at the first image."""
        files = {}
        for m in self.modalities:
            entries = self.meta.get("onnx", {}).get(m, {})
            if self.backend not in entries:
                raise MissingFileError(f"the bundle has no {self.backend} model for {m!r}; export it with "
                                        f"biohash export RUN --format {self.backend}")
            files[m] = self.path / entries[self.backend]
            if not files[m].is_file():
                raise MissingFileError(f"{files[m]} is missing from the bundle; export it again with biohash "
                                        f"export RUN --format {self.backend}")
        return files

    def _onnx_runner(self, threads: int | None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        sessions = {m: ort.InferenceSession(str(f), opts, providers=["CPUExecutionProvider"])
                    for m, f in self._onnx_files.items()}

        def run(x: np.ndarray, modality: str) -> tuple[np.ndarray, np.ndarray]:
            e, c = sessions[modality].run(["embedding", "code"], {"image": x})
            return e, c

        return run

    def _check_modality(self, modality: str) -> None:
        if modality not in self.modalities:
            raise BiohashError(f"this model encodes {', '.join(self.modalities)} images, not {modality!r}")

    def preprocess(self, images: list[np.ndarray]) -> np.ndarray:
        """Grey (or RGB, converted) uint8 images of any size -> (B, 1, S, S) float32, as in training."""
        from biohash.imaging.transforms import standardize

        if not len(images):
            raise BiohashError("no images to encode")
        return np.stack([standardize(img, self.image_size) for img in images]).astype(np.float32)

    def embed_batch(self, x: np.ndarray, modality: str) -> tuple[np.ndarray, np.ndarray]:
        """Preprocessed (B, 1, S, S) -> (embeddings, relaxed codes)."""
        self._check_modality(modality)
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 4 or x.shape[1:] != (1, self.image_size, self.image_size):
            raise ValueError(f"expected preprocessed images (B, 1, {self.image_size}, {self.image_size}), "
                             f"got {x.shape}")
        return self._run(x, modality)

    def encode(self, images: list[np.ndarray], modality: str) -> RelaxedCodes:
        """Images -> packed binary codes (sign of the relaxed code), the relaxed values kept beside them for
        asymmetric matching (a RelaxedCodes is Codes everywhere else)."""
        return relaxed_from_real(self.embed_batch(self.preprocess(images), modality)[1])


@contextmanager
def _onednn(enabled: bool) -> Iterator[None]:
    """torch.backends.mkldnn.flags without the TF32 UserWarning its setter raises on every CPU-only build."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        flags = torch.backends.mkldnn.flags(enabled=enabled)
        flags.__enter__()
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            flags.__exit__(None, None, None)


def batch1_ms(encoder: Encoder, images: np.ndarray, modality: str, n: int = 8) -> float:
    """Median ms to encode one image at a time (after one warm-up call): a service's latency per probe."""
    import time

    encoder.embed_batch(images[:1], modality)
    times = []
    for k in range(min(n, len(images))):
        t0 = time.perf_counter()
        encoder.embed_batch(images[k : k + 1], modality)
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))


def check_bundle(run_dir: str | Path, source: str = "synthetic", n: int = 64,
                 min_agreement: float = 0.97, device: str = "cpu") -> dict[str, dict[str, float]]:
    """Compare every ONNX model of RUN/export with the torch back-end on `n` calibration images: max
    |embedding difference| and the fraction of code bits that agree; recorded in bundle.json under checks.
    Models under `min_agreement` are listed in bundle.json's failed_checks, and Encoder refuses them."""
    from biohash.train.export import calibration_images
    from biohash.train.runs import read_config

    run_dir = Path(run_dir)
    bundle_dir = run_dir / "export"
    reference = Encoder(bundle_dir, backend="torch", device=device)
    config = read_config(run_dir)
    backends = sorted({b for files in reference.meta["onnx"].values() for b in files})
    encoders = {b: Encoder(bundle_dir, backend=b, allow_failed=True) for b in backends}  # each loads its sessions once
    checks = {}
    for m in reference.modalities:
        images = calibration_images(config, m, source, n=n)
        e_ref, c_ref = reference.embed_batch(images, m)
        torch_ms = batch1_ms(reference, images, m)
        for backend in reference.meta["onnx"].get(m, {}):
            e, c = encoders[backend].embed_batch(images, m)
            agreement = float(((c > 0) == (c_ref > 0)).mean())
            checks[f"{m}/{backend}"] = {"max_abs_embedding_diff": float(np.abs(e - e_ref).max()),
                                        "bit_agreement": agreement, "passed": agreement >= min_agreement,
                                        "images": len(images), "ms_per_image_batch1": batch1_ms(encoders[backend], images, m),
                                        "torch_ms_per_image_batch1": torch_ms}
    failed = [k for k, c in checks.items() if not c["passed"]]
    meta = {**reference.meta, "checks": checks, "min_agreement": min_agreement, "failed_checks": failed}
    (bundle_dir / "bundle.json").write_text(json.dumps(meta, indent=2))
    return checks
