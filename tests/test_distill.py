"""Distilled hashing: the student's Table 1 shapes, each loss term by hand, and distillation pulling the
student's codes towards the teacher's."""
from __future__ import annotations

import math

import pytest
import torch

from biohash.train.losses import (
    CodeL2Loss,
    L1QuantizationLoss,
    PairwiseHashLoss,
    SoftTargetLoss,
)
from biohash.train.models.hashnet import HashClassifier, HashNet


def test_student_has_the_table_1_shapes_and_parameter_count():
    net = HashNet("student", bits=128, head="avg")
    x = torch.zeros(2, 1, 128, 128)
    convs = net.backbone.convs
    shapes = []
    for layer in convs:
        x = layer(x)
        shapes.append(tuple(x.shape[1:]))
    assert shapes[:6] == [(16, 32, 32), (16, 32, 32), (16, 16, 16), (32, 8, 8), (32, 8, 8), (32, 4, 4)]
    assert tuple(convs[0].weight.shape) == (16, 1, 3, 3) and convs[0].stride == (4, 4)
    assert tuple(convs[3].weight.shape) == (32, 16, 5, 5) and convs[3].stride == (2, 2)
    assert tuple(net.backbone.fc[1].weight.shape) == (512, 512) and tuple(net.hash.weight.shape) == (128, 512)
    # 3*3*16+16 + 5*5*16*32+32 + 512*512+512 + 512*128+128
    assert sum(p.numel() for p in net.parameters()) == 160 + 12_832 + 262_656 + 65_664 == 341_312
    codes = net(torch.randn(3, 1, 128, 128))
    assert codes.shape == (3, 128) and codes.abs().max() < 1


def test_pairwise_hash_loss_by_hand():
    codes = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])
    labels = torch.tensor([0, 0, 1])
    # pairs: (0,1) same, D=4 -> 2; (0,2) different, D=8 -> max(5-8,0)/2 = 0; (1,2) different, D=4 -> 0.5
    assert PairwiseHashLoss(margin=5.0)(codes, labels).item() == pytest.approx((2 + 0 + 0.5) / 3)
    # default margin scales the paper's 180 at 128 bits: 2.8125 at 2 bits -> (1,2) costs 0
    assert PairwiseHashLoss()(codes, labels).item() == pytest.approx(2 / 3)


def test_quantization_code_l2_and_soft_target_by_hand():
    assert L1QuantizationLoss()(torch.tensor([[0.5, -1.0], [0.0, 1.0]])).item() == pytest.approx(1.5 / 4)
    assert CodeL2Loss()(torch.tensor([[1.0, 0.5]]), torch.tensor([[0.0, 0.5]])).item() == pytest.approx(1.0)
    # uniform teacher; student logits / 5 = [0, ln 3] -> softmax [1/4, 3/4]
    soft = SoftTargetLoss(teacher_temperature=20, student_temperature=5)
    value = soft(torch.tensor([[0.0, 5 * math.log(3)]]), torch.tensor([[7.0, 7.0]])).item()
    assert value == pytest.approx(-0.5 * (math.log(0.25) + math.log(0.75)))


def test_distillation_moves_student_codes_towards_the_teacher(tmp_path):
    from biohash.train.data.config import DataConfig, open_split
    from biohash.train.data.loaders import IdentityBatchSampler, PairedTrainSet, image_batches
    from biohash.train.recipes.distill import DistillConfig, build

    torch.manual_seed(0)
    data = DataConfig(identities=12, captures=6, image_size=64, protocol="closed", seed=0)
    dataset, split = open_split(data)
    train = PairedTrainSet(dataset, split.train, ("print",), 64, augment=False, fresh=True)
    teacher = HashClassifier("tiny", 32, len(train.classes), "print").eval()
    student, step = build(DistillConfig(teacher="given"), teacher)
    held_out = next(image_batches(dataset, [s for s in split.test_probe if s.modality == "print"], 64, 64))

    def agreement() -> float:
        student.eval()
        with torch.no_grad():
            return (torch.sign(student(held_out)[0]) == torch.sign(teacher(held_out)[0])).float().mean().item()

    before = agreement()
    labels = [train.classes[a.identity] for a in train.anchors]
    loader = torch.utils.data.DataLoader(train, batch_sampler=IdentityBatchSampler(labels, 16, 4))
    opt = torch.optim.AdamW(student.parameters(), lr=3e-3)
    for epoch in range(8):
        train.epoch = epoch
        student.train()
        for batch in loader:
            loss = step(student, batch)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
    after = agreement()
    assert after > before + 0.15 and after > 0.75, (before, after)


def test_identity_batches_hold_genuine_pairs():
    from biohash.train.data.loaders import IdentityBatchSampler

    labels = [i // 3 for i in range(30)]  # 10 identities x 3 items
    sampler = IdentityBatchSampler(labels, batch_size=8, per_identity=4, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 3
    for batch in batches:
        ids = [labels[i] for i in batch]
        assert len(batch) == 8 and len(set(ids)) == 2 and all(ids.count(i) == 4 for i in set(ids))
    with pytest.raises(ValueError, match="multiple of per_identity"):
        IdentityBatchSampler(labels, batch_size=6, per_identity=4)


def test_train_dhn_then_distill_then_eval_from_the_command_line(tmp_path):
    from typer.testing import CliRunner

    from biohash.cli import app

    runner = CliRunner()
    common = ["--epochs", "2", "-b", "16", "--runs", str(tmp_path)]
    result = runner.invoke(app, ["train", "dhn", "--ds", "synthetic", "--identities", "12", "--captures", "6",
                                 "--image-size", "64", "--model", "tiny", "--bits", "16", "--protocol", "closed",
                                 "--name", "teacher", *common])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["train", "distill", "--teacher", str(tmp_path / "teacher"), "--name", "student",
                                 *common])
    assert result.exit_code == 0, result.output
    assert "| print |" in result.output
    from biohash.train.runs import read_config

    config = read_config(tmp_path / "student")
    assert config["recipe"] == "distill" and config["model"]["backbone"] == "student"
    assert config["data"]["image_size"] == 64 and config["model"]["bits"] == 16
    result = runner.invoke(app, ["eval", str(tmp_path / "student")])
    assert result.exit_code == 0 and "| print |" in result.output, result.output
