"""GPA-Net recipe (global and part-aware whole-hand identification): config, build(), the loss step.

Paper settings: ResNet-50 with the last stride removed, Hp = Vp = 2 parts, label smoothing 0.1, part weight
lambda = 1, SGD with Nesterov momentum 0.9, weight decay 5e-4, lr 0.02 for new layers and lr / 10 for the
backbone, x0.1 every 30 epochs, 60 epochs, batch 20, 384x384 input with horizontal flips and colour jitter
(training settings live in train.FitConfig; smaller inputs and fewer epochs are fine on a CPU).
Ablations: global_branch=False (local only), horizontal = vertical = 0 (global only). bits adds a hash head.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from biohash.models.gpa import GPALoss, GPANet


@dataclass
class GpaConfig:
    backbone: str = "resnet50"
    weights: str | None = None
    horizontal: int = 2
    vertical: int = 2
    part_weight: float = 1.0
    smoothing: float = 0.1
    backbone_lr_scale: float = 0.1
    global_branch: bool = True
    bits: int | None = None
    quantization_weight: float = 0.1

    def __post_init__(self) -> None:
        if self.horizontal < 0 or self.vertical < 0:
            raise ValueError(f"part counts must be >= 0, got {self.horizontal} x {self.vertical}")
        if not self.global_branch and self.horizontal + self.vertical == 0:
            raise ValueError("a local-only GPA-Net needs at least one part (horizontal or vertical > 0)")
        if self.bits is not None and self.bits < 8:
            raise ValueError(f"a hash head needs at least 8 bits, got {self.bits}")

    def network(self, n_classes: int, weights: str | None = None) -> GPANet:
        """The GPA-Net these settings describe (weights: None, a file or "imagenet")."""
        return GPANet(n_classes, self.backbone, self.horizontal, self.vertical, weights=weights,
                      backbone_lr_scale=self.backbone_lr_scale, global_branch=self.global_branch, bits=self.bits)


def build(config: GpaConfig, n_classes: int, seed: int = 0):
    """The model and its loss step; a batch holds colour `image` tensors (B, 3, H, W) and `label`."""
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
