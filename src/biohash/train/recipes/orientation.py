"""CompCode's orientations as an auxiliary target (`--lambda-orientation`): a dense, label-free term.

The identity terms let the trunk keep only what tells its 80-240 training palms apart; on new palms the learned
code then merges pairs whose principal lines look alike, which CompCode's fine orientation grid tells apart.
Asking the feature map to predict that grid (the dominant of six Gabor orientations in every 4 x 4-pixel cell of
a 128-pixel ROI) keeps the fine lines in the trunk, and needs no label, so it is also learnt on other databases'
unlabeled palms (`--teacher-data`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from biohash.train.recipes.compcode_teacher import compcode_codes

if TYPE_CHECKING:
    from biohash.train.models.cohash import CoHashNet


def orientation_loss(logits: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of (B, 6, h, w) orientation logits against the images' CompCode codes (32 x 32 cells; the
    logits are read at the nearest cell where their grid is another size)."""
    with torch.no_grad():
        target = compcode_codes(images)
    if logits.shape[-2:] != target.shape[-2:]:
        logits = F.interpolate(logits, size=target.shape[-2:], mode="nearest")
    return F.cross_entropy(logits.float(), target)


def unlabeled_orientation(net: CoHashNet, modality: str, pool: torch.Tensor, *, n: int) -> torch.Tensor:
    """The orientation term on a draw of n unlabeled palms of `pool`, batch norm statistics left to the labeled
    palms (as the similarity distillation term on unlabeled palms)."""
    from biohash.train.recipes.teachers import batch_norm_frozen, draw

    branch = net.net(modality)
    x = draw(pool, n, like=next(branch.parameters()))
    with batch_norm_frozen(branch):  # the orientation head alone: the pool's codes are not read
        logits = branch.orientation_logits(branch.forward_features(x))
    return orientation_loss(logits, x)
