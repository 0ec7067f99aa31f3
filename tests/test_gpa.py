"""GPA-Net building blocks: part pooling, last-stride removal, branch outputs and the loss."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from biohash.train.losses import GPALoss
from biohash.train.models.gpa import GPANet, part_pool


@pytest.mark.parametrize("hp,vp", [(0, 0), (1, 0), (2, 2), (3, 1), (4, 3)])
def test_part_pooling_shapes_and_values(hp, vp):
    fmap = torch.arange(2 * 3 * 8 * 6, dtype=torch.float32).reshape(2, 3, 8, 6)
    parts = part_pool(fmap, hp, vp)
    assert len(parts) == hp + vp and all(p.shape == (2, 3) for p in parts)
    if hp == 2:  # top half of the rows, averaged over all columns
        assert torch.allclose(parts[0], fmap[:, :, :4, :].mean(dim=(2, 3)))
    if vp == 3:  # last third of the columns
        assert torch.allclose(parts[-1], fmap[:, :, :, 4:].mean(dim=(2, 3)))


def test_too_many_parts_is_a_clear_error():
    with pytest.raises(ValueError, match="cannot cut a 4x4 feature map"):
        part_pool(torch.zeros(1, 2, 4, 4), 5, 1)


def test_last_stride_removed_doubles_the_map():
    x = torch.zeros(1, 3, 128, 128)
    with_stride = GPANet(5, "resnet18", last_stride_one=False).eval()
    without = GPANet(5, "resnet18").eval()
    assert without.last_stride_one and not with_stride.last_stride_one
    assert with_stride.backbone(x).shape[-1] == 4 and without.backbone(x).shape[-1] == 8


def test_branches_in_training_and_features_at_test_time():
    net = GPANet(7, "resnet18", horizontal=2, vertical=3)
    x = torch.randn(4, 3, 96, 96)
    logits = net.train()(x)["logits"]
    assert len(logits) == 1 + 2 + 3 and all(z.shape == (4, 7) for z in logits)
    feats = net.eval()(x)
    assert feats.shape == (4, 512 * 6) and torch.allclose(feats.norm(dim=1), torch.ones(4))


def test_loss_is_global_plus_weighted_parts():
    torch.manual_seed(0)
    logits = [torch.randn(5, 4) for _ in range(3)]
    labels = torch.tensor([0, 1, 2, 3, 0])
    ce = [F.cross_entropy(z, labels, label_smoothing=0.1) for z in logits]
    loss = GPALoss(part_weight=0.5)({"logits": logits}, labels)
    assert loss.item() == pytest.approx((ce[0] + 0.5 * (ce[1] + ce[2])).item())
    code = torch.tensor([[0.5, -1.0], [1.0, 0.0], [-0.8, 0.9], [0.2, 0.2], [1.0, -1.0]])
    hashed = GPALoss(part_weight=0.5, quantization_weight=0.1)({"logits": logits, "code": code,
                                                                "hash_logits": logits[0]}, labels)
    quantization = (0.5 + 0 + 0 + 1 + 0.2 + 0.1 + 0.8 + 0.8 + 0 + 0) / 10
    assert hashed.item() == pytest.approx(loss.item() + ce[0].item() + 0.1 * quantization, rel=1e-5)


def test_efficientnet_last_stride_removed_and_ablation_shapes():
    x = torch.zeros(2, 3, 128, 128)
    net = GPANet(5, "efficientnet_lite0").eval()
    assert net.last_stride_one and net.backbone(x).shape[-1] == 8  # /16 instead of /32
    local = GPANet(5, "tiny", horizontal=3, vertical=0, global_branch=False)
    assert len(local.train()(x)["logits"]) == 3 and local.eval()(x).shape[1] == 3 * local.backbone.num_features
    glob = GPANet(5, "tiny", horizontal=0, vertical=0)
    assert len(glob.train()(x)["logits"]) == 1
    with pytest.raises(ValueError, match="global branch or at least one part"):
        GPANet(5, "tiny", horizontal=0, vertical=0, global_branch=False)


def test_hash_head_gives_codes_and_its_own_classifier():
    net = GPANet(6, "tiny", horizontal=2, vertical=1, bits=32)
    out = net.train()(torch.randn(4, 3, 64, 64))
    assert out["code"].shape == (4, 32) and out["hash_logits"].shape == (4, 6)
    assert out["code"].abs().max() < 1
    assert net.eval().forward_code(torch.randn(3, 3, 64, 64)).shape == (3, 32)
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(net.eval()(x), net.forward_embed(x)) and net.modalities == ()  # named stages, as HashNet's
    assert set(net.train().forward_train(x)) == {"logits", "code", "hash_logits"}
    with pytest.raises(ValueError, match="no hash head"):
        GPANet(6, "tiny").forward_code(torch.randn(1, 3, 64, 64))


def test_11k_protocol_is_identity_disjoint_with_one_gallery_image_per_identity(shared_data):
    from biohash.train.data.datasets import open_dataset
    from biohash.train.data.protocols import make_split

    ds = open_dataset("11k-hands", root=str(shared_data / "11k-hands"), aspects="palmar-right",
                      accessories="exclude")
    split = make_split(ds, "11k", seed=0)
    train_ids = {s.identity for s in split.train}
    test_ids = {s.identity for s in split.test_gallery}
    assert train_ids and test_ids and not train_ids & test_ids
    ordered = ds.identities()
    assert max(ordered.index(i) for i in train_ids) < min(ordered.index(i) for i in test_ids)  # id order halves
    assert len(split.test_gallery) == len(test_ids)  # one enrolled image per test identity
    assert {s.identity for s in split.test_probe} <= test_ids
    assert not set(split.test_gallery) & set(split.test_probe)
    assert not set(split.val_probe) & set(split.train) and {s.identity for s in split.val_probe} <= train_ids
    other = make_split(ds, "11k", seed=1)
    assert other.test_gallery != split.test_gallery  # each draw enrolls different images


def test_gpa_recipe_trains_with_a_slower_backbone(tmp_path):
    from biohash.train.fit import FitConfig, fit
    from biohash.train.recipes.gpa import GpaConfig, build

    torch.manual_seed(0)
    model, step = build(GpaConfig(backbone="tiny", horizontal=2, vertical=1), n_classes=3)
    images = torch.randn(12, 3, 64, 64)
    labels = torch.arange(12) % 3
    images += labels[:, None, None, None].float()  # separable classes
    batches = [{"image": images[i : i + 6], "label": labels[i : i + 6]} for i in (0, 6)]
    loader = torch.utils.data.DataLoader(batches, batch_size=None)
    cfg = FitConfig(epochs=8, batch_size=6, lr=0.02, optimizer="sgd", schedule="constant", warmup_epochs=0)
    history = fit(model, step, loader, cfg, tmp_path)
    assert history[-1]["loss"] < history[0]["loss"]
    ckpt = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=False)
    lrs = sorted(g["lr"] for g in ckpt["optimizer"]["param_groups"])
    assert lrs == pytest.approx([0.002, 0.02])  # backbone at a tenth of the new layers' rate


def test_train_gpa_on_11k_palmar_right_and_evaluate(shared_data, tmp_path):
    from typer.testing import CliRunner

    from biohash.cli import app
    from biohash.train.runs import read_config

    result = CliRunner().invoke(app, ["train", "gpa", "--root", str(shared_data / "11k-hands"), "--aspect",
                                      "palmar-right", "--model", "tiny", "--epochs", "2", "-b", "16", "--image-size",
                                      "64", "--name", "g", "--runs", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "| palmar |" in result.output
    config = read_config(tmp_path / "g")
    assert config["data"]["protocol"] == "11k" and config["data"]["options"]["accessories"] == "exclude"
    metrics = (tmp_path / "g" / "metrics.json").read_text()
    assert '"rank1"' in metrics and '"map"' in metrics
    assert (tmp_path / "g" / "eval" / "11k-test" / "cmc.png").is_file()

    # cross-domain: the palmar-right model on dorsal-right test identities (unseen: the same id-order halves)
    result = CliRunner().invoke(app, ["eval", str(tmp_path / "g"), "--aspect", "dorsal-right"])
    assert result.exit_code == 0, result.output
    assert "| dorsal |" in result.output
    assert (tmp_path / "g" / "eval" / "11k-hands-dorsal-right-exclude-11k-test" / "metrics.json").is_file()
    # a target split whose test identities were trained on is refused
    result = CliRunner().invoke(app, ["eval", str(tmp_path / "g"), "--aspect", "palmar-right", "--protocol", "open"])
    assert result.exit_code != 0 and "were trained on" in result.output


def test_gpa_hash_head_codes_are_evaluated_next_to_the_floats(shared_data, tmp_path):
    from typer.testing import CliRunner

    from biohash.cli import app

    result = CliRunner().invoke(app, ["train", "gpa", "--root", str(shared_data / "11k-hands"), "--aspect",
                                      "palmar-left", "--model", "tiny", "--epochs", "1", "-b", "16", "--image-size",
                                      "64", "--bits", "32", "--horizontal", "1", "--vertical", "0", "--no-global",
                                      "--name", "h", "--runs", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "| palmar |" in result.output and "| palmar-hash |" in result.output


def test_hd_protocol_puts_the_extra_identities_in_the_gallery_only(tmp_path):
    from PIL import Image

    from biohash.train.data.datasets import DatasetError, open_dataset
    from biohash.train.data.protocols import make_split

    for ident in list(range(1, 9)) + [503, 504]:
        for k in (1, 2, 3):
            Image.new("RGB", (32, 32), (ident, k, 0)).save(tmp_path / f"{ident}_{k}.jpg")
    ds = open_dataset("hd", root=str(tmp_path))
    split = make_split(ds, "hd", seed=3)
    assert {s.identity for s in split.train} == {"0001", "0002", "0003", "0004"}
    assert {s.identity for s in split.test_probe} == {"0005", "0006", "0007", "0008"}
    gallery = [s.identity for s in split.test_gallery]
    assert sorted(gallery) == ["0005", "0006", "0007", "0008", "0503", "0504"]  # one image per identity
    assert len(split.test_probe) == 4 * 2
    plain = open_dataset("hd", root=str(tmp_path), extra_from=10_000)
    with pytest.raises(DatasetError, match="gallery-only identities"):
        make_split(plain, "hd")
