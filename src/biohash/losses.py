"""Hashing losses, each a small nn.Module over relaxed codes h in (-1, 1)^bits."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_EPS = 1e-6


class CentroidLoss(nn.Module):
    """Binary cross-entropy of (h + 1) / 2 to the bits of each sample's identity centroid (CSQ)."""

    def forward(self, codes: torch.Tensor, labels: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
        target = (centroids[labels] + 1) / 2
        prob = ((codes + 1) / 2).clamp(_EPS, 1 - _EPS)
        return F.binary_cross_entropy(prob, target)


class QuantizationLoss(nn.Module):
    """Mean squared gap between |h| and 1: pulls relaxed codes towards binary values."""

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return (codes.abs() - 1).pow(2).mean()


class CrossModalityLoss(nn.Module):
    """Pulls codes of one identity across two modalities together and pushes other identities apart.

    With s = <h_a, h_b> / bits in [-1, 1]: same identity costs (1 - s) / 2, different identities cost
    max(s - margin, 0), each averaged over its pairs in the batch.
    """

    def __init__(self, margin: float = 0.0) -> None:
        super().__init__()
        self.margin = margin

    def forward(self, codes_a: torch.Tensor, codes_b: torch.Tensor, labels_a: torch.Tensor,
                labels_b: torch.Tensor) -> torch.Tensor:
        sim = codes_a @ codes_b.T / codes_a.shape[1]
        same = labels_a[:, None] == labels_b[None, :]
        pull = ((1 - sim[same]) / 2).mean()
        diff = ~same
        push = F.relu(sim[diff] - self.margin).mean() if diff.any() else sim.new_zeros(())
        return pull + push


class CentroidSoftmaxLoss(nn.Module):
    """Cross-entropy over all identity centroids with logits scale * <h, c_k> / bits.

    Beyond the per-bit centroid loss, which only looks at a sample's own centroid, this also pushes each
    code away from every other identity's centroid; it speeds up training from scratch markedly.
    """

    def __init__(self, scale: float = 16.0) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, codes: torch.Tensor, labels: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
        logits = self.scale * codes @ centroids.T / codes.shape[1]
        return F.cross_entropy(logits, labels)
