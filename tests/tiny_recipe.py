"""A method biohash does not ship, defined in the test suite alone: a tiny conv hash trained with an identity
cross-entropy on its relaxed print codes. Importing this module registers it (tests import it; subprocesses
name it in BIOHASH_RECIPES with tests/ on PYTHONPATH). It has no BatchNorm, so one process and a torchrun
launch of two processes compute the same training steps."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from biohash.train.recipes.base import Recipe, option, register_recipe


class TinyConvHash(nn.Module):
    """Two strided convs, a linear hash layer and an identity classifier on the relaxed code; it follows the
    stages every biohash model has (forward_embed, forward_head, embed_and_code, net(modality))."""

    def __init__(self, bits: int, n_classes: int, modality: str = "print") -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 8, 5, stride=2, padding=2), nn.ReLU(),
                                      nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
                                      nn.Flatten())
        self.hash_layer = nn.Linear(256, bits)
        self.classifier = nn.Linear(bits, n_classes)
        self.modalities, self.bits = (modality,), bits

    def net(self, modality: str) -> TinyConvHash:
        return self

    def forward_embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, embedding: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.hash_layer(embedding))

    def embed_and_code(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.forward_embed(x)
        return e, self.forward_head(e)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_embed(x))


@dataclass
class TinyHashConfig:
    bits: int = option(32, "code length")
    scale: float = option(8.0, "logit scale of the identity cross-entropy")
    quant_weight: float = option(0.1, "weight of the |h| -> 1 quantization term")


@register_recipe
class TinyHashRecipe(Recipe):
    """A test recipe: tiny conv hash, identity cross-entropy on its relaxed print codes."""

    name = "tinyhash"
    config = TinyHashConfig

    def training_set(self, method, dataset, split, data, seed):
        from biohash.train.data.loaders import PairedTrainSet

        return PairedTrainSet(dataset, split.train, ("print",), data.image_size, augment=False, seed=seed)

    def build(self, method, train_set, seed):
        torch.manual_seed(seed)
        model = TinyConvHash(method.bits, len(train_set.classes))

        def step(net, batch):
            codes = net(batch["print"])
            parts = {"class": F.cross_entropy(method.scale * net.classifier(codes), batch["label"]),
                     "quant": (1 - codes.abs()).mean()}
            return {"loss": parts["class"] + method.quant_weight * parts["quant"], **parts}

        return model, step, {"n_classes": len(train_set.classes)}

    def rebuild(self, config):
        return TinyConvHash(config["model"]["bits"], config["model"]["n_classes"])
