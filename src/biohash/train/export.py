"""Artifact bundle of a trained hashing run: weights, config, metadata, preprocessing, ONNX and INT8 ONNX.

RUN/export/ holds bundle.json (what the model is, how to feed it, its fingerprint and the export checks),
weights.pt (float weights; a quantized run's weights are written at their quantized values) and one ONNX file
per modality branch with outputs `embedding` and `code` (relaxed code; its sign is the binary code).
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from biohash.errors import ConfigError
from biohash.train.runs import RunError, read_config

FORMATS = ("torch", "onnx", "onnx-int8")  # torch: weights and bundle.json only (no ONNX tools needed)
PREPROCESSING = ("grey image -> resize to image_size (area) -> local contrast normalisation (Gaussian sigma = "
                 "side / 16) -> zero mean, unit variance; input (B, 1, image_size, image_size) float32")


class _Branch(nn.Module):
    """One modality's hashing network with both outputs, for export."""

    def __init__(self, hashnet: Any) -> None:  # a CodeModel branch
        super().__init__()
        self.hashnet = hashnet

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.hashnet.embed_and_code(x)


def float_model(run_dir: Path, config: dict[str, Any]) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """The run's selected model as a plain float network, the config that rebuilds it (a quantized run: its
    source's, with the quantized weight values baked in) and the recipe's notes for bundle.json. The model is
    an nn.Module and a recipes.base.CodeModel with `bits`."""
    from biohash.train.recipes.base import RECIPES, get_recipe, load_model

    recipe = get_recipe(config.get("recipe"), config.get("recipe_module"))
    source = config.get("source_config") or config  # a derived run (quantize) exports like its source
    if get_recipe(source.get("recipe"), source.get("recipe_module")).produces != "codes":
        coding = [n for n in RECIPES.names() if RECIPES.get(n).produces == "codes"]
        raise RunError(f"{run_dir} is a {config.get('recipe')!r} run of float features; export handles hashing runs "
                       f"with per-modality codes ({', '.join(coding)})")
    return recipe.for_export(load_model(run_dir, config), config)


def fingerprint(state: dict[str, torch.Tensor], bits: int) -> str:
    """sha256 over the weights (name, shape, bytes) and the code length: templates from another model or
    code length are refused by the store."""
    h = hashlib.sha256(f"bits={bits}".encode())
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(name.encode() + str(tuple(t.shape)).encode() + t.numpy().tobytes())
    return h.hexdigest()[:32]


def calibration_images(config: dict[str, Any], modality: str, source: str, n: int = 128) -> np.ndarray:
    """(n, 1, S, S) standardised images for INT8 calibration and export checks: synthetic captures of the
    branch's look (vein for non-palm modalities), or the run's own training images."""
    from biohash.imaging.transforms import standardize
    from biohash.train.data.config import DataConfig, open_split
    from biohash.train.data.datasets import open_dataset

    data = DataConfig(**config["data"])
    if source == "synthetic":
        look = modality if modality in ("print", "vein") else "vein"
        ds = open_dataset("synthetic", identities=-(-n // 4), captures=4, seed=data.seed + 104729,
                          size=data.image_size, modalities=(look,))
        samples = ds.samples[:n]
    elif source == "real":
        ds, split = open_split(data)
        samples = [s for s in split.train if s.modality == modality][:n]
    else:
        raise ConfigError(f"unknown calibration source {source!r}; expected synthetic or real")
    if not samples:
        raise RunError(f"no {source} calibration images for modality {modality!r}")
    return np.stack([standardize(ds.load(s), data.image_size) for s in samples])


def _onnx(branch: nn.Module, size: int, path: Path) -> None:
    """Trace one branch to ONNX; learnable Gabor banks are baked into plain convolutions first (on a copy)."""
    import copy
    import warnings

    from biohash.train.models.compnet import bake_gabor

    branch = bake_gabor(copy.deepcopy(branch)).eval()

    with warnings.catch_warnings():  # the input-shape checks are constant for a fixed input shape
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter handles these models
        try:
            _trace(branch, size, path)
        except Exception as err:
            if "adaptive_avg_pool2d" in str(err):
                raise RunError(f"ONNX cannot export the spatial head's pooling at image size {size}: the "
                               f"backbone's feature map must be a multiple of the pooling grid; train at an "
                               f"image size such as 64 or 128") from None
            raise


def _trace(branch: nn.Module, size: int, path: Path) -> None:
    torch.onnx.export(branch, (torch.zeros(1, 1, size, size),), str(path), input_names=["image"],
                      output_names=["embedding", "code"],
                      dynamic_axes={"image": {0: "batch"}, "embedding": {0: "batch"}, "code": {0: "batch"}},
                      dynamo=False)


def _int8(fp32: Path, out: Path, images: np.ndarray) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"image": images[i : i + 16]} for i in range(0, len(images), 16)])

        def get_next(self):
            return next(self.batches, None)

    prepared = out.with_suffix(".prep.onnx")
    quant_pre_process(str(fp32), str(prepared))
    quantize_static(str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    nodes_to_exclude=competition_nodes(prepared))
    prepared.unlink()


def competition_nodes(model_path: Path) -> list[str]:
    """Nodes kept in FP32 by INT8 export: every Softmax over channels and the convolutions feeding and reading it
    (CompNet's competitive Gabor blocks). Quantized, they flipped 30 % of a demo model's print bits whatever the
    calibration (MinMax, percentile, entropy: 70-77 % agreement); kept in FP32, 98.6-98.9 % agree."""
    import onnx

    graph = onnx.load(str(model_path)).graph
    producer = {o: n for n in graph.node for o in n.output}
    readers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    keep = set()
    for n in graph.node:
        if n.op_type != "Softmax":
            continue
        keep.add(n.name)
        chain: list[str] = []
        before = producer.get(n.input[0])  # back through the scaling (Mul, Div ...) to the conv
        while before is not None and before.op_type in ("Mul", "Div", "Add", "Sub", "Identity") and len(chain) < 4:
            chain.append(before.name)
            before = producer.get(before.input[0])
        if before is not None and before.op_type == "Conv":
            keep.update(chain + [before.name])
        keep.update(r.name for r in readers.get(n.output[0], []) if r.op_type == "Conv")
    return sorted(keep)


THRESHOLD_FARS = (1e-4, 1e-3, 1e-2)


def validation_thresholds(model: Any, config: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], dict[str, dict]]:
    """Per mode, the largest Hamming distance accepted at each target FAR, chosen on the run's validation split
    (never on test data): a deployment stores these with the model; and per mode the genuine and impostor pair
    counts they rest on, and the distinct impostor palm pairs (captures of one pair of palms fail together, so
    FAR f rests on about f x palm pairs independent false accepts)."""
    from biohash.match import metrics
    from biohash.train.data.config import DataConfig, open_split
    from biohash.train.evaluate import evaluate

    data = DataConfig(**config["data"])
    dataset, split = open_split(data)
    if not split.val_probe:
        return {}, {}
    scores, _ = evaluate(model, dataset, split.val_gallery, split.val_probe, data.image_size,
                         floats=bool(model.modalities))
    out: dict[str, dict[str, Any]] = {}
    pairs: dict[str, dict] = {}
    for mode, s in scores.items():
        if s.genuine.size and s.impostor.size and not mode.endswith("-float"):  # floats are never stored
            # similarity = 1 - d / bits, accepted when >= threshold, so d <= (1 - threshold) * bits (Hamming: whole
            # bits; "-asym" modes: asymmetric distances in bits, to a thousandth of a bit)
            # None where no threshold reaches the FAR on validation (too few impostor pairs to tell)
            step = 1000 if mode.endswith("-asym") else 1
            out[mode] = {}
            probes, enrolled = set(s.probe_ids.tolist()), set(s.gallery_ids.tolist())
            pairs[mode] = {"genuine": int(s.genuine.size), "impostor": int(s.impostor.size),
                           "impostor_palm_pairs": len(probes) * len(enrolled) - len(probes & enrolled)}
            for far in THRESHOLD_FARS:
                t = metrics.threshold_at_far(s.genuine, s.impostor, far)
                d = np.floor((1 - t) * model.bits * step + 1e-6) / step
                out[mode][f"{far:g}"] = (float(d) if step > 1 else int(d)) if np.isfinite(t) else None
    return out, pairs


def export_run(run_dir: Path, fmt: str = "onnx", calibration: str = "synthetic") -> dict[str, Any]:
    """Write RUN/export/ (bundle.json, weights.pt, MODALITY.onnx, with fmt onnx-int8 also MODALITY.int8.onnx,
    calibrated on `calibration` images). Returns the bundle's metadata; encoder.check_bundle compares the
    ONNX models with torch."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; expected one of: {', '.join(FORMATS)}")
    if fmt != "torch":
        import importlib.util

        missing = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
        if missing:
            raise RunError(f"--format {fmt} needs {' and '.join(missing)}: pip install -e '.[export]' (or "
                           f"--format torch for a bundle without ONNX)")
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    model, build_config, notes = float_model(run_dir, config)
    out = run_dir / "export"
    out.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    torch.save(state, out / "weights.pt")
    size = config["data"]["image_size"]
    thresholds, pairs = validation_thresholds(model, config)
    bundle: dict[str, Any] = {
        "format_version": 1, "run": run_dir.name, "recipe": config["recipe"], "build_config": build_config,
        "modalities": list(model.modalities), "bits": int(model.bits), "image_size": size,
        "preprocessing": PREPROCESSING, "fingerprint": fingerprint(state, int(model.bits)),
        "centroids": hasattr(model, "centroids"), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "onnx": {}, "checks": {}, "thresholds": thresholds, "threshold_pairs": pairs,
        "thresholds_from": "validation split of the run's protocol: max distance accepted per target FAR (Hamming; "
                           "'-asym' modes: asymmetric distance in bits)",
        **notes,
    }
    for m in model.modalities:
        if fmt == "torch":
            continue
        files = {"onnx": f"{m}.onnx"}
        _onnx(_Branch(model.net(m)).eval(), size, out / files["onnx"])
        if fmt == "onnx-int8":
            images = calibration_images(config, m, calibration)
            files["onnx-int8"] = f"{m}.int8.onnx"
            _int8(out / files["onnx"], out / files["onnx-int8"], images)
        bundle["onnx"][m] = files
    (out / "bundle.json").write_text(json.dumps(bundle, indent=2))
    return bundle
