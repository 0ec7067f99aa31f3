"""GPA-Net: global and part-aware features for whole-hand identification.

A backbone (ResNet-50 by default) with its last spatial down-sampling removed feeds a global branch (average
pooling over the whole map) and a local branch that average-pools the map into Hp horizontal stripes and Vp
vertical stripes. Each pooled vector goes through FC-512 + BN + dropout 0.5 to its own identity classifier
for training; at test time the pooled C-dimensional vectors of the global branch and every part are
concatenated and compared by cosine. An optional hash head (beyond the paper) maps the concatenation to a
relaxed binary code with its own classifier, so the same network also feeds the Hamming matching engine.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from biohash.errors import ConfigError
from biohash.train.models.backbones import create_backbone


def part_pool(fmap: torch.Tensor, horizontal: int, vertical: int) -> list[torch.Tensor]:
    """Average-pool a feature map (B, C, H, W) into `horizontal` stripes along H, then `vertical` stripes
    along W, each (B, C). Stripes split the map as evenly as adaptive pooling does."""
    if horizontal < 0 or vertical < 0:
        raise ConfigError(f"part counts must be >= 0, got {horizontal} x {vertical}")
    h, w = fmap.shape[-2:]
    if horizontal > h or vertical > w:
        raise ConfigError(f"cannot cut a {h}x{w} feature map into {horizontal} horizontal and {vertical} vertical "
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
    """Give the backbone's last down-sampling stride 1 (feature map twice as fine): the first block of a
    torchvision ResNet's last stage, or the last strided convolution of a timm trunk's blocks (EfficientNet).
    Returns whether the backbone had such a stage."""
    body = getattr(backbone, "body", None)
    if isinstance(body, nn.Sequential) and len(body) == 8:  # torchvision ResNet trunk
        block = body[7][0]
        for conv in (getattr(block, "conv1", None), getattr(block, "conv2", None)):
            if conv is not None and conv.stride == (2, 2):
                conv.stride = (1, 1)
        if block.downsample is not None:
            block.downsample[0].stride = (1, 1)
        return True
    blocks = getattr(getattr(backbone, "net", None), "blocks", None)
    strided = [m for m in blocks.modules() if isinstance(m, nn.Conv2d) and m.stride == (2, 2)] if blocks else []
    if not strided:
        return False
    strided[-1].stride = (1, 1)  # EfficientNet: a depthwise conv whose padding keeps the size at stride 1
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

    Stages, named as HashNet's: forward_embed(x) -> the L2-normalised concatenation of the pooled vectors,
    (B, C * branches); forward_code(x) -> the relaxed code in (-1, 1) of the hash head; forward_train(x) ->
    {"logits": [global, parts...], and with a hash head "hash_logits", "code"} for the loss. forward(x) is
    forward_train in training mode and forward_embed in eval mode. `modalities` is empty: one network for
    whole-hand images, matched on float features (and codes with bits). global_branch=False gives the
    local-only ablation, Hp = Vp = 0 the global-only baseline.
    """

    modalities: tuple[str, ...] = ()

    def __init__(self, n_classes: int, backbone: str = "resnet50", horizontal: int = 2, vertical: int = 2,
                 in_chans: int = 3, *, weights: str | None = None, last_stride_one: bool = True,
                 backbone_lr_scale: float = 0.1, global_branch: bool = True, bits: int | None = None) -> None:
        super().__init__()
        if not global_branch and horizontal + vertical == 0:
            raise ConfigError("GPA-Net needs the global branch or at least one part")
        self.backbone_lr_scale = backbone_lr_scale
        self.backbone = create_backbone(backbone, in_chans=in_chans, weights=weights)
        self.last_stride_one = last_stride_one and remove_last_stride(self.backbone)
        self.horizontal, self.vertical, self.global_branch = horizontal, vertical, global_branch
        c = self.backbone.num_features
        branches = int(global_branch) + horizontal + vertical
        self.heads = nn.ModuleList(_Embedding(c, n_classes) for _ in range(branches))
        self.embed_dim = c * branches
        self.bits = bits
        if bits:
            self.hash = nn.Sequential(nn.Linear(self.embed_dim, bits), nn.BatchNorm1d(bits))
            self.hash_classifier = nn.Linear(bits, n_classes)

    def param_groups(self) -> list[dict]:
        """Backbone at backbone_lr_scale of the learning rate (the paper: lr / 10), new layers at the full rate;
        the fit loop uses these groups."""
        backbone = {id(p) for p in self.backbone.parameters()}
        return [{"params": list(self.backbone.parameters()), "lr_scale": self.backbone_lr_scale},
                {"params": [p for p in self.parameters() if id(p) not in backbone], "lr_scale": 1.0}]

    def pooled(self, x: torch.Tensor) -> list[torch.Tensor]:
        fmap = self.backbone(x)
        return ([fmap.mean(dim=(2, 3))] if self.global_branch else []) + part_pool(fmap, self.horizontal,
                                                                                     self.vertical)

    def _code(self, vectors: list[torch.Tensor]) -> torch.Tensor:
        return torch.tanh(self.hash(F.normalize(torch.cat(vectors, dim=1), dim=1)))

    def forward_embed(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(torch.cat(self.pooled(x), dim=1), dim=1)

    def forward_code(self, x: torch.Tensor) -> torch.Tensor:
        if not self.bits:
            raise ConfigError("this GPA-Net has no hash head; train it with bits set")
        return self._code(self.pooled(x))

    def forward(self, x: torch.Tensor) -> dict[str, object] | torch.Tensor:
        return self.forward_train(x) if self.training else self.forward_embed(x)

    def forward_train(self, x: torch.Tensor) -> dict[str, object]:
        vectors = self.pooled(x)
        out: dict[str, object] = {"logits": [head(v) for head, v in zip(self.heads, vectors)]}
        if self.bits:
            code = self._code(vectors)
            out.update(code=code, hash_logits=self.hash_classifier(code))
        return out
