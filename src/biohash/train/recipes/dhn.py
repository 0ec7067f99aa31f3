"""Deep hashing network (DHN), the teacher of "Efficient Deep Palmprint Recognition via Distilled Hashing
Coding": a VGG-16 whose classifier is replaced by a tanh hash layer (codes by sign), trained with the pairwise
contrastive hash loss + w * L1 quantization loss (eq. 1-3), and an identity classifier beside it (cross-entropy)
that gives the paper's identification accuracy. With pretrained weights the first four conv blocks may stay
frozen (the paper trains block 5 and the fully connected layers).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from biohash.errors import ConfigError
from biohash.train.recipes.base import Recipe, option, register_recipe
from biohash.train.runs import RunError

if TYPE_CHECKING:  # torch loads when a model is built, so `biohash train dhn --help` stays instant
    import torch

    from biohash.train.losses import L1QuantizationLoss, PairwiseHashLoss
    from biohash.train.models.hashnet import HashClassifier

VGG_BLOCK_ENDS = (4, 9, 16, 23, 30)  # indices of the max-pools closing VGG-16's five conv blocks


@dataclass
class DhnConfig:
    """Method settings of the DHN teacher (training settings live in train.FitConfig).

    margin: pairwise margin t; None = 180 * bits / 128 (the paper's 180 at 128 bits).
    w_quant: weight w of the quantization term (paper 0.5). w_class: weight of the identity cross-entropy.
    freeze_blocks: VGG-16 conv blocks kept frozen when `weights` are given (paper: 4).
    loss: "softmax" (the paper: identity cross-entropy on the codes) or "arcface" (that classifier's weights
        with an additive angular margin, arc_scale / arc_margin); lambda_supcon adds a supervised contrastive
        term over the batch's codes.
    head: "spatial" keeps where things are before the hash layer, as VGG-16's fully connected layers over its
        7x7 map do; "avg" pools them away (on synthetic palms it learned far slower: 32 % EER after 8 epochs).
    """

    backbone: str = option("vgg16", "registered backbone (paper: vgg16)")
    bits: int = option(128, "code length (paper: 128)")
    modality: str | None = option(None, "which images to hash (default: the dataset's first modality)")
    weights: str | None = option(None, "backbone weights file (e.g. torchvision vgg16) or imagenet")
    margin: float | None = option(None, "pairwise margin t (default 180 * bits / 128)")
    w_quant: float = option(0.5, "quantization weight w (paper 0.5)")
    w_class: float = option(1.0, "identity cross-entropy weight")
    freeze_blocks: int = option(4, "VGG-16 conv blocks frozen when weights are given (paper 4)")
    dropout: float = option(0.0, "dropout before the hash layer")
    head: str = option("spatial", "spatial (keeps positions, as VGG-16's FC layers) or avg (global pooling)")
    loss: str = option("softmax", "identity term: softmax (paper) or arcface (angular margin)")
    arc_scale: float = option(30.0, "ArcFace scale s")
    arc_margin: float = option(0.5, "ArcFace margin m in radians")
    lambda_supcon: float = option(0.0, "supervised contrastive weight")

    def __post_init__(self) -> None:
        if self.loss not in ("softmax", "arcface"):
            raise ConfigError(f"unknown loss {self.loss!r}; expected softmax or arcface")
        if self.bits not in (16, 32, 64, 128, 256):
            raise ConfigError(f"bits must be one of 16, 32, 64, 128, 256, got {self.bits}")
        if not 0 <= self.freeze_blocks <= 5:
            raise ConfigError(f"freeze_blocks must be 0..5, got {self.freeze_blocks}")


def freeze_vgg_blocks(model: HashClassifier, blocks: int) -> None:
    """Stop gradients through the first `blocks` conv blocks of a VGG-16 backbone."""
    if blocks <= 0:
        return
    features = cast("torch.nn.Sequential", model.hashnet.backbone.features)  # torchvision VGG-16's conv stack
    for layer in list(features)[: VGG_BLOCK_ENDS[blocks - 1] + 1]:
        for p in layer.parameters():
            p.requires_grad_(False)


def hash_and_class_losses(model: HashClassifier, images: torch.Tensor, labels: torch.Tensor,
                          pairwise: PairwiseHashLoss, quant: L1QuantizationLoss, *, w_quant: float,
                          ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Codes, logits and the loss parts shared by teacher and student: L_h, L_q and the label cross-entropy."""
    import torch.nn.functional as F

    codes, logits = model(images)
    parts = {"pairwise": pairwise(codes, labels), "quant": quant(codes), "class": F.cross_entropy(logits, labels)}
    return codes, logits, parts


def build(config: DhnConfig, n_classes: int, modality: str = "print", seed: int = 0):
    """The teacher and its loss step; a batch holds `modality` images and `label`."""
    import torch

    from biohash.train.losses import ArcFaceLoss, L1QuantizationLoss, PairwiseHashLoss, SupConLoss
    from biohash.train.models.backbones import BACKBONES
    from biohash.train.models.hashnet import HashClassifier

    BACKBONES.canonical(config.backbone)
    torch.manual_seed(seed)
    model = HashClassifier(config.backbone, config.bits, n_classes, modality, config.weights, head=config.head,
                           dropout=config.dropout)
    if config.weights is not None and BACKBONES.canonical(config.backbone) == "vgg16":
        freeze_vgg_blocks(model, config.freeze_blocks)
    pairwise, quant = PairwiseHashLoss(config.margin), L1QuantizationLoss()
    arcface, supcon = ArcFaceLoss(config.arc_scale, config.arc_margin), SupConLoss()

    def step(net: HashClassifier, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        labels = batch["label"]
        codes, _, parts = hash_and_class_losses(net, batch[modality], labels, pairwise, quant, w_quant=config.w_quant)
        if config.loss == "arcface":  # the identity term takes an angular margin instead of plain softmax
            parts["class"] = arcface(codes, labels, net.classifier.weight)
        loss = parts["pairwise"] + config.w_quant * parts["quant"] + config.w_class * parts["class"]
        if config.lambda_supcon > 0:
            parts["supcon"] = supcon(codes, labels)
            loss = loss + config.lambda_supcon * parts["supcon"]
        return {"loss": loss, **parts}

    return model, step


def one_modality_set(dataset, split, data, modality: str, seed: int):
    """Training items of one modality, 4 captures of each identity per batch (pairs for the pairwise loss)."""
    from biohash.train.data.loaders import PairedTrainSet

    if modality not in dataset.modalities():
        raise RunError(f"dataset {data.dataset!r} has no {modality!r} images (it has {', '.join(dataset.modalities())})")
    return PairedTrainSet.for_run(dataset, split.train, (modality,), data, seed)


def rebuild_hash_classifier(config) -> HashClassifier:
    """The untrained HashClassifier of a saved dhn or distill run."""
    from biohash.train.models.hashnet import HashClassifier

    m = config["model"]
    return HashClassifier(m["backbone"], m["bits"], m["n_classes"], m["modality"], head=m.get("head", "avg"))


@register_recipe
class DhnRecipe(Recipe):
    """Train the distilled-hashing teacher (DHN): VGG-16 + tanh hash layer, pairwise + quantization loss."""

    name = "dhn"
    config = DhnConfig

    def training_set(self, method, dataset, split, data, seed):
        return one_modality_set(dataset, split, data, method.modality or dataset.modalities()[0], seed)

    def build(self, method, train_set, seed):
        modality = train_set.modalities[0]
        model, step = build(method, len(train_set.classes), modality, seed=seed)
        return model, step, {"n_classes": len(train_set.classes), "modality": modality, "bits": model.bits}

    def batch_identities(self, method):
        return 4

    def rebuild(self, config):
        return rebuild_hash_classifier(config)
