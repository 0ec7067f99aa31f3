"""ArcFace and supervised contrastive losses against slow, obvious references; the arcface co-hash recipe."""
from __future__ import annotations

import json
import math

import numpy as np
import torch

from biohash.train.losses import ArcFaceLoss, SupConLoss


def test_arcface_matches_hand_computation():
    torch.manual_seed(0)
    f, w = torch.randn(5, 8), torch.randn(4, 8)
    labels = torch.tensor([0, 1, 2, 3, 1])
    s, m = 30.0, 0.5
    loss = ArcFaceLoss(s, m)(f, labels, w)
    total = 0.0
    for i in range(5):
        cos = [float(f[i] @ w[j] / (f[i].norm() * w[j].norm())) for j in range(4)]
        y = int(labels[i])
        theta = math.acos(cos[y])
        target = math.cos(theta + m) if theta + m < math.pi else cos[y] - math.sin(m) * m
        logits = [s * (target if j == y else cos[j]) for j in range(4)]
        total += -logits[y] + math.log(sum(math.exp(v) for v in logits))
    assert abs(float(loss) - total / 5) < 1e-3


def test_arcface_margin_costs_more_than_plain_softmax():
    f, w = torch.randn(16, 32), torch.randn(6, 32)
    labels = torch.randint(0, 6, (16,))
    assert ArcFaceLoss(30, 0.5)(f, labels, w) > ArcFaceLoss(30, 0.0)(f, labels, w)


def test_supcon_matches_slow_reference():
    torch.manual_seed(1)
    f = torch.randn(6, 5)
    labels = torch.tensor([0, 0, 1, 1, 1, 2])  # identity 2 has no positive: skipped
    t = 0.1
    z = (f / f.norm(dim=1, keepdim=True)).numpy()
    terms = []
    for i in range(6):
        pos = [p for p in range(6) if p != i and labels[p] == labels[i]]
        if not pos:
            continue
        denom = sum(np.exp(z[i] @ z[a] / t) for a in range(6) if a != i)
        terms.append(-np.mean([np.log(np.exp(z[i] @ z[p] / t) / denom) for p in pos]))
    assert abs(float(SupConLoss(t)(f, labels)) - np.mean(terms)) < 1e-4
    assert float(SupConLoss(t)(f, torch.arange(6))) == 0.0  # no positives at all


def test_arcface_cohash_recipe_trains_and_separates(tmp_path):
    from biohash.train.data.config import DataConfig
    from biohash.train.eval_run import evaluate_run
    from biohash.train.fit import FitConfig
    from biohash.train.recipes.cohash import CohashConfig
    from biohash.train.train_job import train

    data = DataConfig(identities=30, captures=4, image_size=64, seed=3)
    method = CohashConfig(backbone="tiny", bits=32, loss="arcface", lambda_supcon=0.2)
    train(tmp_path / "arc", data, method, FitConfig(epochs=6, batch_size=16, lr=3e-3, seed=0))
    history = json.loads((tmp_path / "arc" / "history.json").read_text())
    assert {"arcface_print", "arcface_vein", "supcon"} <= set(history[0]) and "centroid_print" not in history[0]
    assert history[-1]["loss"] < history[0]["loss"]
    per_mode = evaluate_run(tmp_path / "arc")  # scored like any run, floats beside codes
    assert {"print", "print-float", "cross"} <= set(per_mode)


def test_dhn_arcface_option_uses_the_classifier_weights_with_a_margin():
    from biohash.train.recipes.dhn import DhnConfig, build

    torch.manual_seed(0)
    batch = {"print": torch.randn(8, 1, 64, 64), "label": torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])}
    soft_model, soft_step = build(DhnConfig(backbone="tiny", bits=32, head="avg"), n_classes=4)
    arc_model, arc_step = build(DhnConfig(backbone="tiny", bits=32, head="avg", loss="arcface", lambda_supcon=0.2),
                                n_classes=4)
    arc_model.load_state_dict(soft_model.state_dict())
    soft_model.eval(), arc_model.eval()
    soft, arc = soft_step(soft_model, batch), arc_step(arc_model, batch)
    codes, _ = arc_model(batch["print"])
    expected = ArcFaceLoss(30, 0.5)(codes, batch["label"], arc_model.classifier.weight)
    assert abs(float(arc["class"].detach()) - float(expected.detach())) < 1e-4
    assert float(arc["class"].detach()) > float(soft["class"].detach())
    assert "supcon" in arc and "supcon" not in soft
    arc["loss"].backward()
    assert arc_model.classifier.weight.grad is not None


def test_binary_term_is_arcface_on_the_signed_codes_with_a_straight_through_gradient():
    from biohash.train.recipes.cohash import CohashConfig, build

    torch.manual_seed(0)
    config = CohashConfig(backbone="tiny", bits=32, loss="arcface", lambda_binary=1.0, dropout=0.0, lambda_cross=0)
    model, step = build(config, n_classes=4, modalities=("print",))
    batch = {"print": torch.randn(8, 1, 32, 32), "label": torch.tensor([0, 1, 2, 3] * 2)}
    parts = step(model, batch)
    pre = model.net("print").forward_pre_code(batch["print"])
    by_hand = ArcFaceLoss()(torch.sign(pre), batch["label"], model.centroids)
    assert abs(parts["binary_print"].item() - by_hand.item()) < 1e-5
    model.zero_grad()
    parts["binary_print"].backward()  # sign has no gradient; the straight-through copy passes it to the layer
    assert model.net("print").hash.weight.grad.abs().sum() > 0
