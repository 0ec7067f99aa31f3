"""GPA-Net recipe (global and part-aware whole-hand identification): config, build(), the loss step.

Paper settings: ResNet-50 with the last stride removed, Hp = Vp = 2 parts, label smoothing 0.1, part weight
lambda = 1, SGD with Nesterov momentum 0.9, weight decay 5e-4, lr 0.02 for new layers and lr / 10 for the
backbone, x0.1 every 30 epochs, 60 epochs, batch 20, 384x384 input with horizontal flips and colour jitter
(training settings live in train.FitConfig; smaller inputs and fewer epochs are fine on a CPU).
Ablations: global_branch=False (local only), horizontal = vertical = 0 (global only). bits adds a hash head.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from biohash.errors import ConfigError
from biohash.train.recipes.base import Recipe, option, register_recipe

if TYPE_CHECKING:  # torch loads when a model is built, so `biohash train gpa --help` stays instant
    import torch

    from biohash.train.models.gpa import GPANet


@dataclass
class GpaConfig:
    """GPA-Net settings; `aspect` selects the 11K aspect (it sets the adapter's aspects option)."""

    backbone: str = option("resnet50", "registered backbone (paper: resnet50)")
    weights: str | None = option(None, "backbone weights file (e.g. torchvision resnet50) or imagenet")
    horizontal: int = option(2, "horizontal parts Hp")
    vertical: int = option(2, "vertical parts Vp")
    part_weight: float = option(1.0, "lambda, weight of the part losses")
    smoothing: float = option(0.1, "label smoothing")
    backbone_lr_scale: float = option(0.1, "backbone learning rate / new layers' learning rate")
    global_branch: bool = option(True, "--no-global: the local-only ablation")
    bits: int | None = option(None, "add a hash head with this many bits (binary codes for matching)")
    quantization_weight: float = option(0.1, "quantization loss weight of the hash head")
    aspect: str | None = option(None, "11K aspect: dorsal-right, dorsal-left, palmar-right, palmar-left "
                                "(images with accessories left out, as in the paper)")

    def __post_init__(self) -> None:
        if self.horizontal < 0 or self.vertical < 0:
            raise ConfigError(f"part counts must be >= 0, got {self.horizontal} x {self.vertical}")
        if not self.global_branch and self.horizontal + self.vertical == 0:
            raise ConfigError("a local-only GPA-Net needs at least one part (horizontal or vertical > 0)")
        if self.bits is not None and self.bits < 8:
            raise ConfigError(f"a hash head needs at least 8 bits, got {self.bits}")

    def network(self, n_classes: int, weights: str | None = None) -> GPANet:
        """The GPA-Net these settings describe (weights: None, a file or "imagenet")."""
        from biohash.train.models.gpa import GPANet

        return GPANet(n_classes, self.backbone, self.horizontal, self.vertical, weights=weights,
                      backbone_lr_scale=self.backbone_lr_scale, global_branch=self.global_branch, bits=self.bits)


def build(config: GpaConfig, n_classes: int, seed: int = 0):
    """The model and its loss step; a batch holds colour `image` tensors (B, 3, H, W) and `label`."""
    import torch

    from biohash.train.losses import GPALoss

    torch.manual_seed(seed)
    model = config.network(n_classes, weights=config.weights)
    loss = GPALoss(config.smoothing, config.part_weight, config.quantization_weight)

    def step(net: GPANet, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = net(batch["image"])
        labels = batch["label"]
        total = loss(out, labels)
        acc = (out["logits"][0].argmax(dim=1) == labels).float().mean().detach()
        return {"loss": total, "branch0_acc": acc}

    return model, step


@register_recipe
class GpaRecipe(Recipe):
    """Train GPA-Net (global + horizontal/vertical part branches) for whole-hand identification."""

    name = "gpa"
    config = GpaConfig
    produces = "floats"
    data_defaults = {"dataset": "11k-hands", "protocol": "11k", "options": {"colour": True}}
    fit_defaults = {"epochs": 60, "batch_size": 20, "lr": 0.02, "optimizer": "sgd", "schedule": "step",
                    "warmup_epochs": 0}
    flags = {"global_branch": ("--global/--no-global",)}

    def training_set(self, method, dataset, split, data, seed):
        from biohash.train.data.loaders import HandTrainSet

        return HandTrainSet(dataset, split.train, data.image_size, augment=True, seed=seed)

    def data_options(self, method):
        return {"aspects": method.aspect, "accessories": "exclude"} if method.aspect else {}

    def build(self, method, train_set, seed):
        model, step = build(method, len(train_set.classes), seed=seed)
        return model, step, {"n_classes": len(train_set.classes)}

    def rebuild(self, config):
        settings = dict(config["model"])
        n_classes = settings.pop("n_classes")
        settings["weights"] = None  # the checkpoint holds the trained weights
        return GpaConfig(**settings).network(n_classes)
