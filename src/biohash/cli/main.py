"""The general commands of `biohash` (synth, quantize, export, roi, eval, demo, datasets);
the other groups register from cli.train, cli.deploy and cli.zoo. Heavy imports (torch) happen inside commands."""
from __future__ import annotations

from pathlib import Path

import typer

from biohash.cli.app import _drop_none, _finish, _friendly, _options, app
from biohash.errors import BiohashError


@app.command()
@_friendly
def synth(out: Path = typer.Argument(..., metavar="OUT", help="output folder: OUT/IDENTITY/MODALITY/CAPTURE.png"),
          identities: int = typer.Option(10, help="number of palms"),
          captures: int = typer.Option(6, help="captures per palm and modality"),
          seed: int = typer.Option(0), size: int = typer.Option(128, help="image side in pixels")) -> None:
    """Write synthetic palm print + vein images and a contact sheet (no torch needed; OpenCV draws them)."""
    import importlib.util

    if importlib.util.find_spec("cv2") is None:
        raise BiohashError("biohash synth draws palms with OpenCV, which this install lacks: pip install "
                           "'biohash[export]' (OpenCV and ONNX Runtime, no torch) or 'biohash[train]'")
    from biohash.train.data.synth_export import export_synthetic

    sheet = export_synthetic(out, identities, captures, seed, size)
    typer.echo(f"wrote {identities * captures * 2} images to {out}; contact sheet {sheet}")


_ROOT = typer.Option(None, help="dataset folder (real databases)")
_OPT = typer.Option(None, "--option", "-o", help="dataset adapter option KEY=VALUE")
_DEVICE = typer.Option("auto", help="auto (a GPU where torch sees one), cpu, cuda, cuda:N or mps")
_NAME = typer.Option(None, "--name", "--comment", help="run name (folder under --runs)")


@app.command()
@_friendly
def quantize(
    run: Path = typer.Argument(..., metavar="RUN", help="trained hashing run (cohash, dhn or distill) to quantize"),
    bits: int = typer.Option(8, help="weight and activation bits (8, 6, 4 ...)"),
    data: str = typer.Option("synthetic", "--data", help="unlabeled images: synthetic, folder or real"),
    look: str | None = typer.Option(None, help="synthetic look, print or vein (default: each branch's own)"),
    root: str | None = typer.Option(None, help="folder of unlabeled images for --data folder"),
    images: int = typer.Option(2000, help="unlabeled images per modality branch"),
    ptq: bool = typer.Option(False, "--ptq", help="post-training calibration only (the baseline), no distillation"),
    epochs: int = typer.Option(10), batch_size: int = typer.Option(64, "--batch-size", "-b"),
    lr: float = typer.Option(2e-3, help="SGD (Nesterov) learning rate at batch 64; scaled with the batch"),
    seed: int = typer.Option(0), name: str | None = _NAME, device: str = _DEVICE,
    amp: str = typer.Option("off", help="mixed precision: off, bf16 or fp16 (GPU)"),
) -> None:
    """Quantize a trained run by embedding-level distillation on unlabeled (by default synthetic) images."""
    from biohash.train.fit import FitConfig
    from biohash.train.quantize_job import quantize_run
    from biohash.train.recipes.quantize import QuantizeConfig

    method = QuantizeConfig(bits=bits, source=data, look=look, root=root, images=images)
    fit_cfg = None if ptq else FitConfig(epochs=epochs, batch_size=batch_size, lr=lr * batch_size / 64,
                                         optimizer="sgd", schedule="cosine", warmup_epochs=0, seed=seed,
                                         device=device, amp=amp)
    out = run.parent / (name or f"{run.name}-{'ptq' if ptq else 'qat'}-w{bits}-{data}")
    quantize_run(run, out, method, fit_cfg)
    _finish(out, device)


@app.command()
@_friendly
def export(
    run: Path = typer.Argument(..., metavar="RUN", help="trained hashing run"),
    format: str = typer.Option("onnx", "--format", help="onnx, onnx-int8 (static INT8, onnxruntime) or torch (weights and bundle.json only)"),
    calibration: str = typer.Option("synthetic", help="INT8 calibration images: synthetic or real (the run's "
                                    "training images)"),
    min_agreement: float = typer.Option(97.0, help="least % of code bits an ONNX model must share with torch; "
                                        "below it the export fails and the model is refused by encoders"),
    device: str = typer.Option("cpu", help="where the torch reference runs in the export check (auto, cpu, "
                               "cuda, cuda:N, mps)"),
) -> None:
    """Write the run's artifact bundle (weights, config, metadata, preprocessing) and ONNX models under
    RUN/export/, and check them against torch."""
    from biohash.serve.encoder import check_bundle
    from biohash.train.export import export_run

    bundle = export_run(run, fmt=format, calibration=calibration)
    typer.echo(f"bundle: {run / 'export'}  fingerprint {bundle['fingerprint']}")
    _say_threshold_support(bundle)
    checks = check_bundle(run, source=calibration, min_agreement=min_agreement / 100, device=device)
    for key, check in checks.items():
        typer.echo(f"{key}: max |embedding diff| {check['max_abs_embedding_diff']:.2e}, "
                   f"bit agreement with torch {100 * check['bit_agreement']:.2f} %, "
                   f"{check['ms_per_image_batch1']:.1f} ms an image at batch 1 (torch "
                   f"{check['torch_ms_per_image_batch1']:.1f} ms)")
    failed = [f"{k} {100 * c['bit_agreement']:.1f} %" for k, c in checks.items() if not c["passed"]]
    if failed:
        raise BiohashError(f"export check failed: {', '.join(failed)} of code bits agree with torch, under the "
                         f"{min_agreement:g} % required; encoders refuse these models (try --calibration real, "
                         f"or deploy --backend onnx)")


def _say_threshold_support(bundle: dict) -> None:
    """One line per target FAR whose thresholds rest on fewer than 10 / FAR impostor palm pairs of the validation
    palms (captures of one pair of palms err together): on new palms such a threshold accepts impostors at
    several times its FAR (measured: 3-9x at FAR 1e-3 on 156 and 1,122 palm pairs, bench/deployed_palm.py)."""
    pairs = bundle.get("threshold_pairs", {})
    if not pairs:
        return
    fewest = min(p.get("impostor_palm_pairs", p["impostor"]) for p in pairs.values())
    for far in sorted({float(f) for t in bundle.get("thresholds", {}).values() for f in t}):
        if fewest * far < 10:
            typer.echo(f"note: the FAR {far:g} thresholds rest on {fewest:,} impostor palm pairs of the validation "
                       f"palms (10 / FAR = {10 / far:,.0f} would pin them): expect more impostors accepted on new "
                       f"palms than the FAR says; more validation palms give firmer thresholds")


@app.command()
@_friendly
def roi(src: Path = typer.Argument(..., metavar="SRC", help="folder of hand photos (searched recursively)"),
        out: Path = typer.Argument(..., metavar="OUT", help="output folder: ROIs as PNG, contact_sheet.png, failures.json"),
        method: str = typer.Option("valley", help="valley (plain dark background), keypoints (14 points in "
                                   "STEM.txt/.json beside each photo) or landmarks (MediaPipe, optional extra)"),
        size: int = typer.Option(128, help="ROI side in pixels")) -> None:
    """Cut palm ROIs from hand photos; failures are listed with their reason, never cropped silently."""
    from biohash.train.data.roi_batch import extract_folder

    counts = extract_folder(src, out, method, size)
    if counts["rois"] == 0:
        raise BiohashError(f"no ROI could be cut from the {counts['images']} images under {src}: reasons in "
                         f"{out / 'failures.json'}, photos in {out / 'contact_sheet.png'}")
    pages = f" (+{counts['sheets'] - 1} more pages)" if counts["sheets"] > 1 else ""
    typer.echo(f"{counts['rois']}/{counts['images']} ROIs written to {out}; {counts['failures']} failures "
               f"(failures.json); contact sheet {out / 'contact_sheet.png'}{pages}")


@app.command("eval")
@_friendly
def eval_run(run: Path = typer.Argument(..., metavar="RUN", help="run folder made by `biohash train`"),
             protocol: str | None = typer.Option(None, help="must match the run's protocol; with --ds/--root: all "
                                                 "scores every identity of the other folder"),
             split: str = typer.Option("test", help="test or val"),
             dataset: str | None = typer.Option(None, "--dataset", "--ds",
                                                help="cross-domain: evaluate on this dataset's test split instead"),
             root: str | None = _ROOT, option: list[str] | None = _OPT,
             aspect: str | None = typer.Option(None, help="cross-domain on 11K: the aspect to test on"),
             test_shifts: int | None = typer.Option(None, help="encode as if trained with --test-shifts N (average "
                                                    "the embeddings of 4 copies rolled N pixels); 0 = off"),
             test_views: str | None = typer.Option(None, help="with --test-shifts: cross (the image and 4 axis "
                                                   "rolls) or square (the 3 x 3 grid of rolls)"),
             device: str = _DEVICE) -> None:
    """Evaluate a run in all modes: metrics.json, score files, ROC/DET/CMC plots and report.md. With --dataset
    (or --aspect), evaluate the trained model on another domain's test identities (cross-domain)."""
    from biohash.train.data.config import DataConfig
    from biohash.train.eval_run import evaluate_run
    from biohash.train.runs import read_config

    if split not in ("test", "val"):
        raise BiohashError(f"unknown split {split!r}; expected test or val")
    target = None
    if dataset is not None or aspect is not None:
        from biohash.train.data.datasets import DATASETS

        source = read_config(run)["data"]
        same_adapter = dataset is None or DATASETS.canonical(dataset) == source["dataset"]
        options = {**(source["options"] if same_adapter else {}), **_options(option)}  # inherited unless overridden
        if "colour" in source["options"]:
            options.setdefault("colour", source["options"]["colour"])
        if aspect is not None:
            options.update(aspects=aspect, accessories="exclude")
        target = DataConfig(**_drop_none(dataset=dataset or source["dataset"], root=root if dataset else
                                         (root or source["root"]), protocol=protocol or source["protocol"],
                                         seed=source["seed"]), options=options)
    elif root is not None:
        raise BiohashError("--root needs --ds (the adapter of the other folder, e.g. --ds casiam --root OTHER)")
    per_mode = evaluate_run(run, protocol=protocol if target is None else None, split_name=split, target=target,
                            device=device, test_shifts=test_shifts, test_views=test_views)
    _print_evaluation(run, per_mode)


def _print_evaluation(run: Path, per_mode: dict) -> None:
    """eval's table (per database for a joined run), a warning for a half-trained run, where the report is."""
    import json

    from biohash.train.report import markdown_table

    summary = json.loads((run / "metrics.json").read_text())
    for name, part in summary.get("databases", {}).items():  # a joined run: each database apart
        typer.echo(f"\n{name} ({part['protocol']} set, {part['identities']} identities)")
        typer.echo(markdown_table(part["modes"]))
    if not summary.get("databases"):
        typer.echo(markdown_table(per_mode))
    unfinished = summary.get("training")
    if unfinished:
        typer.echo(f"warning: training {unfinished}", err=True)
    typer.echo(f"report: {run / 'report.md'} and report.html (scores, plots and metrics.json under {run / 'eval'})")


@app.command()
@_friendly
def demo(runs: Path = typer.Option(Path("runs"), help="folder for the demo run"),
         name: str = typer.Option("demo", help="run name"),
         epochs: int = typer.Option(10), identities: int = typer.Option(1000, help="synthetic palms (70 % train)"),
         bits: int = typer.Option(64), seed: int = typer.Option(0),
         fresh: bool = typer.Option(True, help="replace an earlier demo run of the same name"),
         resume: bool = typer.Option(False, "--resume", help="continue a stopped demo run from its last "
                                     "checkpoint (the same as --no-fresh)"),
         backbone: str = typer.Option("compnet_lite", "--backbone", "--model", help="registered backbone"),
         init: str = typer.Option("zoo:compnet_lite-128", help="warm start (a zoo:NAME or run folder); none = "
                                  "random initialisation")) -> None:
    """Train and evaluate co-hashing on synthetic palms (identity-disjoint open set); print all four modes."""
    from biohash.cli.demo import run_demo

    run_demo(runs / name, epochs=epochs, identities=identities, bits=bits, seed=seed, fresh=fresh and not resume,
             backbone=backbone, init=None if init.lower() == "none" else init)


@app.command()
def datasets() -> None:
    """List the dataset adapters: name (aliases), what and which layout they read, and their options."""
    import inspect

    from biohash.train.data.datasets import DATASETS  # importing biohash.train.data registers every adapter
    for name in DATASETS.names():
        factory = DATASETS.get(name)
        aliases = DATASETS.aliases(name)
        doc = inspect.getdoc(factory) or ""
        typer.echo(f"{name}{' (' + ', '.join(aliases) + ')' if aliases else ''}")
        for line in doc.splitlines():
            typer.echo(f"    {line}".rstrip())
        options = [f"{p.name}={p.default!r}" for p in inspect.signature(factory).parameters.values()
                   if p.default is not inspect.Parameter.empty]
        typer.echo(f"    options: {', '.join(options) or 'none'}\n")
