"""The recipe contract: a training method is one registered `Recipe` (its settings dataclass, its training
data, build, rebuild from a saved run, what it produces). train_job, rebuilding (below), export and the CLI's
`biohash train NAME` commands ask the recipe, so adding a method touches its own module only.

A recipe defined outside biohash registers itself when its module is imported: name such modules in the
BIOHASH_RECIPES variable (comma-separated) and `biohash train` offers them; a run records its recipe's module
(`recipe_module` in config.yaml) so that eval, export and encoders in another process import it again.
"""
from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from biohash.registry import Registry
from biohash.train.runs import RunError

if TYPE_CHECKING:
    from torch import nn

    from biohash.train.data.config import DataConfig
    from biohash.train.data.datasets import Dataset
    from biohash.train.data.protocols import Split

PRODUCES = ("codes", "floats")


def option(default: Any, help: str) -> Any:
    """A settings field with the help text `biohash train NAME --help` shows beside its default."""
    return dataclasses.field(default=default, metadata={"help": help})


class CodeModel(Protocol):
    """What a model of a recipe that produces "codes" offers evaluation, export and the encoders: its
    modalities and, per modality, a branch whose `embed_and_code(x)` gives (embedding, relaxed code)."""

    modalities: tuple[str, ...]

    def net(self, modality: str) -> Any: ...


class Recipe:
    """Base of every training method: subclass it, set the class attributes, implement `training_set`,
    `build` and `rebuild`, and decorate the class with `@register_recipe`.

    name: the registered name (`biohash train NAME`; config.yaml's `recipe`).
    config: the method's settings dataclass; each field becomes an option of `biohash train NAME` with its
        default shown and its help from the field's metadata (`option(default, help)`).
    produces: "codes" (per-modality hashing branches: Hamming modes in evaluation, ONNX export, encoders) or
        "floats" (one float feature network scored by cosine; codes beside them where it has a hash head).
    data_defaults, fit_defaults: DataConfig / FitConfig values this method defaults differently.
    flags: CLI spellings of settings fields other than --field-name (e.g. {"global_branch": ("--global/--no-global",)}).
    trains: False for a recipe built from another run (quantize), which has its own command.
    """

    name: ClassVar[str] = ""
    config: ClassVar[type]
    produces: ClassVar[str] = "codes"
    data_defaults: ClassVar[dict[str, Any]] = {}
    fit_defaults: ClassVar[dict[str, Any]] = {}
    flags: ClassVar[dict[str, tuple[str, ...]]] = {}
    trains: ClassVar[bool] = True

    def training_set(self, method: Any, dataset: Dataset, split: Split, data: DataConfig, seed: int) -> Any:
        """The labelled training items (a torch Dataset whose `labels()` lists each item's class index)."""
        raise NotImplementedError

    def build(self, method: Any, train_set: Any, seed: int) -> tuple[nn.Module, Callable, dict[str, Any]]:
        """The model, its loss step (model, batch) -> {"loss": ..., parts}, and what rebuild needs beyond the
        settings (recorded under config.yaml's `model`, e.g. n_classes)."""
        raise NotImplementedError

    def rebuild(self, config: dict[str, Any]) -> nn.Module:
        """The untrained model of a saved run, shaped by its config.yaml (its checkpoint is loaded after)."""
        raise NotImplementedError

    def batch_identities(self, method: Any) -> int:
        """Items of each identity per batch (P x K batches); 0 draws shuffled batches."""
        return 0

    def data_options(self, method: Any) -> dict[str, Any]:
        """Dataset adapter options the settings imply (GPA-Net's aspect selects 11K images)."""
        return {}

    def inherited_data(self, method: Any) -> dict[str, Any] | None:
        """DataConfig fields the method implies (a student: its teacher's data); None: the CLI defaults."""
        return None

    def for_export(self, model: nn.Module, config: dict[str, Any]) -> tuple[nn.Module, dict[str, Any], dict]:
        """The float network export writes, the config that rebuilds it, and notes for bundle.json."""
        return model, config, {}


RECIPES: Registry[Recipe] = Registry("recipe")


def load_recipes() -> None:
    """Register the recipes of the modules named in BIOHASH_RECIPES (idempotent). The built-in ones registered
    when the biohash.train.recipes package was imported (its __init__), so nothing here imports them back."""
    for module in filter(None, (m.strip() for m in os.environ.get("BIOHASH_RECIPES", "").split(","))):
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise RunError(f"BIOHASH_RECIPES names {module!r}, which cannot be imported: {err}") from None


def register_recipe(cls: type[Recipe]) -> type[Recipe]:
    """Class decorator: register one instance of a Recipe subclass under its `name`."""
    if not cls.name or cls.produces not in PRODUCES:
        raise ValueError(f"recipe {cls.__name__}: set name and produces (one of {', '.join(PRODUCES)})")
    if not dataclasses.is_dataclass(getattr(cls, "config", None)):
        raise ValueError(f"recipe {cls.name!r}: config must be a dataclass of the method's settings")
    RECIPES.register(cls.name)(cls())
    return cls


def get_recipe(name: str | None, module: str | None = None) -> Recipe:
    """The recipe registered as `name`; `module` (a run's recipe_module) is imported first when the recipe is
    not registered yet."""
    load_recipes()
    if name not in RECIPES and module:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise RunError(f"recipe {name!r} lives in module {module!r}, which cannot be imported: {err}") from None
    if name is None or name not in RECIPES:
        raise RunError(f"unknown recipe {name!r}; registered: {', '.join(RECIPES.names())}")
    return RECIPES.get(name)


def recipe_for(method: Any) -> Recipe:
    """The recipe whose settings dataclass `method` is an instance of."""
    load_recipes()
    for name in RECIPES.names():
        if type(method) is RECIPES.get(name).config:
            return RECIPES.get(name)
    raise RunError(f"no registered recipe takes settings of type {type(method).__name__}")


def trained_recipes() -> list[Recipe]:
    """Every registered recipe that `biohash train NAME` offers."""
    load_recipes()
    return [RECIPES.get(n) for n in RECIPES.names() if RECIPES.get(n).trains]


def build_untrained(config: dict[str, Any]) -> nn.Module:
    """The untrained model of a run's recipe, shaped by its config."""
    return get_recipe(config.get("recipe"), config.get("recipe_module")).rebuild(config)


def load_model(run_dir: Path, config: dict[str, Any] | None = None) -> nn.Module:
    """Rebuild a run's model and load its best (validation-selected) checkpoint: the rebuilding half of the
    recipe contract, here so that recipes which start from a trained run (distill, quantize) need nothing
    above them."""
    import torch

    from biohash.train.runs import read_config

    config = config or read_config(run_dir)
    model = build_untrained(config)
    best = run_dir / "checkpoints" / "best.pt"
    if not best.is_file():
        raise RunError(f"{run_dir} has no checkpoints/best.pt: training did not finish an epoch")
    model.load_state_dict(torch.load(best, map_location="cpu", weights_only=False)["model"])
    return model.eval()
