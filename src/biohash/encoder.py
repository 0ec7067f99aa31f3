"""Encoder: loads an exported bundle (torch or onnxruntime back-end) and turns images into Codes.

    enc = Encoder("runs/demo/export", backend="onnx-int8")
    codes = enc.encode([grey_image, ...], modality="print")   # Codes, packed bits
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from biohash.codes import from_real
from biohash.types import Codes

if TYPE_CHECKING:
    from biohash.recipes.base import CodeModel

BACKENDS = ("torch", "onnx", "onnx-int8")


class Encoder:
    """Images -> binary codes with one exported model; the back-end is chosen, never fallen back from."""

    @property
    def family(self) -> str:
        """Codes of one family are interchangeable: float (torch, onnx) or int8."""
        return "int8" if self.backend.endswith("int8") else "float"

    def __init__(self, bundle: str | Path, backend: str = "torch", threads: int | None = None,
                 allow_failed: bool = False, device: str = "cpu") -> None:
        self.path = Path(bundle)
        meta_path = self.path / "bundle.json"
        if not self.path.is_dir():
            raise FileNotFoundError(f"bundle folder not found: {self.path}")
        if not meta_path.is_file():
            raise FileNotFoundError(f"no bundle.json in {self.path}: export the run first (biohash export RUN)")
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; expected one of: {', '.join(BACKENDS)}")
        self.meta = json.loads(meta_path.read_text())
        self.backend = backend
        self.modalities: tuple[str, ...] = tuple(self.meta["modalities"])
        self.bits, self.image_size = int(self.meta["bits"]), int(self.meta["image_size"])
        self.fingerprint: str = self.meta["fingerprint"]
        failed = [k for k in self.meta.get("failed_checks", []) if k.endswith(f"/{backend}")]
        if failed and not allow_failed:
            raise ValueError(f"the {backend} model of {self.path} failed its export check ({', '.join(failed)}: "
                             f"codes disagree with torch); use another back-end or re-export")
        # torch loads on the first image (a device that only matches hex codes needs no torch); onnx at once
        self._threads, self._device = threads, device  # device: where the torch back-end runs (--device)
        if backend == "torch" and device != "cpu":  # a GPU asked for: refuse a missing one now, not per image
            from biohash.devices import resolve_device

            resolve_device(device)
        self._runner = None if backend == "torch" else self._onnx_runner(threads)

    def _run(self, x: np.ndarray, modality: str) -> tuple[np.ndarray, np.ndarray]:
        if self._runner is None:
            import importlib.util

            if importlib.util.find_spec("torch") is None:
                raise ValueError("encoding images with the torch back-end needs torch: pip install 'biohash[train]' "
                                 "(or --backend onnx with 'biohash[export]')")
            self._runner = self._torch_runner(self._threads)
        return self._runner(x, modality)

    def _torch_runner(self, threads: int | None):
        import torch

        from biohash.devices import resolve_device
        from biohash.restore import build_untrained

        if threads:
            torch.set_num_threads(threads)
        device = resolve_device(self._device)
        model = build_untrained(self.meta["build_config"])
        model.load_state_dict(torch.load(self.path / "weights.pt", map_location="cpu", weights_only=True))
        model.to(device).eval()

        branches = cast("CodeModel", model)

        def run(x: np.ndarray, modality: str) -> tuple[np.ndarray, np.ndarray]:
            net = branches.net(modality)
            with torch.no_grad():
                e, c = net.embed_and_code(torch.from_numpy(x).to(device))
                return e.float().cpu().numpy(), c.float().cpu().numpy()

        return run

    def _onnx_runner(self, threads: int | None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        sessions = {}
        for m, files in self.meta["onnx"].items():
            if self.backend not in files:
                raise FileNotFoundError(f"the bundle has no {self.backend} model for {m!r}; export it with "
                                        f"biohash export RUN --format {self.backend}")
            model_file = self.path / files[self.backend]
            if not model_file.is_file():
                raise FileNotFoundError(f"{model_file} is missing from the bundle; export it again with biohash "
                                        f"export RUN --format {self.backend}")
            sessions[m] = ort.InferenceSession(str(model_file), opts, providers=["CPUExecutionProvider"])

        def run(x: np.ndarray, modality: str) -> tuple[np.ndarray, np.ndarray]:
            e, c = sessions[modality].run(["embedding", "code"], {"image": x})
            return e, c

        return run

    def _check_modality(self, modality: str) -> None:
        if modality not in self.modalities:
            raise ValueError(f"this model encodes {', '.join(self.modalities)} images, not {modality!r}")

    def preprocess(self, images: list[np.ndarray]) -> np.ndarray:
        """Grey (or RGB, converted) uint8 images of any size -> (B, 1, S, S) float32, as in training."""
        from biohash.data.transforms import standardize

        if not len(images):
            raise ValueError("no images to encode")
        return np.stack([standardize(img, self.image_size) for img in images]).astype(np.float32)

    def embed_batch(self, x: np.ndarray, modality: str) -> tuple[np.ndarray, np.ndarray]:
        """Preprocessed (B, 1, S, S) -> (embeddings, relaxed codes)."""
        self._check_modality(modality)
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 4 or x.shape[1:] != (1, self.image_size, self.image_size):
            raise ValueError(f"expected preprocessed images (B, 1, {self.image_size}, {self.image_size}), "
                             f"got {x.shape}")
        return self._run(x, modality)

    def encode(self, images: list[np.ndarray], modality: str) -> Codes:
        """Images -> packed binary codes (sign of the relaxed code)."""
        return from_real(self.embed_batch(self.preprocess(images), modality)[1])


def check_bundle(run_dir: str | Path, source: str = "synthetic", n: int = 64,
                 min_agreement: float = 0.97, device: str = "cpu") -> dict[str, dict[str, float]]:
    """Compare every ONNX model of RUN/export with the torch back-end on `n` calibration images: max
    |embedding difference| and the fraction of code bits that agree; recorded in bundle.json under checks.
    Models under `min_agreement` are listed in bundle.json's failed_checks, and Encoder refuses them."""
    from biohash.export import calibration_images
    from biohash.runs import read_config

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
        for backend in reference.meta["onnx"].get(m, {}):
            e, c = encoders[backend].embed_batch(images, m)
            agreement = float(((c > 0) == (c_ref > 0)).mean())
            checks[f"{m}/{backend}"] = {"max_abs_embedding_diff": float(np.abs(e - e_ref).max()),
                                        "bit_agreement": agreement, "passed": agreement >= min_agreement,
                                        "images": len(images)}
    failed = [k for k, c in checks.items() if not c["passed"]]
    meta = {**reference.meta, "checks": checks, "min_agreement": min_agreement, "failed_checks": failed}
    (bundle_dir / "bundle.json").write_text(json.dumps(meta, indent=2))
    return checks
