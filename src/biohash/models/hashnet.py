"""HashNet: backbone + hash head. forward_features -> forward_embed -> forward_code, as on every model."""
from __future__ import annotations

import torch
from torch import nn

from biohash.models.backbones import create_backbone


class HashNet(nn.Module):
    """Maps a grey image to a relaxed binary code in (-1, 1)^bits; sign gives the code.

    Args:
        backbone: registered backbone name.
        bits: code length (multiple of 8).
        weights: optional local weights file for the backbone.
    """

    def __init__(self, backbone: str = "small", bits: int = 64, weights: str | None = None,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if bits <= 0 or bits % 8:
            raise ValueError(f"bits must be a positive multiple of 8, got {bits}")
        self.backbone = create_backbone(backbone, in_chans=1, weights=weights)
        self.bits = bits
        self.dropout = nn.Dropout(dropout)
        self.hash = nn.Linear(self.backbone.num_features, bits)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone feature map (B, C, h, w)."""
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"HashNet expects grey images (B, 1, H, W), got {tuple(x.shape)}")
        return self.backbone(x)

    def forward_embed(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled embedding (B, C)."""
        return self.forward_features(x).mean(dim=(2, 3))

    def forward_code(self, x: torch.Tensor) -> torch.Tensor:
        """Relaxed code tanh(W e + b), (B, bits)."""
        return torch.tanh(self.hash(self.dropout(self.forward_embed(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_code(x)
