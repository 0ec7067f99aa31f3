"""The `biohash` command line (typer). Heavy imports (torch) happen inside commands, so --help is instant."""
from __future__ import annotations

from pathlib import Path

import typer

from biohash.cli_app import _dflt, _drop_none, _friendly, _options, app, train_app


@app.command()
@_friendly
def synth(out: Path = typer.Argument(..., help="output folder: OUT/IDENTITY/MODALITY/CAPTURE.png"),
          identities: int = typer.Option(10, help="number of palms"),
          captures: int = typer.Option(6, help="captures per palm and modality"),
          seed: int = typer.Option(0), size: int = typer.Option(128, help="image side in pixels")) -> None:
    """Write synthetic palm print + vein images and a contact sheet (no torch needed)."""
    from biohash.data.synth_export import export_synthetic

    sheet = export_synthetic(out, identities, captures, seed, size)
    typer.echo(f"wrote {identities * captures * 2} images to {out}; contact sheet {sheet}")


@train_app.command("cohash")
@_friendly
def train_cohash(
    dataset: str = typer.Option("synthetic", "--dataset", "--ds", help="registered dataset name"),
    root: str | None = typer.Option(None, help="dataset folder (real databases)"),
    option: list[str] | None = typer.Option(None, "--option", "-o",
                                               help="dataset adapter option KEY=VALUE, e.g. bands=940"),
    bits: int | None = _dflt('64', help="code length: 16, 32, 64, 128 or 256"),
    backbone: str | None = _dflt('small', "--backbone", "--model", help="registered backbone (small, res18, ...)"),
    weights: str | None = typer.Option(None, help="backbone weights: a local file, or imagenet (packaged "
                                       "with efficientnet_lite0)"),
    init: str | None = typer.Option(None, help="warm start: a trained run folder, or a shipped model zoo:NAME "
                                    "(biohash zoo lists them)"),
    batch_size: int | None = _dflt('64', "--batch-size", "-b"),
    epochs: int | None = _dflt('20', "--epochs", "--epoch"),
    lr: float | None = _dflt('0.01'),
    optimizer: str | None = _dflt('adamw', help="adamw or sgd"),
    schedule: str | None = _dflt('cosine', help="cosine, step or constant"),
    loss: str | None = _dflt('csq', help="csq (per-bit centroid + softmax, default) or arcface (angular "
                                    "margin to the identity centroids)"),
    arc_scale: float | None = _dflt('30.0', help="ArcFace scale s (30)"),
    arc_margin: float | None = _dflt('0.5', help="ArcFace margin m in radians (0.5)"),
    lambda_supcon: float | None = _dflt('0.0', help="supervised contrastive weight (0; CCNet: 0.2)"),
    lambda_quant: float | None = _dflt('0.05'), lambda_cross: float | None = _dflt('0.5'),
    lambda_softmax: float | None = _dflt('1.0', help="centroid-softmax weight (ours; 0 = paper's loss)"),
    share: str | None = _dflt('head', help="none (paper: two sub-networks), head (one hash layer, default) "
                                        "or all (one network)"),
    dropout: float | None = _dflt('0.2', help="dropout before the hash layer"),
    protocol: str | None = _dflt('open', help="open (identity-disjoint, default) or closed"),
    val_fraction: float | None = _dflt('0.1', help="open set: share of identities that choose the "
                                              "checkpoint (0.1)"),
    test_fraction: float | None = _dflt('0.3', help="open set: share of identities held out for test (0.3); "
                                               "0 trains on all others (test later on another folder)"),
    on_roi_failure: str | None = typer.Option(None, help="photos whose ROI cannot be cut: skip (default: left "
                                              "out and listed) or fail"),
    identities: int | None = _dflt('200', help="synthetic: number of palms"),
    captures: int | None = _dflt('8', help="synthetic: captures per palm and modality"),
    image_size: int | None = _dflt('128', "--image-size"),
    seed: int | None = _dflt('0'),
    name: str | None = typer.Option(None, "--name", "--comment", help="run name (folder under --runs)"),
    runs: Path = typer.Option(Path("runs"), help="folder holding run folders"),
    resume: bool = typer.Option(False, help="continue an interrupted run of the same name"),
    threads: int | None = typer.Option(None, help="torch CPU threads"),
) -> None:
    """Train PalmCohashNet: one hashing network per modality towards shared identity centroids."""
    from biohash.data.config import DataConfig
    from biohash.jobs import evaluate_run
    from biohash.jobs import train_cohash as run_training
    from biohash.recipes.cohash import CohashConfig
    from biohash.report import markdown_table
    from biohash.runs import run_name
    from biohash.train import FitConfig

    options = {**_drop_none(on_roi_failure=on_roi_failure), **_options(option)}
    data = DataConfig(**_drop_none(dataset=dataset, root=root, identities=identities, captures=captures,
                                   image_size=image_size, protocol=protocol, seed=seed, val_fraction=val_fraction,
                                   test_fraction=test_fraction), options=options)
    method = CohashConfig(**_drop_none(backbone=backbone, bits=bits, weights=weights, init=init, loss=loss,
                                       arc_scale=arc_scale, arc_margin=arc_margin, lambda_supcon=lambda_supcon,
                                       lambda_quant=lambda_quant,
                                       lambda_cross=lambda_cross, lambda_softmax=lambda_softmax,
                                       share=share, dropout=dropout))
    fit_cfg = FitConfig(**_drop_none(epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
                                     schedule=schedule, seed=seed))
    run_dir = runs / (name or run_name("cohash"))
    run_training(run_dir, data, method, fit_cfg, resume=resume, threads=threads)
    if data.protocol == "open" and data.test_fraction == 0:
        typer.echo(f"run folder: {run_dir} (no test identities: evaluate on another folder of people with "
                   f"biohash eval {run_dir} --ds {data.dataset} --root OTHER --protocol all)")
        return
    per_mode = evaluate_run(run_dir)
    typer.echo(markdown_table(per_mode))
    typer.echo(f"run folder: {run_dir}")


def _data_and_fit(dataset, root, option, protocol, identities, captures, image_size, seed, epochs, batch_size, lr):
    from biohash.data.config import DataConfig
    from biohash.train import FitConfig

    data = DataConfig(**_drop_none(dataset=dataset, root=root, identities=identities, captures=captures,
                                   image_size=image_size, protocol=protocol, seed=seed), options=_options(option))
    fit_cfg = FitConfig(**_drop_none(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed))
    return data, fit_cfg


def _finish(run_dir: Path) -> None:
    from biohash.jobs import evaluate_run
    from biohash.report import markdown_table

    typer.echo(markdown_table(evaluate_run(run_dir)))
    typer.echo(f"run folder: {run_dir}")


_DS = typer.Option("synthetic", "--dataset", "--ds", help="registered dataset name")
_ROOT = typer.Option(None, help="dataset folder (real databases)")
_OPT = typer.Option(None, "--option", "-o", help="dataset adapter option KEY=VALUE")
_NAME = typer.Option(None, "--name", "--comment", help="run name (folder under --runs)")


@train_app.command("dhn")
@_friendly
def train_dhn(
    dataset: str = _DS, root: str | None = _ROOT, option: list[str] | None = _OPT,
    modality: str | None = typer.Option(None, help="which images to hash (default: the dataset's first)"),
    bits: int | None = typer.Option(None, help="code length (paper: 128)"),
    backbone: str | None = typer.Option(None, "--backbone", "--model", help="registered backbone (default vgg16)"),
    weights: str | None = typer.Option(None, help="backbone weights file (e.g. torchvision vgg16) or imagenet"),
    margin: float | None = typer.Option(None, help="pairwise margin t (default 180 * bits / 128)"),
    w_quant: float | None = typer.Option(None, help="quantization weight w (paper 0.5)"),
    freeze_blocks: int | None = typer.Option(None, help="VGG-16 conv blocks frozen when weights are given (4)"),
    loss: str | None = typer.Option(None, help="identity term: softmax (paper) or arcface (angular margin)"),
    lambda_supcon: float | None = typer.Option(None, help="supervised contrastive weight (0)"),
    batch_size: int | None = typer.Option(None, "--batch-size", "-b"),
    epochs: int | None = typer.Option(None, "--epochs", "--epoch"), lr: float | None = typer.Option(None),
    protocol: str | None = typer.Option(None, help="open (identity-disjoint, default) or closed"),
    identities: int | None = typer.Option(None, help="synthetic: number of palms"),
    captures: int | None = typer.Option(None, help="synthetic: captures per palm"),
    image_size: int | None = typer.Option(None, "--image-size"), seed: int | None = typer.Option(None),
    name: str | None = _NAME, runs: Path = typer.Option(Path("runs")), resume: bool = typer.Option(False),
) -> None:
    """Train the distilled-hashing teacher (DHN): VGG-16 + tanh hash layer, pairwise + quantization loss."""
    from biohash.jobs import train_hashing
    from biohash.recipes.dhn import DhnConfig
    from biohash.runs import run_name

    data, fit_cfg = _data_and_fit(dataset, root, option, protocol, identities, captures, image_size, seed, epochs,
                                  batch_size, lr)
    method = DhnConfig(**_drop_none(backbone=backbone, bits=bits, weights=weights, margin=margin, w_quant=w_quant,
                                    freeze_blocks=freeze_blocks, loss=loss, lambda_supcon=lambda_supcon))
    run_dir = runs / (name or run_name("dhn"))
    train_hashing(run_dir, data, "dhn", method, fit_cfg, modality=modality, resume=resume)
    _finish(run_dir)


@train_app.command("distill")
@_friendly
def train_distill(
    teacher: Path = typer.Option(..., help="the DHN teacher's run folder"),
    dataset: str | None = typer.Option(None, "--dataset", "--ds", help="default: the teacher's dataset"),
    root: str | None = _ROOT, option: list[str] | None = _OPT,
    backbone: str | None = typer.Option(None, "--backbone", "--model", help="student backbone (default student)"),
    alpha: float | None = typer.Option(None, help="code L2 weight (paper 5)"),
    beta: float | None = typer.Option(None, help="soft-target weight in L_v (paper 10)"),
    m: float | None = typer.Option(None, help="label cross-entropy weight in L_c (paper 0.2)"),
    n: float | None = typer.Option(None, help="soft-target weight in L_c (paper 0.8)"),
    batch_size: int | None = typer.Option(None, "--batch-size", "-b"),
    epochs: int | None = typer.Option(None, "--epochs", "--epoch"), lr: float | None = typer.Option(None),
    seed: int | None = typer.Option(None), name: str | None = _NAME, runs: Path = typer.Option(Path("runs")),
    resume: bool = typer.Option(False),
) -> None:
    """Distil a DHN teacher into the light student (2 conv + FC-512 + FC-bits), teacher frozen."""
    from biohash.data.config import DataConfig
    from biohash.jobs import train_hashing
    from biohash.recipes.distill import DistillConfig
    from biohash.runs import read_config, run_name

    t_data = dict(read_config(teacher)["data"])  # same data and protocol as the teacher unless told otherwise
    if dataset is not None:
        t_data.update(dataset=dataset, root=root, options=_options(option))
    data = DataConfig(**t_data)
    _, fit_cfg = _data_and_fit(data.dataset, None, None, None, None, None, None, seed, epochs, batch_size, lr)
    method = DistillConfig(**_drop_none(teacher=str(teacher), backbone=backbone, alpha=alpha, beta=beta, m=m, n=n))
    run_dir = runs / (name or run_name("distill"))
    train_hashing(run_dir, data, "distill", method, fit_cfg, resume=resume)
    _finish(run_dir)


@train_app.command("gpa")
@_friendly
def train_gpa(
    dataset: str = typer.Option("11k-hands", "--dataset", "--ds", help="whole-hand dataset (11k-hands, hd, folder)"),
    root: str | None = _ROOT, option: list[str] | None = _OPT,
    aspect: str | None = typer.Option(None, help="11K aspect: dorsal-right, dorsal-left, palmar-right, palmar-left"),
    backbone: str | None = typer.Option(None, "--backbone", "--model", help="registered backbone (default resnet50)"),
    weights: str | None = typer.Option(None, help="backbone weights file (e.g. torchvision resnet50)"),
    horizontal: int | None = typer.Option(None, help="horizontal parts Hp (2)"),
    vertical: int | None = typer.Option(None, help="vertical parts Vp (2)"),
    part_weight: float | None = typer.Option(None, help="lambda, weight of the part losses (1)"),
    global_branch: bool = typer.Option(True, "--global/--no-global", help="--no-global: local-only ablation"),
    bits: int | None = typer.Option(None, help="add a hash head with this many bits (binary codes for matching)"),
    batch_size: int = typer.Option(20, "--batch-size", "-b"),
    epochs: int = typer.Option(60, "--epochs", "--epoch"), lr: float = typer.Option(0.02),
    image_size: int | None = typer.Option(None, "--image-size", help="input side (paper 384; default 128)"),
    protocol: str = typer.Option("11k", help="11k or hd (the paper's), open or closed"),
    seed: int = typer.Option(0, help="also picks the protocol's random draw (the paper repeats 10)"),
    name: str | None = _NAME, runs: Path = typer.Option(Path("runs")), resume: bool = typer.Option(False),
) -> None:
    """Train GPA-Net (global + horizontal/vertical part branches) for whole-hand identification."""
    from biohash.data.config import DataConfig
    from biohash.jobs import train_gpa as run_training
    from biohash.recipes.gpa import GpaConfig
    from biohash.runs import run_name
    from biohash.train import FitConfig

    options = {"colour": True, **_options(option)}
    if aspect is not None:
        options.update(aspects=aspect, accessories="exclude")  # the paper leaves out images with accessories
    data = DataConfig(**_drop_none(dataset=dataset, root=root, image_size=image_size, protocol=protocol, seed=seed),
                      options=options)
    method = GpaConfig(**_drop_none(backbone=backbone, weights=weights, horizontal=horizontal, vertical=vertical,
                                    part_weight=part_weight, bits=bits), global_branch=global_branch)
    fit_cfg = FitConfig(epochs=epochs, batch_size=batch_size, lr=lr, optimizer="sgd", schedule="step",
                        warmup_epochs=0, seed=seed)
    run_dir = runs / (name or run_name("gpa"))
    run_training(run_dir, data, method, fit_cfg, resume=resume)
    _finish(run_dir)


@app.command()
@_friendly
def quantize(
    run: Path = typer.Argument(..., help="trained hashing run (cohash, dhn or distill) to quantize"),
    bits: int = typer.Option(8, help="weight and activation bits (8, 6, 4 ...)"),
    data: str = typer.Option("synthetic", "--data", help="unlabeled images: synthetic, folder or real"),
    look: str | None = typer.Option(None, help="synthetic look, print or vein (default: each branch's own)"),
    root: str | None = typer.Option(None, help="folder of unlabeled images for --data folder"),
    images: int = typer.Option(2000, help="unlabeled images per modality branch"),
    ptq: bool = typer.Option(False, "--ptq", help="post-training calibration only (the baseline), no distillation"),
    epochs: int = typer.Option(10), batch_size: int = typer.Option(64, "--batch-size", "-b"),
    lr: float = typer.Option(2e-3, help="SGD (Nesterov) learning rate at batch 64; scaled with the batch"),
    seed: int = typer.Option(0), name: str | None = _NAME,
) -> None:
    """Quantize a trained run by embedding-level distillation on unlabeled (by default synthetic) images."""
    from biohash.jobs import quantize_run
    from biohash.recipes.quantize import QuantizeConfig
    from biohash.train import FitConfig

    method = QuantizeConfig(bits=bits, source=data, look=look, root=root, images=images)
    fit_cfg = None if ptq else FitConfig(epochs=epochs, batch_size=batch_size, lr=lr * batch_size / 64,
                                         optimizer="sgd", schedule="cosine", warmup_epochs=0, seed=seed)
    out = run.parent / (name or f"{run.name}-{'ptq' if ptq else 'qat'}-w{bits}-{data}")
    quantize_run(run, out, method, fit_cfg)
    _finish(out)


@app.command()
@_friendly
def export(
    run: Path = typer.Argument(..., help="trained hashing run"),
    format: str = typer.Option("onnx", "--format", help="onnx, onnx-int8 (static INT8, onnxruntime) or torch (weights and bundle.json only)"),
    calibration: str = typer.Option("synthetic", help="INT8 calibration images: synthetic or real (the run's "
                                    "training images)"),
    min_agreement: float = typer.Option(97.0, help="least % of code bits an ONNX model must share with torch; "
                                        "below it the export fails and the model is refused by encoders"),
) -> None:
    """Write the run's artifact bundle (weights, config, metadata, preprocessing) and ONNX models under
    RUN/export/, and check them against torch."""
    from biohash.encoder import check_bundle
    from biohash.export import export_run

    bundle = export_run(run, fmt=format, calibration=calibration)
    typer.echo(f"bundle: {run / 'export'}  fingerprint {bundle['fingerprint']}")
    checks = check_bundle(run, source=calibration, min_agreement=min_agreement / 100)
    for key, check in checks.items():
        typer.echo(f"{key}: max |embedding diff| {check['max_abs_embedding_diff']:.2e}, "
                   f"bit agreement with torch {100 * check['bit_agreement']:.2f} %")
    failed = [f"{k} {100 * c['bit_agreement']:.1f} %" for k, c in checks.items() if not c["passed"]]
    if failed:
        raise ValueError(f"export check failed: {', '.join(failed)} of code bits agree with torch, under the "
                         f"{min_agreement:g} % required; encoders refuse these models (try --calibration real, "
                         f"or deploy --backend onnx)")


@app.command()
@_friendly
def roi(src: Path = typer.Argument(..., help="folder of hand photos (searched recursively)"),
        out: Path = typer.Argument(..., help="output folder: ROIs as PNG, contact_sheet.png, failures.json"),
        method: str = typer.Option("valley", help="valley (plain dark background), keypoints (14 points in "
                                   "STEM.txt/.json beside each photo) or landmarks (MediaPipe, optional extra)"),
        size: int = typer.Option(128, help="ROI side in pixels")) -> None:
    """Cut palm ROIs from hand photos; failures are listed with their reason, never cropped silently."""
    from biohash.data.roi_batch import extract_folder

    counts = extract_folder(src, out, method, size)
    if counts["rois"] == 0:
        raise ValueError(f"no ROI could be cut from the {counts['images']} images under {src}: reasons in "
                         f"{out / 'failures.json'}, photos in {out / 'contact_sheet.png'}")
    pages = f" (+{counts['sheets'] - 1} more pages)" if counts["sheets"] > 1 else ""
    typer.echo(f"{counts['rois']}/{counts['images']} ROIs written to {out}; {counts['failures']} failures "
               f"(failures.json); contact sheet {out / 'contact_sheet.png'}{pages}")


@app.command("eval")
@_friendly
def eval_run(run: Path = typer.Argument(..., help="run folder made by `biohash train`"),
             protocol: str | None = typer.Option(None, help="must match the run's protocol; with --ds/--root: all "
                                                 "scores every identity of the other folder"),
             split: str = typer.Option("test", help="test or val"),
             dataset: str | None = typer.Option(None, "--dataset", "--ds",
                                                help="cross-domain: evaluate on this dataset's test split instead"),
             root: str | None = _ROOT, option: list[str] | None = _OPT,
             aspect: str | None = typer.Option(None, help="cross-domain on 11K: the aspect to test on")) -> None:
    """Evaluate a run in all modes: metrics.json, score files, ROC/DET/CMC plots and report.md. With --dataset
    (or --aspect), evaluate the trained model on another domain's test identities (cross-domain)."""
    from biohash.data.config import DataConfig
    from biohash.jobs import evaluate_run
    from biohash.report import markdown_table
    from biohash.runs import read_config

    if split not in ("test", "val"):
        raise ValueError(f"unknown split {split!r}; expected test or val")
    target = None
    if dataset is not None or aspect is not None:
        from biohash.data.datasets import DATASETS

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
        raise ValueError("--root needs --ds (the adapter of the other folder, e.g. --ds casiam --root OTHER)")
    per_mode = evaluate_run(run, protocol if target is None else None, split, target=target)
    typer.echo(markdown_table(per_mode))
    typer.echo(f"report: {run / 'report.md'} (scores, plots and metrics.json under {run / 'eval'})")


@app.command()
@_friendly
def demo(runs: Path = typer.Option(Path("runs"), help="folder for the demo run"),
         name: str = typer.Option("demo", help="run name"),
         epochs: int = typer.Option(10), identities: int = typer.Option(1000, help="synthetic palms (70 % train)"),
         bits: int = typer.Option(64), seed: int = typer.Option(0),
         fresh: bool = typer.Option(True, help="replace an earlier demo run of the same name"),
         backbone: str = typer.Option("compnet_lite", "--backbone", "--model", help="registered backbone"),
         init: str = typer.Option("zoo:compnet_lite-128", help="warm start (a zoo:NAME or run folder); none = "
                                  "random initialisation")) -> None:
    """Train and evaluate co-hashing on synthetic palms (identity-disjoint open set); print all four modes."""
    from biohash.jobs import run_demo

    run_demo(runs / name, epochs=epochs, identities=identities, bits=bits, seed=seed, fresh=fresh,
             backbone=backbone, init=None if init.lower() == "none" else init)


# registers enroll, verify, identify, delete, serve (cli_deploy) and pretrain, zoo (cli_zoo)
from biohash import cli_deploy, cli_zoo  # noqa: E402,F401  (they register on app)

if __name__ == "__main__":  # python -m biohash.cli: run the imported module's app, which has every command
    from biohash.cli import app as registered

    registered()
