"""The training job: open the data, let the recipe build its training set, model and loss step, fit with the
checkpoint chosen on the validation split, and record config, environment and time beside the run."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from biohash.train.data.config import DataConfig, open_split
from biohash.train.eval_run import note_skipped
from biohash.train.fit_config import FitConfig
from biohash.train.runs import RunError, environment, read_config, write_config, write_json


def clip_batch(fit_cfg: FitConfig, n_items: int, console: Console, what: str = "training samples") -> FitConfig:
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
          *, threads: int | None = None) -> Path:
    """Train (or resume) a run of the recipe whose settings `method` holds: open the data, let the recipe
    build its training set, model and loss step, and fit with the checkpoint chosen on the validation split
    (evaluate_run then scores it on the test split). Under torchrun every process runs this; rank 0 writes."""
    from biohash.train.recipes.base import recipe_for

    recipe = recipe_for(method)
    procs, device = _join(fit_cfg)
    console = Console(quiet=not procs.main)  # one voice: rank 0 of a torchrun launch, or the only process
    try:
        dataset, split = _start(run_dir, data, fit_cfg, resume, threads)
        train_set = recipe.training_set(method, dataset, split, data, fit_cfg.seed)
        per_identity = recipe.batch_identities(method)
        fit_cfg = _split_batch(clip_batch(fit_cfg, len(train_set), console), per_identity, procs.world, console)
        model, step, shape = recipe.build(method, train_set, fit_cfg.seed)
        config = {"recipe": recipe.name, "data": dataclasses.asdict(data),
                  "model": {**dataclasses.asdict(method), **shape}, "fit": dataclasses.asdict(fit_cfg),
                  "split": split.summary()}
        if not type(recipe).__module__.startswith("biohash."):
            config["recipe_module"] = type(recipe).__module__  # eval, export and encoders import it again
        loader = _loader(train_set, fit_cfg, per_identity, procs, pin_memory=device.type == "cuda")
        defaults = {"data": _defaults(data), "model": _defaults(method), "fit": _defaults(fit_cfg)}
        return _fit_and_record(run_dir, config, model, step, loader=loader, dataset=dataset, split=split,
                               resume=resume, console=console, defaults=defaults)
    finally:
        _leave()


def _join(fit_cfg: FitConfig) -> tuple[Any, torch.device]:
    """Check the device and join a torchrun launch's process group; returns this process's place in the launch
    and its device (train then quiets every console but rank 0's)."""
    from biohash.train.devices import check_precision, join_process_group, processes, resolve_device

    if processes().world > 1 and fit_cfg.device.startswith("cuda:"):
        raise RunError(f"--device {fit_cfg.device} under torchrun would put every process on one GPU; use "
                       f"--device cuda (each process takes cuda:LOCAL_RANK) and CUDA_VISIBLE_DEVICES to choose GPUs")
    device = resolve_device(fit_cfg.device, processes().local_rank)
    check_precision(device, fit_cfg.amp)
    return join_process_group(device), device


def _leave() -> None:
    from biohash.train.devices import barrier

    barrier()  # the group stays until the process exits: destroying it on both ranks at once (gloo) now and
    # then aborted one of them ("terminate called without an active exception")


def _split_batch(fit_cfg: FitConfig, per_identity: int, world: int, console: Console) -> FitConfig:
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
    from biohash.train.data.loaders import IdentityBatchSampler, RankSlice, ShuffledBatches

    batches: Any = (IdentityBatchSampler(train_set.labels(), fit_cfg.batch_size, per_identity, seed=fit_cfg.seed)
                    if per_identity else ShuffledBatches(len(train_set), fit_cfg.batch_size, seed=fit_cfg.seed))
    if procs.world > 1:
        batches = RankSlice(batches, procs.rank, procs.world)
    # workers are started afresh each epoch (not persistent): they must see the dataset's new epoch, which
    # draws the fresh captures and augmentations
    return torch.utils.data.DataLoader(train_set, batch_sampler=batches, num_workers=fit_cfg.workers,
                                       pin_memory=pin_memory)


def _start(run_dir: Path, data: DataConfig, fit_cfg: FitConfig, resume: bool, threads: int | None):
    """What every training job does first: refuse to overwrite a run, set threads and seeds, open the data."""
    from biohash.train.fit import seed_everything

    if (run_dir / "checkpoints" / "last.pt").exists() and not resume:
        raise RunError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --name")
    if threads:
        torch.set_num_threads(threads)
    seed_everything(fit_cfg.seed)
    dataset, split = open_split(data)
    from biohash.train.devices import processes

    if processes().main:  # rank 0 of a torchrun launch, or the only process, writes into the run folder
        note_skipped(run_dir, dataset)
    return dataset, split


def _fit_and_record(run_dir: Path, config: dict[str, Any], model: torch.nn.Module, step: Any, *,
                    loader: torch.utils.data.DataLoader, dataset: Any, split: Any, resume: bool,
                    console: Console, defaults: dict[str, dict[str, Any]]) -> Path:
    """What every training job does last: check a resume matches, write config and environment, fit with
    validation on the split's validation captures, record the training time."""
    from biohash.train.devices import processes
    from biohash.train.evaluate import validation
    from biohash.train.fit import fit

    fit_cfg = FitConfig(**config["fit"])
    procs = processes()
    _check_resume(run_dir, config, resume, defaults)
    if procs.main:
        write_config(run_dir, config)
        write_environment(run_dir, fit_cfg)
    console.print(f"[bold]train {config['recipe']}[/] {run_dir}: {split.summary()}")
    size = config["data"]["image_size"]
    t0 = time.time()
    fit(model, step, loader, fit_cfg, run_dir,
        validate=validation(dataset, split.val_gallery, split.val_probe, size), console=console)
    if procs.main:
        write_json(run_dir / "train_time.json", {"seconds": time.time() - t0})
    return run_dir


def write_environment(run_dir: Path, fit_cfg: FitConfig | None) -> None:
    """environment.json: versions and machine, and where the run trains (device, precision, processes)."""
    from biohash.train.devices import describe, processes, resolve_device

    where = describe(resolve_device(fit_cfg.device, processes().local_rank), fit_cfg.amp, processes()) \
        if fit_cfg else {}
    write_json(run_dir / "environment.json", {**environment(), **where})


def _as_stored(value: Any) -> Any:
    """A value as config.yaml reads back (tuples come back as lists)."""
    return list(value) if isinstance(value, tuple) else value


def _defaults(settings: Any) -> dict[str, Any]:
    """A settings dataclass's field defaults, as asdict writes them into config.yaml."""
    return {f.name: f.default for f in dataclasses.fields(settings) if f.default is not dataclasses.MISSING}


def _check_resume(run_dir: Path, config: dict[str, Any], resume: bool,
                  defaults: dict[str, dict[str, Any]]) -> None:
    """Refuse to resume with other settings. A setting the stored config lacks was added by a later biohash:
    at its default it is the older version's behaviour, so it counts as unchanged."""
    if resume and (run_dir / "config.yaml").exists():
        from biohash.train.fit_config import RUNTIME_FIELDS

        def what(c: dict[str, Any]) -> dict[str, Any]:  # a run may resume on another device or world size
            return {**c, "fit": {k: v for k, v in (c.get("fit") or {}).items() if k not in RUNTIME_FIELDS}}

        before, now = what(read_config(run_dir)), what(config)
        for part in ("data", "model", "fit"):
            stored, added = before.get(part) or {}, defaults.get(part, {})
            now[part] = {k: v for k, v in now[part].items()
                         if k in stored or k not in added or _as_stored(v) != _as_stored(added[k])}
        changed = [k for k in ("data", "model", "fit") if before.get(k) != now[k]]
        if changed:
            raise RunError(f"{run_dir} was started with other {', '.join(changed)} settings; resume it with the "
                           f"same flags (see its config.yaml) or choose another --name")
