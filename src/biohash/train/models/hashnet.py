"""HashNet: backbone + hash head. forward_features -> forward_embed -> forward_code, as on every model."""
from __future__ import annotations

from typing import cast

import torch
from torch import nn

from biohash.errors import ConfigError
from biohash.train.models.backbones import create_backbone

HEADS = ("spatial", "avg")
ORIENTATIONS, ORIENTATION_UPSCALE = 6, 4  # CompCode's orientations; its 32 x 32 grid over a /16 map of 128 px
ORIENTATION_GRID = 32  # the embedding head predicts CompCode's grid at its own size
ORIENTATION_HEADS = ("map", "map3", "embedding")
TEST_VIEWS = ("cross", "square")


class HashNet(nn.Module):
    """Maps a grey image to a relaxed binary code in (-1, 1)^bits; sign gives the code.

    Args:
        backbone: registered backbone name.
        bits: code length (multiple of 8).
        weights: optional local weights file for the backbone.
        head: "spatial" keeps where things are (1x1 conv to 32 channels, grid x grid average pool, flatten): palm
            lines are recognised by their position; "avg" is plain global average pooling.
        dropout: dropout before the hash layer.
        grid: side of the spatial head's average-pooling grid.
        test_shifts: when > 0, evaluation (not training) averages the embeddings of the image and of four
            copies rolled by that many pixels up, down, left and right before the hash layer: bits near zero
            settle, so the code loses less to binarisation (same template size, five times the encoding).
        test_views: which copies test_shifts averages: "cross" (the image and the four above) or "square" (the
            3 x 3 grid of rolls, diagonals included: nine encodings; at 8 px it won on one run's PolyU validation
            palms and lost on its test palms: README, ablation).
        parts: blocks per side of the pooled grid that get a hash layer of their own (training terms only).
        orientation: a head predicting CompCode's orientation grid (training terms only): "map", a 1x1 layer on
            the feature map, ORIENTATIONS logits for each of the 4 x 4 grid cells under every feature position;
            "map3", a 3x3 layer (batch norm, ReLU) before it; "embedding", one linear layer from the embedding the
            hash layer reads to the whole 32 x 32 grid, so the code's own input must hold it. "" for none.
    """

    def __init__(self, backbone: str = "small", bits: int = 64, weights: str | None = None, head: str = "spatial",
                 dropout: float = 0.0, *, grid: int = 4, test_shifts: int = 0, test_views: str = "cross",
                 parts: int = 0, orientation: str = "") -> None:
        super().__init__()
        if bits <= 0 or bits % 8:
            raise ConfigError(f"bits must be a positive multiple of 8, got {bits}")
        if head not in HEADS:
            raise ConfigError(f"unknown head {head!r}; expected one of: {', '.join(HEADS)}")
        self.backbone = create_backbone(backbone, in_chans=1, weights=weights)
        if test_shifts < 0:
            raise ConfigError(f"test_shifts must be >= 0 pixels, got {test_shifts}")
        if test_views not in TEST_VIEWS:
            raise ConfigError(f"test_views must be one of: {', '.join(TEST_VIEWS)}; got {test_views!r}")
        if parts < 0 or (parts and (head != "spatial" or grid % parts)):
            raise ConfigError(f"parts must divide the spatial head's grid ({grid}), got {parts} with head {head!r}")
        self.bits, self.head, self.test_shifts, self.test_views = bits, head, test_shifts, test_views
        self.grid, self.parts = grid, parts
        c = cast(int, self.backbone.num_features)  # every registered backbone sets it
        if head == "spatial":
            self.reduce = nn.Sequential(nn.Conv2d(c, 32, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
                                        nn.AdaptiveAvgPool2d(grid), nn.Flatten())
            self.embed_dim = 32 * grid * grid
        else:
            self.reduce = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.embed_dim = c
        self.dropout = nn.Dropout(dropout)
        self.hash = nn.Linear(self.embed_dim, bits)
        if parts:
            side = grid // parts
            self.part_hash = nn.ModuleList([nn.Linear(32 * side * side, bits) for _ in range(parts * parts)])
        if orientation:
            self.orientation_head = _orientation_head(orientation, c, self.embed_dim)
        self.orientation = orientation
        self.to(memory_format=torch.channels_last)  # NHWC convolutions are ~1.3x faster on CPU

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone feature map (B, C, h, w)."""
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"HashNet expects grey images (B, 1, H, W), got {tuple(x.shape)}")
        return self.backbone(x.contiguous(memory_format=torch.channels_last))

    def forward_embed(self, x: torch.Tensor) -> torch.Tensor:
        """Embedding (B, embed_dim) that the hash layer reads."""
        return self.reduce(self.forward_features(x))

    def forward_eval_embed(self, x: torch.Tensor) -> torch.Tensor:
        """The embedding codes are read from: forward_embed, averaged over the `test_shifts` copies in eval mode."""
        s = self.test_shifts
        if self.training or not s:
            return self.forward_embed(x)
        if self.test_views == "square":
            views = [torch.roll(x, (dy, dx), dims=(2, 3)) for dy in (-s, 0, s) for dx in (-s, 0, s)]
        else:
            views = [x] + [torch.roll(x, d, dims=dims) for d in (s, -s) for dims in (2, 3)]
        return torch.stack([self.forward_embed(v) for v in views]).mean(dim=0)

    def forward_head(self, embedding: torch.Tensor) -> torch.Tensor:
        """Relaxed code tanh(W e + b) of an embedding, without dropout: what export, encoders and embedding
        distillation read beside the embedding (see `embed_and_code`)."""
        return torch.tanh(self.hash(embedding))

    def embed_and_code(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(embedding, relaxed code) in one pass."""
        e = self.forward_eval_embed(x)
        return e, self.forward_head(e)

    def part_pre_codes(self, embedding: torch.Tensor) -> list[torch.Tensor]:
        """Pre-codes (B, bits) of each block of the pooled grid through its own hash layer, in row-major
        block order: what the part identity terms train (`parts`)."""
        g, p = self.grid, self.parts
        s = g // p
        maps = embedding.view(len(embedding), 32, g, g)
        return [head(maps[:, :, (k // p) * s:(k // p + 1) * s, (k % p) * s:(k % p + 1) * s].flatten(1))
                for k, head in enumerate(self.part_hash)]

    def forward_training(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor | None]:
        """From one backbone pass: the pre-code, the part pre-codes (empty without `parts`) and the orientation
        logits (B, ORIENTATIONS, 4h, 4w) of the (h, w) feature map (None without `orientation`)."""
        f = self.forward_features(x)
        e = self.reduce(f)
        parts = self.part_pre_codes(e) if self.parts else []
        orientation = self.orientation_logits(f, e) if self.orientation else None
        return self.hash(self.dropout(e)), parts, orientation

    def orientation_logits(self, features: torch.Tensor, embedding: torch.Tensor | None = None) -> torch.Tensor:
        """CompCode orientation logits (B, ORIENTATIONS, h', w') from the feature map, or from the embedding
        (computed from the map when not given) with the "embedding" head."""
        if not self.orientation:
            raise ValueError("this model has no orientation head (built without lambda_orientation)")
        if self.orientation != "embedding":
            return cast(torch.Tensor, self.orientation_head(features))
        e = self.reduce(features) if embedding is None else embedding
        return cast(torch.Tensor, self.orientation_head(e)).view(len(e), ORIENTATIONS, ORIENTATION_GRID,
                                                                  ORIENTATION_GRID)

    def forward_pre_code(self, x: torch.Tensor) -> torch.Tensor:
        """The hash layer's output W e + b before tanh, (B, bits); its sign is the code."""
        return self.hash(self.dropout(self.forward_embed(x)))

    def forward_code(self, x: torch.Tensor) -> torch.Tensor:
        """Relaxed code tanh(W e + b), (B, bits); in eval mode e is shift-averaged when test_shifts > 0."""
        if self.training:
            return torch.tanh(self.forward_pre_code(x))
        return self.forward_head(self.forward_eval_embed(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_code(x)


class HashClassifier(nn.Module):
    """One modality's HashNet plus an identity classifier on its relaxed code: the distilled-hashing teacher
    (DHN) and student. Exposes `modalities` and `net(modality)` like CoHashNet, so evaluation treats both alike.

    forward(x) -> (relaxed codes (B, bits), identity logits (B, n_classes)).
    """

    def __init__(self, backbone: str, bits: int, n_classes: int, modality: str = "print",
                 weights: str | None = None, *, head: str = "avg", dropout: float = 0.0) -> None:
        super().__init__()
        self.hashnet = HashNet(backbone, bits, weights, head=head, dropout=dropout)
        self.classifier = nn.Linear(bits, n_classes)
        self.modalities, self.bits = (modality,), bits

    def net(self, modality: str) -> HashNet:
        if modality not in self.modalities:
            raise KeyError(f"this model encodes {self.modalities[0]!r} images, not {modality!r}")
        return self.hashnet

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        codes = self.hashnet(x)
        return codes, self.classifier(codes)


def _orientation_head(kind: str, channels: int, embed_dim: int) -> nn.Module:
    """HashNet's orientation head of one kind (see `orientation`)."""
    to_grid = [nn.Conv2d(channels, ORIENTATIONS * ORIENTATION_UPSCALE ** 2, 1), nn.PixelShuffle(ORIENTATION_UPSCALE)]
    if kind == "map":
        return nn.Sequential(*to_grid)
    if kind == "map3":
        return nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
                             nn.ReLU(inplace=True), *to_grid)
    if kind == "embedding":
        return nn.Linear(embed_dim, ORIENTATIONS * ORIENTATION_GRID ** 2)
    raise ConfigError(f"unknown orientation head {kind!r}; expected one of: {', '.join(ORIENTATION_HEADS)}")
