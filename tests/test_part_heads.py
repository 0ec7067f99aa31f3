"""Part identity terms (PCB's part classifiers, GPA-Net's part branches, on the spatial head of a palm code):
each block of the pooled grid gets its own hash layer, trained towards the palm's centroid on its own, so every
region of the palm has to tell palms apart, not only the principal-line layout of the whole."""
from __future__ import annotations

import pytest
import torch

from biohash.errors import ConfigError
from biohash.train.losses import ArcFaceLoss
from biohash.train.models.hashnet import HashNet
from biohash.train.recipes.cohash import CohashConfig, build


def test_each_part_pre_code_reads_only_its_block_of_the_grid():
    torch.manual_seed(0)
    net = HashNet("tiny", 32, grid=4, parts=2).eval()
    e = torch.randn(3, net.embed_dim)
    parts = net.part_pre_codes(e)
    assert len(parts) == 4 and all(p.shape == (3, 32) for p in parts)
    grid = e.view(3, 32, 4, 4)
    top_right = grid[:, :, 0:2, 2:4].flatten(1)  # part 1: row block 0, column block 1
    assert torch.allclose(parts[1], net.part_hash[1](top_right))
    changed = grid.clone()
    changed[:, :, 2:, 2:] += 5  # the bottom-right block only
    after = net.part_pre_codes(changed.flatten(1))
    assert all(torch.equal(a, b) for a, b in zip(after[:3], parts[:3], strict=True))
    assert not torch.equal(after[3], parts[3])


def test_part_heads_leave_the_code_alone_and_refuse_a_grid_they_do_not_divide():
    torch.manual_seed(0)
    plain = HashNet("tiny", 32, grid=4).eval()
    with_parts = HashNet("tiny", 32, grid=4, parts=2).eval()
    with_parts.load_state_dict(plain.state_dict(), strict=False)
    x = torch.randn(2, 1, 64, 64)
    assert torch.equal(plain(x), with_parts(x))
    with pytest.raises(ConfigError, match="parts"):
        HashNet("tiny", 32, grid=4, parts=3)
    with pytest.raises(ConfigError, match="parts"):
        HashNet("tiny", 32, head="avg", parts=2)
    with pytest.raises(ConfigError, match="parts"):
        CohashConfig(parts=-1)


def test_the_step_adds_lambda_parts_times_the_mean_part_arcface_term():
    config = CohashConfig(backbone="tiny", bits=32, loss="arcface", dropout=0.0, parts=2, lambda_parts=0.7,
                          lambda_cross=0.0)
    torch.manual_seed(0)
    model, step = build(config, n_classes=6, modalities=("print",))
    plain = build(CohashConfig(backbone="tiny", bits=32, loss="arcface", dropout=0.0, lambda_cross=0.0),
                  n_classes=6, modalities=("print",))[1]
    model.train()
    batch = {"print": torch.randn(6, 1, 64, 64), "label": torch.arange(6)}
    torch.manual_seed(1)
    out = step(model, batch)
    torch.manual_seed(1)
    base = plain(model, batch)
    hn = model.net("print")
    by_hand = torch.stack([ArcFaceLoss(config.arc_scale, config.arc_margin)(z, batch["label"], model.centroids)
                           for z in hn.part_pre_codes(hn.forward_embed(batch["print"]))]).mean()
    assert torch.allclose(out["parts_print"], by_hand, atol=1e-5)
    assert torch.allclose(out["loss"], base["loss"] + 0.7 * by_hand, atol=1e-4)
    assert "parts_print" not in base
