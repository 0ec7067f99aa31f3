"""A new method is one module: the recipe below (model, loss step, settings) is defined here and nowhere
else, then trained, evaluated, exported, restored and deployed through biohash's normal commands."""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from typer.testing import CliRunner

from biohash.cli import app
from biohash.recipes.base import Recipe, option, register_recipe

runner = CliRunner()


class TinyConvHash(nn.Module):
    """Two strided convs, a linear hash layer and an identity classifier on the relaxed code; it follows the
    stages every biohash model has (forward_embed, forward_head, embed_and_code, net(modality))."""

    def __init__(self, bits: int, n_classes: int, modality: str = "print") -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 8, 5, stride=2, padding=2), nn.ReLU(),
                                      nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
                                      nn.Flatten())
        self.hash_layer = nn.Linear(256, bits)
        self.classifier = nn.Linear(bits, n_classes)
        self.modalities, self.bits = (modality,), bits

    def net(self, modality: str) -> TinyConvHash:
        return self

    def forward_embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, embedding: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.hash_layer(embedding))

    def embed_and_code(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.forward_embed(x)
        return e, self.forward_head(e)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_embed(x))


@dataclass
class TinyHashConfig:
    bits: int = option(32, "code length")
    scale: float = option(8.0, "logit scale of the identity cross-entropy")
    quant_weight: float = option(0.1, "weight of the |h| -> 1 quantization term")


@register_recipe
class TinyHashRecipe(Recipe):
    """A test recipe: tiny conv hash, identity cross-entropy on its relaxed print codes."""

    name = "tinyhash"
    config = TinyHashConfig

    def training_set(self, method, dataset, split, data, seed):
        from biohash.data.loaders import PairedTrainSet

        return PairedTrainSet(dataset, split.train, ("print",), data.image_size, augment=False, seed=seed)

    def build(self, method, train_set, seed):
        torch.manual_seed(seed)
        model = TinyConvHash(method.bits, len(train_set.classes))

        def step(net, batch):
            codes = net(batch["print"])
            parts = {"class": F.cross_entropy(method.scale * net.classifier(codes), batch["label"]),
                     "quant": (1 - codes.abs()).mean()}
            return {"loss": parts["class"] + method.quant_weight * parts["quant"], **parts}

        return model, step, {"n_classes": len(train_set.classes)}

    def rebuild(self, config):
        return TinyConvHash(config["model"]["bits"], config["model"]["n_classes"])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    result = runner.invoke(app, ["train", "tinyhash", "--identities", "40", "--captures", "4", "--epochs", "12",
                                 "-b", "16", "--lr", "0.01", "--bits", "32", "--scale", "10", "--name", "t",
                                 "--runs", str(runs)])
    assert result.exit_code == 0, result.output
    return runs / "t"


def test_a_recipe_defined_outside_biohash_gets_a_train_command_with_its_settings():
    text = runner.invoke(app, ["train", "--help"]).output
    assert "tinyhash" in text and "A test recipe" in text
    text = " ".join(runner.invoke(app, ["train", "tinyhash", "--help"], env={"COLUMNS": "200"}).output.split())
    assert "--quant-weight" in text and "[default: (0.1)]" in text and "--scale" in text
    assert "--epochs" in text and "--dataset" in text  # the data and fit options every recipe shares


def test_the_test_recipe_trains_evaluates_and_is_restored(tiny_run):
    config = yaml.safe_load((tiny_run / "config.yaml").read_text())
    assert config["recipe"] == "tinyhash" and config["recipe_module"] == __name__
    assert config["model"] == {"bits": 32, "scale": 10.0, "quant_weight": 0.1, "n_classes": config["model"]["n_classes"]}
    result = runner.invoke(app, ["eval", str(tiny_run)])
    assert result.exit_code == 0, result.output
    print_mode = json.loads((tiny_run / "metrics.json").read_text())["modes"]["print"]
    assert print_mode["eer"] < 0.3 and print_mode["genuine_mean"] > print_mode["impostor_mean"]  # unseen palms

    from biohash.restore import load_model

    model = load_model(tiny_run)
    assert isinstance(model, TinyConvHash) and not model.training


def test_the_test_recipe_exports_to_onnx_and_deploys(tiny_run, tmp_path):
    from biohash.data.datasets import open_dataset
    from biohash.encoder import Encoder

    result = runner.invoke(app, ["export", str(tiny_run), "--format", "onnx"])
    assert result.exit_code == 0, result.output
    bundle = json.loads((tiny_run / "export" / "bundle.json").read_text())
    assert bundle["recipe"] == "tinyhash" and bundle["modalities"] == ["print"] and bundle["bits"] == 32
    assert bundle["checks"]["print/onnx"]["passed"] and not bundle["failed_checks"]
    ds = open_dataset("synthetic", identities=3, captures=2, seed=99, size=128, modalities=("print",))
    images = [ds.load(s) for s in ds.samples]
    by_torch = Encoder(tiny_run / "export", backend="torch").encode(images, "print")
    by_onnx = Encoder(tiny_run / "export", backend="onnx").encode(images, "print")
    assert np.mean(np.unpackbits(by_torch.bits ^ by_onnx.bits)) < 0.03
