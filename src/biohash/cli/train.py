"""`biohash train NAME`: one command per registered recipe, built from its settings dataclass when asked for
(each field an option, its default shown), plus the data, fit and run options every recipe shares. No default
is written here: they come from the dataclasses and the recipe's data_defaults / fit_defaults."""
from __future__ import annotations

import dataclasses
import inspect
import typing
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from biohash.cli.app import _finish, _friendly, _options, app

# option spellings beyond --field-name (the paper's own command uses --ds, --model, --epoch, -b, --comment)
SPELLINGS = {"dataset": ("--dataset", "--ds"), "backbone": ("--backbone", "--model"), "epochs": ("--epochs", "--epoch"),
             "batch_size": ("--batch-size", "-b"), "name": ("--name", "--comment"), "option": ("--option", "-o")}
DATA_FIELDS = ("dataset", "root", "protocol", "identities", "captures", "image_size", "val_fraction",
               "test_fraction", "enroll_fraction", "jitter", "photometric", "train_identities", "seed")
FIT_FIELDS = ("epochs", "batch_size", "lr", "weight_decay", "optimizer", "schedule", "warmup_epochs", "val_every",
              "monitor", "ema", "workers", "device", "amp")
HELP = {"dataset": "registered dataset name (biohash datasets lists them)", "root": "dataset folder (real databases)",
        "protocol": "open (identity-disjoint), closed, all, or a database's own (11k, hd)",
        "identities": "synthetic: number of palms", "captures": "synthetic: captures per palm and modality",
        "val_fraction": "open set: share of identities that choose the checkpoint",
        "test_fraction": "open set: share of identities held out for test; 0 trains on all others (test later "
                         "on another folder)", "seed": "seeds training and the protocol's draw",
        "enroll_fraction": "closed set: share of each palm's captures that enroll (the co-hashing paper: 0.667)",
        "jitter": "scale of the training images' random affine (1: +-4 deg, 3 % shift, 4 % scale; 0: none)",
        "photometric": "scale of the training images' random capture conditions (illumination field, gamma, "
                       "contrast, blur, noise; 0: none)",
        "train_identities": "open set: train on this many of the training identities (0: all), validation and "
                            "test palms unchanged",
        "optimizer": "adamw or sgd",
        "monitor": "validation figure that chooses the checkpoint: val_eer (mean EER of every mode), val_eer_same "
                   "(print, vein, fused: cross modes left out), val_eer_same_asym (the same modes scored asymmetrically, as "
                   "the figures are reported; with the model's --test-shifts) or val_eer_MODE", "schedule": "cosine, step or constant",
        "ema": "decay per step of the weights' moving average that validation and the kept checkpoint read (e.g. "
               "0.997; 0 = off)",
        "workers": "data-loading processes beside training",
        "device": "auto (a GPU where torch sees one), cpu, cuda, cuda:N or mps; under torchrun each process takes "
                  "cuda:LOCAL_RANK", "amp": "mixed precision: off, bf16 (CPU or GPU) or fp16 (GPU)"}


class RecipeCommands(TyperGroup):
    """The `train` group: its commands are the registered recipes, looked up when the group is used (the
    recipes import torch, which other commands and --help never need)."""

    def list_commands(self, ctx: Any) -> list[str]:
        return [r.name for r in _recipes()]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        found = [r for r in _recipes() if r.name == cmd_name]
        return train_command(found[0]) if found else None


def _recipes() -> list[Any]:
    """The registered recipes that train; a one-line error where the training stack is not installed."""
    import importlib.util

    missing = [m for m in ("torch", "cv2") if importlib.util.find_spec(m) is None]
    if missing:
        typer.echo(f"error: training needs {' and '.join(missing)}: pip install 'biohash[train]'", err=True)
        raise typer.Exit(2)
    from biohash.train.recipes.base import trained_recipes

    return trained_recipes()


train_app = typer.Typer(cls=RecipeCommands, help="Train a model with one of the recipes.", no_args_is_help=True)
app.add_typer(train_app, name="train")


def _defaults(cls: type, overrides: dict[str, Any]) -> dict[str, Any]:
    return {f.name: overrides.get(f.name, f.default) for f in dataclasses.fields(cls)
            if f.default is not dataclasses.MISSING}


def _param(name: str, kind: Any, default: Any, help: str | None, panel: str, decls: tuple[str, ...] = ()
           ) -> inspect.Parameter:
    """A keyword parameter typer reads as an option that stays None unless given, its default shown."""
    decls = decls or SPELLINGS.get(name, ())
    shown = "" if default is None else str(default)
    info = typer.Option(None, *decls, help=help, show_default=shown or False, rich_help_panel=panel)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=kind)


def _optional(kind: Any) -> Any:
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    return typing.Optional[args[0] if args else kind]  # noqa: UP045 (typer reads typing.Optional)


def _parameters(recipe: Any) -> tuple[list[inspect.Parameter], list[str]]:
    from biohash.train.data.config import DataConfig
    from biohash.train.fit_config import FitConfig

    data_defaults = _defaults(DataConfig, recipe.data_defaults)
    fit_defaults = _defaults(FitConfig, recipe.fit_defaults)
    data_hints, fit_hints = typing.get_type_hints(DataConfig), typing.get_type_hints(FitConfig)
    params = [_param(n, _optional(data_hints[n]), data_defaults[n], HELP.get(n), "Data")
              for n in DATA_FIELDS]
    params.append(_param("option", typing.Optional[list[str]], None, "dataset adapter option KEY=VALUE, e.g. "  # noqa: UP045
                         "bands=940 (repeatable)", "Data"))
    params.append(_param("also", typing.Optional[list[str]], None, "join another database to the run: "  # noqa: UP045
                         "NAME:ROOT[:KEY=VALUE...] (adapter options, or its own protocol / val_fraction / "
                         "test_fraction), e.g. tongji:../shared/data/tongji-full (repeatable; evaluation reports "
                         "each database apart)", "Data"))
    params.append(_param("on_roi_failure", typing.Optional[str], None, "photos whose ROI cannot be cut: skip "  # noqa: UP045
                         "(left out and listed; the default) or fail", "Data"))
    params += [_param(n, _optional(fit_hints[n]), fit_defaults[n], HELP.get(n), "Training")
               for n in FIT_FIELDS]
    hints = typing.get_type_hints(recipe.config)
    method = [f.name for f in dataclasses.fields(recipe.config) if f.name not in DATA_FIELDS + FIT_FIELDS]
    for f in dataclasses.fields(recipe.config):
        if f.name in method:
            params.append(_param(f.name, _optional(hints[f.name]), f.default, f.metadata.get("help"),
                                 f"{recipe.name} settings", recipe.flags.get(f.name, ())))
    keyword = inspect.Parameter.KEYWORD_ONLY
    params += [_param("name", typing.Optional[str], None, "run name (folder under --runs)", "Run"),  # noqa: UP045
               inspect.Parameter("runs", keyword, annotation=Path, default=typer.Option(
                   Path("runs"), help="folder holding run folders", rich_help_panel="Run")),
               inspect.Parameter("resume", keyword, annotation=bool, default=typer.Option(
                   False, help="continue an interrupted run of the same name", rich_help_panel="Run")),
               _param("threads", typing.Optional[int], None, "torch CPU threads", "Run")]  # noqa: UP045
    return params, method


def train_command(recipe: Any) -> Any:
    """The (click) command `biohash train NAME` of one recipe."""
    params, method_fields = _parameters(recipe)

    def command(**given: Any) -> None:
        method = recipe.config(**{k: given.pop(k) for k in method_fields if given[k] is not None})
        run_training(recipe, method, given)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    sub = typer.Typer(add_completion=False)
    sub.command(recipe.name, help=(recipe.__doc__ or recipe.name).strip())(_friendly(command))
    return typer.main.get_command(sub)


def data_config(recipe: Any, method: Any, given: dict[str, Any]) -> Any:
    """The run's DataConfig: what the method implies (a student: its teacher's data) or the recipe's
    defaults, then the options given; a teacher's seed stays (it drew the teacher's split)."""
    from biohash.train.data.config import DataConfig

    inherited = recipe.inherited_data(method)
    base = dict(inherited or recipe.data_defaults)
    fields = {k: given[k] for k in DATA_FIELDS if given.get(k) is not None}
    if inherited is not None:
        fields.pop("seed", None)
        if fields.get("dataset", base["dataset"]) != base["dataset"]:  # another dataset: not the teacher's files
            base.pop("root", None)
            base.pop("options", None)
    options = {**base.pop("options", {}), **recipe.data_options(method), **_options(given.get("option"))}
    if given.get("on_roi_failure") is not None:
        options["on_roi_failure"] = given["on_roi_failure"]
    from biohash.train.data.multi import parse_spec

    if given.get("also"):
        base["also"] = [parse_spec(spec) for spec in given["also"]]
    return DataConfig(**{**base, **fields}, options=options)


def run_training(recipe: Any, method: Any, given: dict[str, Any]) -> None:
    """Train the recipe's run from the command's options, then evaluate it on its test split."""
    from biohash.train.devices import processes
    from biohash.train.fit_config import FitConfig
    from biohash.train.runs import run_name
    from biohash.train.train_job import train

    data = data_config(recipe, method, given)
    fit = {**recipe.fit_defaults, **{k: given[k] for k in FIT_FIELDS if given.get(k) is not None}}
    fit_cfg = FitConfig(**fit, seed=given["seed"] if given.get("seed") is not None else data.seed)
    run_dir = given["runs"] / (given["name"] or run_name(recipe.name))
    train(run_dir, data, method, fit_cfg, resume=given["resume"], threads=given["threads"])
    if not processes().main:  # under torchrun, rank 0 evaluates
        return
    if data.protocol == "open" and data.test_fraction == 0:
        typer.echo(f"run folder: {run_dir} (no test identities: evaluate on another folder of people with "
                   f"biohash eval {run_dir} --ds {data.dataset} --root OTHER --protocol all)")
        return
    _finish(run_dir, fit_cfg.device)
