"""A new method is one module: the recipe of tests/tiny_recipe.py (model, loss step, settings), defined in the
test suite and nowhere else, is trained, evaluated, exported, restored and deployed through biohash's normal
commands."""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from biohash.cli import app
from tiny_recipe import TinyConvHash

runner = CliRunner()


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
    assert config["recipe"] == "tinyhash" and config["recipe_module"] == "tiny_recipe"
    # the classifier has one class per training identity: 40 synthetic people less 4 validation and 12 test
    assert config["split"]["train_identities"] == 24
    assert config["model"] == {"bits": 32, "scale": 10.0, "quant_weight": 0.1, "n_classes": 24}
    result = runner.invoke(app, ["eval", str(tiny_run)])
    assert result.exit_code == 0, result.output
    print_mode = json.loads((tiny_run / "metrics.json").read_text())["modes"]["print"]
    assert print_mode["eer"] < 0.3 and print_mode["genuine_mean"] > print_mode["impostor_mean"]  # unseen palms

    from biohash.train.recipes.base import load_model

    model = load_model(tiny_run)
    assert isinstance(model, TinyConvHash) and not model.training


def test_the_test_recipe_exports_to_onnx_and_deploys(tiny_run, tmp_path):
    from biohash.serve.encoder import Encoder
    from biohash.train.data.datasets import open_dataset

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
