"""GPA-Net: global and part-aware features for whole-hand identification.

A backbone (ResNet-50 by default) with its last spatial down-sampling removed feeds a global branch (average
pooling over the whole map) and a local branch that average-pools the map into Hp horizontal stripes and Vp
vertical stripes. Each pooled vector goes through FC-512 + BN + dropout 0.5 to its own identity classifier
for training; at test time the pooled C-dimensional vectors of the global branch and every part are
concatenated and compared by cosine.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from biohash.models.backbones import create_backbone


def part_pool(fmap: torch.Tensor, horizontal: int, vertical: int) -> list[torch.Tensor]:
    """Average-pool a feature map (B, C, H, W) into `horizontal` stripes along H, then `vertical` stripes
    along W, each (B, C). Stripes split the map as evenly as adaptive pooling does."""
    if horizontal < 0 or vertical < 0:
        raise ValueError(f"part counts must be >= 0, got {horizontal} x {vertical}")
    h, w = fmap.shape[-2:]
    if horizontal > h or vertical > w:
        raise ValueError(f"cannot cut a {h}x{w} feature map into {horizontal} horizontal and {vertical} vertical "
                         f"stripes; use a larger input or fewer parts")
    parts = []
    if horizontal:
        rows = F.adaptive_avg_pool2d(fmap, (horizontal, 1)).flatten(2)  # (B, C, Hp)
        parts += list(rows.unbind(2))
    if vertical:
        cols = F.adaptive_avg_pool2d(fmap, (1, vertical)).flatten(2)  # (B, C, Vp)
        parts += list(cols.unbind(2))
    return parts


def remove_last_stride(backbone: nn.Module) -> bool:
    """Set the first block of a torchvision ResNet's last stage to stride 1 (feature map twice as fine);
    returns whether the backbone had such a stage."""
    body = getattr(backbone, "body", None)
    layer4 = body[7] if isinstance(body, nn.Sequential) and len(body) == 8 else None
    if layer4 is None:
        return False
    block = layer4[0]
    for conv in (getattr(block, "conv1", None), getattr(block, "conv2", None)):
        if conv is not None and conv.stride == (2, 2):
            conv.stride = (1, 1)
    if block.downsample is not None:
        block.downsample[0].stride = (1, 1)
    return True


class _Embedding(nn.Module):
    """FC-512 + BN + dropout 0.5, then the identity classifier of one branch (as the paper lists them)."""

    def __init__(self, channels: int, n_classes: int, dim: int = 512, dropout: float = 0.5) -> None:
        super().__init__()
        self.reduce = nn.Sequential(nn.Linear(channels, dim), nn.BatchNorm1d(dim), nn.Dropout(dropout))
        self.classifier = nn.Linear(dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.reduce(x))


class GPANet(nn.Module):
    """Global branch + Hp horizontal and Vp vertical part branches over one backbone.

    forward(x) in training mode -> list of logits (global first, then the parts); in eval mode -> the
    L2-normalised concatenation of the pooled global and part vectors, (B, C * (1 + Hp + Vp)).
    """

    def __init__(self, n_classes: int, backbone: str = "resnet50", horizontal: int = 2, vertical: int = 2,
                 in_chans: int = 3, weights: str | None = None, last_stride_one: bool = True,
                 backbone_lr_scale: float = 0.1) -> None:
        super().__init__()
        self.backbone_lr_scale = backbone_lr_scale
        self.backbone = create_backbone(backbone, in_chans=in_chans, weights=weights)
        self.last_stride_one = last_stride_one and remove_last_stride(self.backbone)
        self.horizontal, self.vertical = horizontal, vertical
        c = self.backbone.num_features
        self.heads = nn.ModuleList(_Embedding(c, n_classes) for _ in range(1 + horizontal + vertical))
        self.embed_dim = c * (1 + horizontal + vertical)

    def param_groups(self) -> list[dict]:
        """Backbone at backbone_lr_scale of the learning rate (the paper: lr / 10), new layers at the full rate;
        the fit loop uses these groups."""
        return [{"params": list(self.backbone.parameters()), "lr_scale": self.backbone_lr_scale},
                {"params": list(self.heads.parameters()), "lr_scale": 1.0}]

    def pooled(self, x: torch.Tensor) -> list[torch.Tensor]:
        fmap = self.backbone(x)
        return [fmap.mean(dim=(2, 3))] + part_pool(fmap, self.horizontal, self.vertical)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor] | torch.Tensor:
        vectors = self.pooled(x)
        if self.training:
            return [head(v) for head, v in zip(self.heads, vectors)]
        return F.normalize(torch.cat(vectors, dim=1), dim=1)


class GPALoss(nn.Module):
    """Label-smoothed cross-entropy (epsilon 0.1) of the global classifier plus lambda times that of every
    part classifier."""

    def __init__(self, smoothing: float = 0.1, part_weight: float = 1.0) -> None:
        super().__init__()
        self.smoothing, self.part_weight = smoothing, part_weight

    def forward(self, logits: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        ce = [F.cross_entropy(z, labels, label_smoothing=self.smoothing) for z in logits]
        return ce[0] + self.part_weight * sum(ce[1:], torch.zeros(()))
