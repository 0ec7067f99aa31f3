import numpy as np
import pytest
import torch

from biohash.train.losses import (
    CentroidLoss,
    CentroidSoftmaxLoss,
    CrossModalityLoss,
    QuantizationLoss,
)
from biohash.train.models.backbones import BACKBONES, create_backbone, load_weights
from biohash.train.models.cohash import CoHashNet, hash_centroids
from biohash.train.models.hashnet import HashNet


@pytest.mark.parametrize("name", BACKBONES.names())
def test_every_backbone_forward_backward(name):
    net = create_backbone(name, in_chans=1)
    x = torch.randn(2, 1, 64, 64)
    out = net(x)
    assert out.ndim == 4 and out.shape[1] == net.num_features
    out.mean().backward()
    assert any(p.grad is not None for p in net.parameters())


def test_hashnet_stages_and_code_range():
    net = HashNet("tiny", bits=32).eval()
    x = torch.randn(3, 1, 64, 64)
    assert net.forward_features(x).ndim == 4
    assert net.forward_embed(x).shape == (3, net.embed_dim) == (3, 32 * 16)
    assert HashNet("tiny", bits=32, head="avg").forward_embed(x).shape == (3, net.backbone.num_features)
    assert HashNet("tiny", bits=32, grid=2).forward_embed(x).shape == (3, 32 * 4)
    code = net.forward_code(x)
    assert code.shape == (3, 32) and code.abs().max() < 1
    with pytest.raises(ValueError, match="grey images"):
        net(torch.randn(3, 3, 64, 64))
    with pytest.raises(ValueError, match="multiple of 8"):
        HashNet("tiny", bits=12)


def test_unknown_backbone_lists_names():
    with pytest.raises(KeyError, match="expected one of: .*resnet18"):
        create_backbone("vgg99")


def test_alias_res18():
    assert BACKBONES.canonical("res18") == "resnet18"


def test_local_weights_load_and_missing_file(tmp_path):
    src = create_backbone("small")
    torch.save(src.state_dict(), tmp_path / "w.pt")
    dst = create_backbone("small", weights=tmp_path / "w.pt")
    for a, b in zip(src.state_dict().values(), dst.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        load_weights(dst, tmp_path / "missing.pt")


def test_torchvision_resnet_weights_map_onto_grey_backbone(tmp_path):
    from torchvision.models import resnet18

    tv = resnet18(weights=None)
    torch.save(tv.state_dict(), tmp_path / "rn18.pth")
    net = create_backbone("resnet18", weights=tmp_path / "rn18.pth")
    assert torch.allclose(net.body[0].weight, tv.conv1.weight.sum(1, keepdim=True))
    assert torch.equal(net.body[4][0].conv1.weight, tv.layer1[0].conv1.weight)


@pytest.mark.parametrize("bits", [16, 32, 64])
def test_hadamard_centroids_are_far_apart(bits):
    c = hash_centroids(2 * bits, bits)
    assert set(np.unique(c)) == {-1.0, 1.0}
    d = (bits - c @ c.T) / 2
    off = d[~np.eye(len(c), dtype=bool)]
    assert off.min() >= bits // 2
    assert len(np.unique(c, axis=0)) == len(c)


def test_random_centroids_beyond_hadamard_keep_a_minimum_distance():
    bits = 32
    c = hash_centroids(300, bits, seed=1)
    d = (bits - c @ c.T) / 2
    off = d[~np.eye(300, dtype=bool)]
    assert off.min() >= 6  # random 32-bit codes would often collide or sit 1-3 bits apart
    assert c.shape == (300, 32)


def test_losses_prefer_codes_at_their_centroid():
    centroids = torch.from_numpy(hash_centroids(4, 16))
    labels = torch.tensor([0, 1, 2, 3])
    right = centroids[labels] * 0.95
    wrong = centroids[labels.roll(1)] * 0.95
    loss = CentroidLoss()
    assert loss(right, labels, centroids) < 0.1 < loss(wrong, labels, centroids)
    assert QuantizationLoss()(right) < QuantizationLoss()(right * 0.2)
    soft = CentroidSoftmaxLoss(scale=16)
    assert soft(right, labels, centroids) < 0.1 < soft(wrong, labels, centroids)
    cross = CrossModalityLoss()
    assert cross(right, right, labels, labels) < 0.1 < cross(right, wrong, labels, labels)


def test_sharing_between_modalities():
    head = CoHashNet("tiny", 16, 5, share="head")
    assert head.net("print").hash is head.net("vein").hash
    assert head.net("print").backbone is not head.net("vein").backbone
    separate = CoHashNet("tiny", 16, 5, share="none")
    assert separate.net("print").hash is not separate.net("vein").hash
    one = CoHashNet("tiny", 16, 5, share="all")
    assert one.net("print") is one.net("vein")
    with pytest.raises(ValueError, match="unknown sharing"):
        CoHashNet("tiny", 16, 5, share="trunk")


def test_cohash_branches():
    model = CoHashNet("tiny", 16, 5)
    x = torch.randn(2, 1, 64, 64)
    assert model(x, "print").shape == (2, 16) and model(x, "vein").shape == (2, 16)
    with pytest.raises(KeyError, match="no 'iris' branch"):
        model.net("iris")


def test_efficientnet_lite0_loads_the_packaged_imagenet_weights():
    from biohash.train.models.backbones import packaged_efficientnet_lite0

    state = torch.load(packaged_efficientnet_lite0(), map_location="cpu", weights_only=True)
    net = create_backbone("efficientnet_lite0", weights="imagenet")
    # grey stem = sum of the RGB filters; a deep layer equals the file's tensor at the same position
    assert torch.allclose(net.net.conv_stem.weight, state["_conv_stem.weight"].sum(1, keepdim=True))
    assert torch.equal(net.net.conv_head.weight, state["_conv_head.weight"])
    assert torch.equal(net.net.bn2.running_var, state["_bn1.running_var"])
    assert net(torch.randn(2, 1, 64, 64)).shape == (2, 1280, 2, 2)
    with pytest.raises(ValueError, match="no packaged weights"):
        create_backbone("tiny", weights="imagenet")


def test_warm_start_copies_matching_tensors_but_not_centroids(tmp_path):
    from biohash.train.recipes.cohash import CohashConfig, build

    source, _ = build(CohashConfig(backbone="tiny", bits=32), n_classes=5)
    (tmp_path / "checkpoints").mkdir()
    torch.save({"model": source.state_dict()}, tmp_path / "checkpoints" / "best.pt")
    target, _ = build(CohashConfig(backbone="tiny", bits=64, init=str(tmp_path)), n_classes=7, modalities=("vein",))
    src_w = source.nets["vein"].backbone.body[0][0].weight
    assert torch.equal(target.nets["vein"].backbone.body[0][0].weight, src_w)
    assert target.nets["vein"].hash.weight.shape == (64, 32 * 16)  # other bits: the hash layer stays fresh
    assert target.centroids.shape == (7, 64)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        build(CohashConfig(backbone="tiny", bits=32, init=str(tmp_path / "nothing")), n_classes=3)


def test_test_shifts_average_the_embeddings_of_rolled_copies_in_eval_only():
    from biohash.train.models.hashnet import HashNet

    torch.manual_seed(0)
    net = HashNet("tiny", 32, test_shifts=3).eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        views = [x, torch.roll(x, 3, 2), torch.roll(x, 3, 3), torch.roll(x, -3, 2), torch.roll(x, -3, 3)]
        by_hand = torch.tanh(net.hash(torch.stack([net.forward_embed(v) for v in views]).mean(0)))
        assert torch.allclose(net(x), by_hand, atol=1e-6)
        e, c = net.embed_and_code(x)
        assert torch.allclose(c, by_hand, atol=1e-6) and e.shape == (2, net.embed_dim)
        plain = torch.tanh(net.hash(net.forward_embed(x)))
        assert (net(x) - plain).abs().max() > 1e-4
        twin = HashNet("tiny", 32)
        twin.load_state_dict(net.state_dict())
        net.train(), twin.train()
        assert torch.allclose(net(x), twin(x), atol=1e-6)  # training reads the one image (dropout 0 here)
    with pytest.raises(ValueError, match="test_shifts must be >= 0"):
        HashNet("tiny", 32, test_shifts=-1)


def test_square_test_views_average_the_three_by_three_grid_of_rolled_copies():
    """test_views="square": the image and its eight copies rolled by test_shifts on the 3 x 3 grid (diagonals
    included), where "cross" (the default) averages the image and four axis copies."""
    from biohash.train.models.hashnet import HashNet

    torch.manual_seed(0)
    net = HashNet("tiny", 32, test_shifts=3, test_views="square").eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        views = [torch.roll(x, (dy, dx), dims=(2, 3)) for dy in (-3, 0, 3) for dx in (-3, 0, 3)]
        by_hand = torch.tanh(net.hash(torch.stack([net.forward_embed(v) for v in views]).mean(0)))
        assert torch.allclose(net(x), by_hand, atol=1e-6)
        net.test_views = "cross"
        assert (net(x) - by_hand).abs().max() > 1e-4
    with pytest.raises(ValueError, match="test_views must be one of: cross, square"):
        HashNet("tiny", 32, test_shifts=3, test_views="ring")
