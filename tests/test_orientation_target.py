"""CompCode's orientations as an auxiliary, label-free target (`lambda_orientation`): the feature map predicts the
dominant Gabor orientation of every cell of CompCode's 32 x 32 grid, on the labeled palms and on unlabeled ones."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from biohash.errors import ConfigError
from biohash.imaging.compcode import compcode
from biohash.imaging.transforms import standardize
from biohash.train.data.config import DataConfig
from biohash.train.data.synthetic import SyntheticPalms
from biohash.train.eval_run import evaluate_run
from biohash.train.fit import FitConfig
from biohash.train.models.hashnet import HashNet
from biohash.train.recipes.base import load_model
from biohash.train.recipes.cohash import CohashConfig, build, loss_step
from biohash.train.recipes.compcode_teacher import compcode_codes
from biohash.train.recipes.orientation import orientation_loss
from biohash.train.train_job import train


def _palms(n: int, seed: int = 5) -> torch.Tensor:
    gen = SyntheticPalms(seed=seed)
    return torch.from_numpy(np.stack([gen.render(i, "print", 0) for i in range(n)]).astype(np.float32)[:, None])


def test_the_term_is_the_cross_entropy_against_opencvs_compcode_of_each_image():
    images = _palms(3)
    torch.manual_seed(0)
    logits = torch.randn(3, 6, 32, 32)
    codes = torch.from_numpy(np.stack([compcode(im[0].numpy().astype(np.uint8)) for im in images])).long()
    picked = logits.log_softmax(1).gather(1, codes[:, None])[:, 0]
    assert orientation_loss(logits, images).item() == pytest.approx(-picked.mean().item(), rel=1e-4)
    coarse = torch.randn(3, 6, 16, 16)  # a smaller grid is read at the nearest cell
    assert orientation_loss(coarse, images).item() == pytest.approx(
        F.cross_entropy(coarse.repeat_interleave(2, 2).repeat_interleave(2, 3), codes).item(), rel=1e-4)


def test_the_head_leaves_the_code_alone_and_bad_settings_are_named():
    torch.manual_seed(0)
    plain = HashNet("tiny", 32).eval()
    with_head = HashNet("tiny", 32, orientation="map").eval()
    with_head.load_state_dict(plain.state_dict(), strict=False)
    x = torch.randn(2, 1, 64, 64)
    assert torch.equal(plain(x), with_head(x))
    assert with_head.forward_training(x)[2].shape == (2, 6, 4 * 4, 4 * 4)  # tiny: a 4 x 4 map at 64 px
    assert plain.forward_training(x)[2] is None
    with pytest.raises(ValueError, match="no orientation head"):
        plain.orientation_logits(plain.forward_features(x))
    with pytest.raises(ConfigError, match="lambda_orientation"):
        CohashConfig(lambda_orientation=-1)
    with pytest.raises(ConfigError, match="--teachers or --lambda-orientation"):
        CohashConfig(teacher_data="tongji:x")
    CohashConfig(teacher_data="tongji:x", lambda_orientation=0.5)  # unlabeled palms for the orientation term alone


def test_the_step_adds_the_weighted_term_on_labeled_and_unlabeled_palms():
    config = CohashConfig(backbone="tiny", bits=32, loss="arcface", dropout=0.0, lambda_cross=0.0,
                          lambda_orientation=0.3)
    torch.manual_seed(0)
    model, _ = build(config, n_classes=4, modalities=("print",))
    pool = {"print": _palms(6, seed=9).to(torch.float16)}
    step = loss_step(config, [], pool)
    model.train()
    batch = {"print": _palms(4), "label": torch.arange(4)}
    out = step(model, batch)
    logits = model.net("print").forward_training(batch["print"])[2]
    assert out["orientation_print"].item() == pytest.approx(orientation_loss(logits, batch["print"]).item(), rel=1e-4)
    assert torch.isfinite(out["orientation_unlabeled_print"]) and out["orientation_unlabeled_print"] > 0
    expected = out["arcface_print"] + config.lambda_quant * out["quant_print"] + 0.3 * (
        out["orientation_print"] + out["orientation_unlabeled_print"])
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-4)


def test_training_steps_teach_the_head_orientations_of_palms_it_never_saw():
    config = CohashConfig(backbone="small", bits=32, loss="arcface", lambda_cross=0.0, lambda_orientation=5.0)
    torch.manual_seed(0)
    model, step = build(config, n_classes=16, modalities=("print",))
    train_gen, new_gen = SyntheticPalms(seed=3), SyntheticPalms(seed=77)
    images = torch.from_numpy(np.stack([standardize(train_gen.render(i, "print", c), 128)
                                        for i in range(16) for c in range(4)]))
    labels = torch.arange(16).repeat_interleave(4)
    unseen = torch.from_numpy(np.stack([standardize(new_gen.render(i, "print", 0), 128) for i in range(8)]))
    codes = compcode_codes(unseen)
    majority = np.bincount(codes.flatten().numpy(), minlength=6).max() / codes.numel()

    def accuracy() -> float:
        with torch.no_grad():
            return (model.eval().net("print").forward_training(unseen)[2].argmax(1) == codes).float().mean().item()

    assert accuracy() < majority + 0.05  # the untrained head: chance
    optimizer = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(40):
        pick = torch.randperm(len(images))[:16]
        loss = step(model.train(), {"print": images[pick], "label": labels[pick]})["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert accuracy() > majority + 0.1  # measured 0.34 against a majority orientation of 0.19


def test_a_run_with_the_term_saves_its_head_and_evaluates(tmp_path):
    data = DataConfig(identities=8, captures=4, image_size=64, protocol="closed", seed=0)
    config = CohashConfig(backbone="tiny", bits=32, lambda_orientation=1.0)
    train(tmp_path / "run", data, config, FitConfig(epochs=1, batch_size=8, seed=0))
    model = load_model(tmp_path / "run")
    assert model.net("print").forward_training(torch.zeros(1, 1, 64, 64))[2] is not None
    assert set(evaluate_run(tmp_path / "run")) >= {"print", "vein"}


@pytest.mark.parametrize("kind, grid", [("map", 16), ("map3", 16), ("embedding", 32)])
def test_each_head_kind_predicts_the_grid_from_where_it_says_and_unlabeled_palms_reach_it(kind, grid):
    torch.manual_seed(0)
    config = CohashConfig(backbone="tiny", bits=32, loss="arcface", lambda_cross=0.0, lambda_orientation=1.0,
                          orientation_head=kind)
    model, _ = build(config, n_classes=4, modalities=("print",))
    branch = model.net("print").eval()
    x = _palms(2)[:, :, :64, :64]
    logits = branch.forward_training(x)[2]
    assert logits.shape == (2, 6, grid, grid)  # tiny: a 4 x 4 map (x 4 cells) or the whole 32 x 32 grid
    features = branch.forward_features(x)
    if kind == "embedding":  # read from the code's own input: a changed embedding changes it, the map does not
        e = branch.reduce(features)
        assert torch.allclose(branch.orientation_logits(features * 0, e), logits)
        assert not torch.allclose(branch.orientation_logits(features, e * 0), logits)
    else:
        assert torch.allclose(branch.orientation_logits(features), logits)
    pool = {"print": _palms(4, seed=9)[:, :, :64, :64]}
    out = loss_step(config, [], pool)(model.train(), {"print": _palms(4)[:, :, :64, :64], "label": torch.arange(4)})
    out["orientation_unlabeled_print"].backward()
    assert next(branch.orientation_head.parameters()).grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="orientation_head"):
        CohashConfig(lambda_orientation=1.0, orientation_head="deep")
