"""End-to-end jobs the CLI runs: train a co-hashing run, evaluate a run, the demo. Sits above both stacks."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from biohash.data.config import DataConfig, open_split
from biohash.eval_run import _note_skipped, evaluate_run  # noqa: F401  (evaluate_run: re-exported)
from biohash.restore import load_model
from biohash.runs import RunError, environment, read_config, write_config, write_json
from biohash.train import FitConfig

console = Console()


def _clip_batch(fit_cfg: FitConfig, n_items: int, what: str = "training samples") -> FitConfig:
    """A batch larger than the data would give zero steps (drop_last): clip it, loudly; the run records the
    batch size it used."""
    if n_items < 1:
        raise RunError(f"no {what}: nothing to train on (check the dataset, its options and the protocol)")
    if fit_cfg.batch_size <= n_items:
        return fit_cfg
    console.print(f"[yellow]warning: batch size {fit_cfg.batch_size} is larger than the {n_items} {what}; "
                  f"training with batches of {n_items}")
    return dataclasses.replace(fit_cfg, batch_size=n_items)


def train(run_dir: Path, data: DataConfig, method: Any, fit_cfg: FitConfig, resume: bool = False,
          threads: int | None = None) -> Path:
    """Train (or resume) a run of the recipe whose settings `method` holds: open the data, let the recipe
    build its training set, model and loss step, and fit with the checkpoint chosen on the validation split
    (evaluate_run then scores it on the test split). Under torchrun every process runs this; rank 0 writes."""
    from biohash.recipes.base import recipe_for

    recipe = recipe_for(method)
    procs, device = _join(fit_cfg)
    try:
        dataset, split = _start(run_dir, data, fit_cfg, resume, threads)
        train_set = recipe.training_set(method, dataset, split, data, fit_cfg.seed)
        per_identity = recipe.batch_identities(method)
        fit_cfg = _split_batch(_clip_batch(fit_cfg, len(train_set)), per_identity, procs.world)
        model, step, shape = recipe.build(method, train_set, fit_cfg.seed)
        config = {"recipe": recipe.name, "data": dataclasses.asdict(data),
                  "model": {**dataclasses.asdict(method), **shape}, "fit": dataclasses.asdict(fit_cfg),
                  "split": split.summary()}
        if not type(recipe).__module__.startswith("biohash."):
            config["recipe_module"] = type(recipe).__module__  # eval, export and encoders import it again
        loader = _loader(train_set, fit_cfg, per_identity, procs, pin_memory=device.type == "cuda")
        return _fit_and_record(run_dir, config, model, step, loader, dataset, split, resume)
    finally:
        _leave()


def _join(fit_cfg: FitConfig) -> tuple[Any, torch.device]:
    """Check the device, join a torchrun launch's process group, and quiet every process but rank 0; returns
    this process's place in the launch and its device."""
    from biohash.devices import check_precision, join_process_group, processes, resolve_device

    if processes().world > 1 and fit_cfg.device.startswith("cuda:"):
        raise RunError(f"--device {fit_cfg.device} under torchrun would put every process on one GPU; use "
                       f"--device cuda (each process takes cuda:LOCAL_RANK) and CUDA_VISIBLE_DEVICES to choose GPUs")
    device = resolve_device(fit_cfg.device, processes().local_rank)
    check_precision(device, fit_cfg.amp)
    procs = join_process_group(device)
    console.quiet = not procs.main
    return procs, device


def _leave() -> None:
    from biohash.devices import barrier

    console.quiet = False
    barrier()  # the group stays until the process exits: destroying it on both ranks at once (gloo) now and
    # then aborted one of them ("terminate called without an active exception")


def _split_batch(fit_cfg: FitConfig, per_identity: int, world: int) -> FitConfig:
    """The global batch must split into `world` equal shares of whole identity groups (K items each)."""
    unit = world * max(per_identity, 1)
    if fit_cfg.batch_size % unit == 0:
        return fit_cfg
    size = fit_cfg.batch_size - fit_cfg.batch_size % unit
    if size < unit * (2 if per_identity else 1):
        raise RunError(f"batch size {fit_cfg.batch_size} cannot be shared by {world} processes in groups of "
                       f"{max(per_identity, 1)} captures of an identity; raise --batch-size to {2 * unit} or more")
    console.print(f"[yellow]warning: batch size {fit_cfg.batch_size} is not a multiple of {unit} ({world} "
                  f"process(es) x {max(per_identity, 1)} captures of an identity); training with {size}")
    return dataclasses.replace(fit_cfg, batch_size=size)


def _loader(train_set: Any, fit_cfg: FitConfig, per_identity: int, procs: Any,
            pin_memory: bool = False) -> torch.utils.data.DataLoader:
    """Global batches drawn from (seed, epoch), shuffled or P x K (`per_identity` items of each identity), of
    which this process loads its share; workers as the run asks, pinned memory for a GPU."""
    from biohash.data.loaders import IdentityBatchSampler, RankSlice, ShuffledBatches

    batches: Any = (IdentityBatchSampler(train_set.labels(), fit_cfg.batch_size, per_identity, seed=fit_cfg.seed)
                    if per_identity else ShuffledBatches(len(train_set), fit_cfg.batch_size, seed=fit_cfg.seed))
    if procs.world > 1:
        batches = RankSlice(batches, procs.rank, procs.world)
    # workers are started afresh each epoch (not persistent): they must see the dataset's new epoch, which
    # draws the fresh captures and augmentations
    return torch.utils.data.DataLoader(train_set, batch_sampler=batches, num_workers=fit_cfg.workers,
                                       pin_memory=pin_memory)


def _unlabeled_sources(method: Any, teacher: Any, source_data: DataConfig, seed: int) -> dict:
    """Per modality branch of the teacher: (dataset, samples) of unlabeled images from the method's source."""
    from biohash.data.datasets import open_dataset

    out = {}
    real = open_split(source_data) if method.source == "real" else None  # opened once for every branch
    for m in teacher.modalities:
        if method.source == "synthetic":
            look = method.look_for(m)
            ds = open_dataset("synthetic", identities=-(-method.images // 4), captures=4, seed=seed + 7919,
                              size=source_data.image_size, modalities=(look,))
            out[m] = (ds, ds.samples[: method.images])
        elif method.source == "folder":
            ds = open_dataset("images", root=method.root, modality=m)
            out[m] = (ds, ds.samples[: method.images])
        else:  # the source run's own training images, labels unused
            assert real is not None
            ds, split = real
            out[m] = (ds, [s for s in split.train if s.modality == m][: method.images])
    return out


def quantize_run(source_run: Path, run_dir: Path, method: Any, fit_cfg: FitConfig | None,
                 threads: int | None = None) -> Path:
    """Quantize a trained hashing run to method.bits: distillation of its embeddings on unlabeled images
    (fit_cfg given) or plain post-training calibration (fit_cfg None). The new run evaluates like its source
    (same data and protocol); no checkpoint is chosen on labelled data: the final weights are the result."""
    from biohash.data.loaders import UnlabeledSet
    from biohash.devices import processes
    from biohash.recipes.quantize import build, calibrate
    from biohash.train import fit, save_checkpoint, seed_everything

    if processes().world > 1:
        raise RunError("quantization runs in one process (a single GPU is plenty): start it without torchrun")
    if (run_dir / "checkpoints" / "best.pt").exists():
        raise RunError(f"{run_dir} already holds a run; choose another --name")
    if threads:
        torch.set_num_threads(threads)
    source_config, teacher = _hashing_teacher(source_run)
    source_data = DataConfig(**source_config["data"])
    seed = fit_cfg.seed if fit_cfg else 0
    seed_everything(seed)
    train_set = UnlabeledSet(_unlabeled_sources(method, teacher, source_data, seed), source_data.image_size)
    if fit_cfg:
        fit_cfg = _clip_batch(fit_cfg, len(train_set), "unlabeled images")
    batch_size = fit_cfg.batch_size if fit_cfg else min(64, len(train_set))
    loader = torch.utils.data.DataLoader(train_set, batch_size=batch_size, shuffle=True, drop_last=True)
    total_steps = len(loader) * (fit_cfg.epochs if fit_cfg else 0)
    student, step = build(method, teacher, total_steps=max(total_steps, 1))
    config = {"recipe": "quantize", "source": str(source_run), "source_config": source_config,
              "data": source_config["data"], "model": {**source_config["model"], "quant": dataclasses.asdict(method),
                                                       "ptq": fit_cfg is None},
              "fit": dataclasses.asdict(fit_cfg) if fit_cfg else None, "seed": seed}
    write_config(run_dir, config)
    _write_environment(run_dir, fit_cfg)
    console.print(f"[bold]quantize[/] {source_run} -> {run_dir}: W{method.bits}A{method.bits}, "
                  f"{'distillation' if fit_cfg else 'post-training calibration'} on {len(train_set)} "
                  f"{method.source} images per branch")
    t0 = time.time()
    calibrate(student, loader)  # start the activation ranges from the data (the whole of PTQ)
    if fit_cfg is not None:
        fit(student, step, loader, fit_cfg, run_dir, validate=None, console=console)
    else:
        save_checkpoint(run_dir / "checkpoints" / "best.pt", {"model": student.state_dict(), "epoch": 0})
    write_json(run_dir / "train_time.json", {"seconds": time.time() - t0})
    return run_dir


def _hashing_teacher(source_run: Path) -> tuple[dict[str, Any], torch.nn.Module]:
    """The config and selected model of a trained hashing run (what quantization distils)."""
    from biohash.recipes.base import get_recipe

    source_config = read_config(source_run)
    source_recipe = get_recipe(source_config.get("recipe"), source_config.get("recipe_module"))
    if source_recipe.produces != "codes" or not source_recipe.trains:
        raise RunError(f"{source_run} is a {source_config.get('recipe')!r} run; quantization distils trained "
                       f"hashing runs (cohash, dhn, distill)")
    return source_config, load_model(source_run, source_config)


def _start(run_dir: Path, data: DataConfig, fit_cfg: FitConfig, resume: bool, threads: int | None):
    """What every training job does first: refuse to overwrite a run, set threads and seeds, open the data."""
    from biohash.train import seed_everything

    if (run_dir / "checkpoints" / "last.pt").exists() and not resume:
        raise RunError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --name")
    if threads:
        torch.set_num_threads(threads)
    seed_everything(fit_cfg.seed)
    dataset, split = open_split(data)
    from biohash.devices import processes

    if processes().main:  # rank 0 of a torchrun launch, or the only process, writes into the run folder
        _note_skipped(run_dir, dataset)
    return dataset, split


def _fit_and_record(run_dir: Path, config: dict[str, Any], model: torch.nn.Module, step: Any,
                    loader: torch.utils.data.DataLoader, dataset: Any, split: Any, resume: bool) -> Path:
    """What every training job does last: check a resume matches, write config and environment, fit with
    validation on the split's validation captures, record the training time."""
    from biohash.devices import processes
    from biohash.evaluate import validation
    from biohash.train import fit

    fit_cfg = FitConfig(**config["fit"])
    procs = processes()
    _check_resume(run_dir, config, resume)
    if procs.main:
        write_config(run_dir, config)
        _write_environment(run_dir, fit_cfg)
    console.print(f"[bold]train {config['recipe']}[/] {run_dir}: {split.summary()}")
    size = config["data"]["image_size"]
    t0 = time.time()
    fit(model, step, loader, fit_cfg, run_dir,
        validate=validation(dataset, split.val_gallery, split.val_probe, size), console=console)
    if procs.main:
        write_json(run_dir / "train_time.json", {"seconds": time.time() - t0})
    return run_dir


def _write_environment(run_dir: Path, fit_cfg: FitConfig | None) -> None:
    """environment.json: versions and machine, and where the run trains (device, precision, processes)."""
    from biohash.devices import describe, processes, resolve_device

    where = describe(resolve_device(fit_cfg.device, processes().local_rank), fit_cfg.amp, processes()) \
        if fit_cfg else {}
    write_json(run_dir / "environment.json", {**environment(), **where})


def _check_resume(run_dir: Path, config: dict[str, Any], resume: bool) -> None:
    if resume and (run_dir / "config.yaml").exists():
        from biohash.fit_config import RUNTIME_FIELDS

        def what(c: dict[str, Any]) -> dict[str, Any]:  # a run may resume on another device or world size
            return {**c, "fit": {k: v for k, v in (c.get("fit") or {}).items() if k not in RUNTIME_FIELDS}}

        before, now = what(read_config(run_dir)), what(config)
        changed = [k for k in ("data", "model", "fit") if before.get(k) != now[k]]
        if changed:
            raise RunError(f"{run_dir} was started with other {', '.join(changed)} settings; resume it with the "
                           f"same flags (see its config.yaml) or choose another --name")


DEMO_INIT = "zoo:compnet_lite-128"


def run_demo(run_dir: Path, epochs: int = 10, identities: int = 1000, bits: int = 64, seed: int = 0,
             fresh: bool = True, backbone: str = "compnet_lite", init: str | None = DEMO_INIT,
             deploy: bool = True) -> dict[str, dict[str, float]]:
    """The whole line on synthetic data: generate, train co-hashing (from the shipped synthetic pretraining by
    default; its palms are another seed's, so the demo's test palms stay unseen), evaluate the open-set test
    split, print; then deploy it (biohash.demo: export, enroll the test palms, identify, verify)."""
    import shutil

    from rich.table import Table

    from biohash.recipes.cohash import CohashConfig
    from biohash.report import TABLE_COLUMNS, table_rows

    if fresh and run_dir.exists():
        read_config(run_dir)  # refuse to delete a folder that is not a run
        shutil.rmtree(run_dir)
    t0 = time.time()
    data = DataConfig(dataset="synthetic", identities=identities, captures=4, protocol="open", seed=seed)
    fit_cfg = FitConfig(epochs=epochs, batch_size=64, lr=1e-3, val_every=2, seed=seed)
    train(run_dir, data, CohashConfig(backbone=backbone, bits=bits, init=init), fit_cfg, resume=not fresh)
    per_mode = evaluate_run(run_dir)
    table = Table(title=f"co-hashing, {bits} bits, synthetic open set (identity-disjoint test palms)")
    for col in ["mode"] + [title for _, title, _ in TABLE_COLUMNS]:
        table.add_column(col, justify="right")
    for row in table_rows(per_mode):
        table.add_row(*row)
    console.print(table)
    console.print(f"report: {run_dir / 'eval' / 'open-test' / 'report.md'}")
    if deploy:
        from biohash.demo import deploy_demo

        deploy_demo(run_dir, console)
    console.print(f"demo done in {time.time() - t0:.0f} s")
    return per_mode
