"""Fake quantization, the embedding-distillation recipe and the quantize command."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from biohash.train.models.quant import (
    QuantLayer,
    bake,
    quantize_activation,
    quantize_model,
    quantize_weight,
    quantized_size_bytes,
    set_observing,
)


@pytest.mark.parametrize("bits", [8, 6, 4])
def test_weight_round_trip_error_is_at_most_half_a_step(bits):
    w = torch.randn(16, 8, 3, 3)
    q = quantize_weight(w, bits)
    step = w.abs().flatten(1).amax(dim=1) / (2 ** (bits - 1) - 1)
    assert ((q - w).abs().flatten(1).amax(dim=1) <= step / 2 + 1e-6).all()
    levels = {len(torch.unique(q[c])) for c in range(16)}
    assert max(levels) <= 2 ** bits - 1


def test_activation_round_trip_and_clipping():
    x = torch.linspace(-1, 3, 1000)
    q = quantize_activation(x, torch.tensor(-1.0), torch.tensor(3.0), 8)
    assert (q - x).abs().max() <= 4 / 255 / 2 + 1e-6
    assert quantize_activation(torch.tensor([10.0]), torch.tensor(-1.0), torch.tensor(3.0), 8).item() == \
        pytest.approx(3.0, abs=0.02)
    assert quantize_activation(torch.tensor([0.0]), torch.tensor(-1.0), torch.tensor(3.0), 4).item() == 0.0


def test_rounding_passes_gradients_straight_through():
    w = torch.randn(4, 5, requires_grad=True)
    quantize_weight(w, 4).sum().backward()
    assert torch.allclose(w.grad, torch.ones_like(w))


def test_quantize_model_wraps_every_layer_and_bake_writes_quantized_weights():
    from biohash.train.models.hashnet import HashNet

    net = HashNet("tiny", 32, head="avg").eval()
    q = quantize_model(net, 4)
    layers = [m for m in q.modules() if isinstance(m, QuantLayer)]
    plain = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert len(layers) == len(plain) and q.quant_bits == 4
    assert not any(isinstance(m, QuantLayer) for m in net.modules())  # the original is untouched
    set_observing(q, False)
    with pytest.raises(RuntimeError, match="calibrate"):
        q(torch.randn(2, 1, 32, 32))
    set_observing(q, True)
    q(torch.randn(2, 1, 32, 32))  # observing: ranges now set
    baked = bake(q)
    assert not any(isinstance(m, QuantLayer) for m in baked.modules())
    assert torch.equal(baked.hash.weight, quantize_weight(net.hash.weight, 4))
    assert quantized_size_bytes(q) < sum(p.numel() for p in net.parameters()) * 4 / 4  # under a quarter of FP32
    with pytest.raises(ValueError, match="between 2 and 16"):
        quantize_model(net, 1)


def _synthetic_batches(n: int, size: int, seed: int) -> list[torch.Tensor]:
    from biohash.imaging.transforms import standardize
    from biohash.train.data.datasets import open_dataset

    ds = open_dataset("synthetic", identities=n // 4, captures=4, size=size, seed=seed, modalities=("print",))
    x = torch.from_numpy(np.stack([standardize(ds.load(s), size) for s in ds.samples]))
    return list(x.split(16))


def test_embedding_distillation_lowers_the_embedding_distance():
    from biohash.train.models.hashnet import HashClassifier
    from biohash.train.recipes.quantize import (
        QuantizeConfig,
        build,
        calibrate,
        embedding_distance,
    )

    torch.manual_seed(0)
    teacher = HashClassifier("tiny", 32, 10, "print")
    train, held_out = _synthetic_batches(96, 48, seed=1), _synthetic_batches(32, 48, seed=2)
    with torch.no_grad():  # BatchNorm statistics of real inputs, so the teacher's embeddings are not degenerate
        for x in train * 3:
            teacher.hashnet(x)
    teacher.eval()
    student, step = build(QuantizeConfig(bits=3), teacher, total_steps=60)
    calibrate(student, [{"print": x} for x in train])
    with torch.no_grad():
        before = float(np.mean([embedding_distance(student, teacher, x, "print") for x in held_out]))
    opt = torch.optim.SGD([p for p in student.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    for _ in range(10):
        for x in train:
            loss = step(student, {"print": x})["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
    student.eval()
    with torch.no_grad():
        after = float(np.mean([embedding_distance(student, teacher, x, "print") for x in held_out]))
    assert before > 0.01 and after < 0.7 * before
    assert all(not p.requires_grad for p in teacher.parameters())


def test_quantize_config_errors():
    from biohash.train.recipes.quantize import QuantizeConfig

    with pytest.raises(ValueError, match="unknown data source"):
        QuantizeConfig(source="imagenet")
    with pytest.raises(ValueError, match="--root"):
        QuantizeConfig(source="folder")
    assert QuantizeConfig().look_for("ocular") == "vein" and QuantizeConfig(look="print").look_for("vein") == "print"


def test_ocular_model_trains_and_quantizes_with_synthetic_palms_only(shared_data, tmp_path):
    from typer.testing import CliRunner

    from biohash.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["train", "cohash", "--ds", "iitd-iris", "--root", str(shared_data / "iitd-iris"),
                                 "--model", "tiny", "--bits", "32", "--epochs", "1", "--image-size", "64",
                                 "--name", "ocular", "--runs", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "| ocular |" in result.output  # one branch, same-modality matching
    result = runner.invoke(app, ["quantize", str(tmp_path / "ocular"), "--bits", "8", "--images", "32",
                                 "--epochs", "1", "-b", "16", "--name", "ocular-w8"])
    assert result.exit_code == 0, result.output
    assert "| ocular |" in result.output
    assert "look: null" in (tmp_path / "ocular-w8" / "config.yaml").read_text()  # vein look for NIR by default


def test_embedding_distillation_loss_matches_hand_computed_values():
    from biohash.train.losses import EmbeddingDistillationLoss

    loss = EmbeddingDistillationLoss()
    a = torch.tensor([[3.0, 0.0], [0.0, 2.0]])
    assert float(loss(a, 5 * a)) == pytest.approx(0.0)  # same directions, any length
    assert float(loss(a, torch.tensor([[0.0, 1.0], [0.0, -7.0]]))) == pytest.approx((2.0 + 4.0) / 2)  # 90 and 180 deg
