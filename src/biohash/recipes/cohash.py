"""Co-hashing recipe (PalmCohashNet): config, build(), and the loss step.

loss "csq" (default): sum over modalities of [centroid loss (per-bit BCE to the identity centroid, as in the
paper) + lambda_softmax * centroid softmax (cross-entropy over all centroids; ours, for fast training from
scratch) + lambda_quant * quantization loss], plus lambda_cross * the cross-modality term between the print and
vein codes of the batch.
loss "arcface": the per-bit and softmax centroid terms become one ArcFace term (additive angular margin) of each
code before tanh (same signs, no saturated tanh to stall it) against the fixed identity centroids, so both
modalities still land at one centroid; quantization and cross terms as above. Either loss may add
lambda_supcon * a supervised contrastive term over the relaxed codes of every modality in the batch (a print and
a vein of one person are positives of each other).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from biohash.losses import (
    ArcFaceLoss,
    CentroidLoss,
    CentroidSoftmaxLoss,
    CrossModalityLoss,
    QuantizationLoss,
    SupConLoss,
)
from biohash.models.cohash import CoHashNet

BITS = (16, 32, 64, 128, 256)
LOSSES = ("csq", "arcface")


@dataclass
class CohashConfig:
    """Method settings of co-hashing (training settings live in train.FitConfig).

    share (beyond the paper, whose sub-networks share nothing: "none"): "head" reads both modalities'
    embeddings through one hash layer; on identity-disjoint synthetic palms it lowered cross-modal EER from
    about 30 % to 13 % at equal training. "all" uses one network for both modalities: at 10 epochs it gave
    cross 15 % against 23 % for "head", print and fused 0.3-0.4 points worse, vein 0.9 better.

    init: warm start from a trained co-hashing run folder, its checkpoint file, or a shipped model
    ("zoo:NAME", see biohash.zoo): every tensor whose name and shape agree is copied (backbones and reductions;
    the hash layer too when bits match); identity centroids never are (they belong to the new identities).

    loss, arc_scale, arc_margin, lambda_supcon, supcon_temperature: see the module docstring (ArcFace s = 30,
    m = 0.5 and supervised contrastive T = 0.07 as in CompNet / CCNet).
    """

    backbone: str = "small"
    bits: int = 64
    weights: str | None = None
    lambda_quant: float = 0.05
    lambda_softmax: float = 1.0
    softmax_scale: float = 16.0
    lambda_cross: float = 0.5
    cross_margin: float = 0.25
    share: str = "head"
    dropout: float = 0.2
    grid: int = 4
    init: str | None = None
    loss: str = "csq"
    arc_scale: float = 30.0
    arc_margin: float = 0.5
    lambda_supcon: float = 0.0
    supcon_temperature: float = 0.07

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; expected one of: {', '.join(LOSSES)}")
        if self.init is not None and self.weights is not None:
            raise ValueError("give either weights (backbone initialisation) or init (a trained run), not both")
        if self.bits not in BITS:
            raise ValueError(f"bits must be one of {', '.join(map(str, BITS))} (the code lengths the hash layer, "
                             f"store and matchers are built and tested for), got {self.bits}")


Step = Callable[[CoHashNet, dict[str, torch.Tensor]], dict[str, torch.Tensor]]


def build(config: CohashConfig, n_classes: int, modalities: tuple[str, ...] = ("print", "vein"),
          seed: int = 0) -> tuple[CoHashNet, Step]:
    """The model and its loss step. A batch holds one image tensor per modality and `label` (B,)."""
    from biohash.models.backbones import BACKBONES

    BACKBONES.canonical(config.backbone)  # fail early, listing valid names
    model = CoHashNet(config.backbone, config.bits, n_classes, modalities, config.weights, seed, config.share,
                      config.dropout, config.grid)
    if config.init is not None:
        warm_start(model, config.init)
    centroid, quant, cross = CentroidLoss(), QuantizationLoss(), CrossModalityLoss(config.cross_margin)
    softmax = CentroidSoftmaxLoss(config.softmax_scale)
    arcface = ArcFaceLoss(config.arc_scale, config.arc_margin)
    supcon = SupConLoss(config.supcon_temperature)

    def step(net: CoHashNet, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        labels = batch["label"]
        pre = {m: net.net(m).forward_pre_code(batch[m]) for m in net.modalities}
        codes = {m: torch.tanh(z) for m, z in pre.items()}
        parts: dict[str, torch.Tensor] = {}
        total = labels.new_zeros((), dtype=torch.float32)
        for m, h in codes.items():
            parts[f"quant_{m}"] = quant(h)
            total = total + config.lambda_quant * parts[f"quant_{m}"]
            if config.loss == "arcface":
                parts[f"arcface_{m}"] = arcface(pre[m], labels, net.centroids)
                total = total + parts[f"arcface_{m}"]
                continue
            parts[f"centroid_{m}"] = centroid(h, labels, net.centroids)
            total = total + parts[f"centroid_{m}"]
            if config.lambda_softmax > 0:
                parts[f"softmax_{m}"] = softmax(h, labels, net.centroids)
                total = total + config.lambda_softmax * parts[f"softmax_{m}"]
        if len(codes) == 2 and config.lambda_cross > 0:
            a, b = codes.values()
            parts["cross"] = cross(a, b, labels, labels)
            total = total + config.lambda_cross * parts["cross"]
        if config.lambda_supcon > 0:
            parts["supcon"] = supcon(torch.cat(list(codes.values())), labels.repeat(len(codes)))
            total = total + config.lambda_supcon * parts["supcon"]
        return {"loss": total, **parts}

    return model, step


def warm_start(model: CoHashNet, source: str) -> int:
    """Copy matching tensors (same name and shape, centroids excepted) from a run's best checkpoint; returns
    how many were copied and refuses a source that shares nothing."""
    from pathlib import Path

    from biohash.zoo import resolve

    path = Path(resolve(source))
    if path.is_dir():
        path = path / "checkpoints" / "best.pt"
    if not path.is_file():
        raise FileNotFoundError(f"init: no checkpoint at {path} (give a run folder or a .pt file)")
    state = torch.load(path, map_location="cpu", weights_only=False)
    state = state.get("model", state)
    own = model.state_dict()
    copied = {k: v for k, v in state.items() if k != "centroids" and k in own and own[k].shape == v.shape}
    if not copied:
        raise ValueError(f"init: {path} has no tensor matching this model (other backbone or modalities?)")
    model.load_state_dict(copied, strict=False)
    return len(copied)
