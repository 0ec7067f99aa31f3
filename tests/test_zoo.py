"""Pretraining, publishing into the zoo, and warm starts from zoo:NAME."""
from __future__ import annotations

import json

import pytest
import torch

from biohash.errors import BiohashError
from biohash.train import zoo


def test_unknown_zoo_name_lists_the_shipped_ones():
    with pytest.raises(BiohashError, match="no shipped model 'nope'; the zoo holds"):
        zoo.resolve("zoo:nope")
    assert str(zoo.resolve("runs/x")) == "runs/x"


def test_pretrain_publish_and_init_from_zoo(tmp_path):
    from biohash.train.data.config import DataConfig
    from biohash.train.fit import FitConfig
    from biohash.train.pretrain import pretrain, publish
    from biohash.train.recipes.cohash import CohashConfig, build
    from biohash.train.train_job import train

    data = DataConfig(identities=100, captures=4, image_size=64, val_fraction=0.1, test_fraction=0.1, seed=11)
    run = pretrain(tmp_path / "pre", data, CohashConfig(backbone="tiny", bits=32),
                   FitConfig(epochs=1, batch_size=16, seed=0), workers=0)
    history = (run / "history.json").read_text()
    assert "val_eer_print" in history
    shelf = tmp_path / "shelf"
    path = publish(run, "tiny-test", "biohash pretrain ...", zoo_dir=shelf)
    weights = torch.load(path, weights_only=True)
    assert "centroids" not in weights and all(v.dtype == torch.float16 for v in weights.values()
                                               if v.is_floating_point())
    card = (shelf / "tiny-test.json").read_text()
    assert "biohash pretrain" in card and "val_eer" in card
    # the CLI publishes a run of files with the command from its environment.json, and `zoo` lists it
    from typer.testing import CliRunner

    from biohash.cli import app

    env = json.loads((run / "environment.json").read_text())
    (run / "environment.json").write_text(json.dumps({**env, "argv": ["/v/bin/biohash", "pretrain", "--resume"]}))
    result = CliRunner().invoke(app, ["publish", str(run), "tiny-cli", "--into", str(shelf)])
    assert result.exit_code == 0, result.output
    published = json.loads((shelf / "tiny-cli.json").read_text())
    assert published["command"] == "biohash pretrain" and published["data"]["seed"] == 11
    # a run a benchmark script trained is published with that script's command, not as a biohash command
    (run / "environment.json").write_text(json.dumps({**env, "argv": ["real_palm.py", "--only", "joined"]}))
    assert CliRunner().invoke(app, ["publish", str(run), "tiny-bench", "--into", str(shelf)]).exit_code == 0
    assert json.loads((shelf / "tiny-bench.json").read_text())["command"] == "python real_palm.py --only joined"
    published["data"].update(dataset="polyu-ms", also=[{"dataset": "tongji"}])  # as a real-palm card reads
    (shelf / "tiny-cli.json").write_text(json.dumps(published))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(zoo, "ZOO", shelf)
        listing = CliRunner().invoke(app, ["zoo"]).output
    assert "zoo:tiny-cli  tiny, 32 bits, real palms: polyu-ms + tongji" in listing
    # a warm start copies every matching tensor; the fresh model then equals the shipped weights
    model, _ = build(CohashConfig(backbone="tiny", bits=32, init=str(path)), n_classes=5)
    own = model.state_dict()
    for k, v in weights.items():
        torch.testing.assert_close(own[k], v.to(own[k].dtype))
    # training from it through the usual job works (the zoo: prefix resolves inside the package)
    monkey = pytest.MonkeyPatch()
    monkey.setattr(zoo, "ZOO", shelf)
    try:
        target = DataConfig(identities=12, captures=4, image_size=64, seed=12)
        train(tmp_path / "ft", target, CohashConfig(backbone="tiny", bits=32, init="zoo:tiny-test"),
              FitConfig(epochs=1, batch_size=8))
    finally:
        monkey.undo()
    assert "init: zoo:tiny-test" in (tmp_path / "ft" / "config.yaml").read_text()


def test_pretraining_refuses_files_and_too_few_identities(tmp_path):
    from biohash.train.data.config import DataConfig
    from biohash.train.fit import FitConfig
    from biohash.train.pretrain import pretrain, pretrain_data
    from biohash.train.recipes.cohash import CohashConfig

    with pytest.raises(ValueError, match="at least 100"):
        pretrain_data(10)
    with pytest.raises(ValueError, match="synthetic"):
        pretrain(tmp_path / "p", DataConfig(dataset="folder", root=str(tmp_path)), CohashConfig(), FitConfig())


def test_shipped_models_load_and_warm_start_every_backbone_tensor():
    from biohash.train.recipes.cohash import CohashConfig, build, warm_start

    assert {"compnet_lite-128", "small-128"} <= set(zoo.names())
    for name in ("compnet_lite-128", "small-128"):
        card = zoo.card(name)
        assert card["data"]["identities"] >= 10000 and card["data"]["seed"] != 0  # not the demo's palms
        assert zoo.resolve(f"zoo:{name}").stat().st_size < 20e6
        model, _ = build(CohashConfig(backbone=card["model"]["backbone"], bits=64), n_classes=7)
        copied = warm_start(model, f"zoo:{name}")
        hash_layers = [k for k in model.state_dict() if ".hash." in k]
        # everything but the centroids and the 64-bit hash layer (the zoo's is 128 bits)
        assert copied == len(model.state_dict()) - 1 - len(hash_layers)


@pytest.mark.slow
def test_demo_starts_from_the_zoo(tmp_path):
    import torch

    from biohash.cli.demo import run_demo
    from biohash.train import zoo

    per_mode = run_demo(tmp_path / "demo", epochs=1, identities=40, bits=32)
    assert "init: zoo:compnet_lite-128" in (tmp_path / "demo" / "config.yaml").read_text()
    assert {"print", "vein", "fused", "cross"} <= set(per_mode)
    # it did start there: after one epoch every learned Gabor filter is still within a few % of the shipped one
    # (a fresh start draws them afresh: tens of % away)
    shipped = torch.load(zoo.resolve("zoo:compnet_lite-128"), map_location="cpu", weights_only=True)
    trained = torch.load(tmp_path / "demo" / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)["model"]
    gabor = [k for k in shipped if ".gabor." in k and k in trained]
    assert len(gabor) >= 10
    for k in gabor:
        a, b = shipped[k].float(), trained[k].float()
        assert torch.allclose(a, b, rtol=0.05, atol=0.05), k


REAL = "small-real-256"


def test_the_real_palm_model_was_trained_on_training_palms_only():
    """The real-palm checkpoint's card names its databases and split seed: its validation and test palms (the
    open-set split of that seed) were never trained on, so users can score it on them honestly."""
    card = zoo.card(REAL)
    parts = [card["data"]] + card["data"]["also"]
    assert [p["dataset"] for p in parts] == ["casia-ms", "polyu-ms", "tongji"]
    assert card["data"]["protocol"] == "open" and card["data"]["seed"] == 0
    assert all(p["test_fraction"] == 0.3 and p["val_fraction"] == 0.1 for p in parts[1:])
    assert card["validation"]["epoch"] == card["epoch"] and zoo.resolve(f"zoo:{REAL}").stat().st_size < 20e6


def test_the_real_palm_model_separates_palms_it_never_trained_on(shared_data):
    """Warm-started into a fresh model, zoo:small-real-256's print branch puts genuine pairs of 20 PolyU test
    palms (split seed 0: never trained on, never used to choose the checkpoint) far from impostor pairs."""
    import numpy as np

    from biohash.imaging.transforms import standardize
    from biohash.match.codes import from_real, hamming
    from biohash.match.metrics import eer
    from biohash.train.data.config import DataConfig, open_split
    from biohash.train.recipes.cohash import CohashConfig, build, warm_start

    polyu = DataConfig(dataset="polyu-ms", root=str(shared_data / "polyu-ms-full"), seed=0,
                       options={"bands": "green,nir"})
    dataset, split = open_split(polyu)
    people = sorted({s.identity for s in split.test_probe})[:20]
    samples = [s for s in split.test_gallery + split.test_probe if s.identity in people and s.modality == "print"]
    shipped = zoo.card(REAL)["model"]
    model, _ = build(CohashConfig(backbone=shipped["backbone"], bits=shipped["bits"]), n_classes=7)
    assert warm_start(model, f"zoo:{REAL}") == len(model.state_dict()) - 1  # all but the centroids
    images = torch.from_numpy(np.stack([standardize(dataset.load(s), 128) for s in samples]))
    with torch.no_grad():
        codes = from_real(model.eval()(images, "print").numpy())
    distance = hamming(codes, codes)
    ids = np.array([s.identity for s in samples])
    upper = np.triu(np.ones_like(distance, dtype=bool), 1)
    same = ids[:, None] == ids[None]
    genuine, impostor = -distance[upper & same], -distance[upper & ~same]
    assert len(genuine) > 1000 and eer(genuine, impostor).rate < 0.08
