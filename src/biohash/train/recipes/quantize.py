"""Quantization by embedding-level distillation (SyPer): a low-bit copy of a trained hashing model learns to
reproduce the full-precision model's embeddings, and its relaxed codes, on unlabeled images.

The student starts as the teacher with every Conv2d/Linear fake-quantized (weights per channel, activations
per tensor, `bits` each). Loss per modality branch: ||n(e_S) - n(e_T)||^2 on L2-normalised embeddings plus
`code_weight` times the mean squared difference of the relaxed codes. No label is read. BatchNorm keeps the
teacher's statistics (the unlabeled images may come from another domain); activation ranges follow the data
for the first half of the steps and are then frozen. `calibrate` is the plain post-training baseline.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from biohash.errors import ConfigError
from biohash.train.recipes.base import Recipe, build_untrained, register_recipe

if TYPE_CHECKING:  # torch loads when a model is built (the built-in recipes register without it)
    import torch
    from torch import nn

    from biohash.train.data.config import DataConfig

SOURCES = ("synthetic", "folder", "real")


@dataclass
class QuantizeConfig:
    bits: int = 8
    source: str = "synthetic"  # where the unlabeled images come from
    look: str | None = None  # synthetic look (print or vein); default: the branch's own modality, vein for others
    root: str | None = None  # folder of images for source="folder"
    images: int = 2000  # unlabeled images per modality branch
    code_weight: float = 1.0
    freeze_ranges_at: float = 0.5  # fraction of the steps after which activation ranges are frozen

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ConfigError(f"unknown data source {self.source!r}; expected one of: {', '.join(SOURCES)}")
        if self.source == "folder" and not self.root:
            raise ConfigError("source 'folder' needs the folder of unlabeled images (--root)")
        if self.look not in (None, "print", "vein"):
            raise ConfigError(f"look must be print or vein, got {self.look!r}")
        if not 2 <= self.bits <= 16:
            raise ConfigError(f"bits must be between 2 and 16, got {self.bits}")

    def look_for(self, modality: str) -> str:
        return self.look or (modality if modality in ("print", "vein") else "vein")


def _freeze_batchnorm(net: nn.Module) -> None:
    from torch import nn

    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def embedding_distance(student: nn.Module, teacher: nn.Module, x: torch.Tensor, modality: str) -> torch.Tensor:
    """Mean ||n(e_S) - n(e_T)||^2 over a batch: the quantity the recipe lowers (0 = identical directions)."""
    import torch

    from biohash.train.losses import EmbeddingDistillationLoss

    with torch.no_grad():
        e_t, _ = teacher.net(modality).embed_and_code(x)
    e_s, _ = student.net(modality).embed_and_code(x)
    return EmbeddingDistillationLoss()(e_s, e_t)


def build(config: QuantizeConfig, teacher: nn.Module, total_steps: int):
    """The fake-quantized student (a copy of `teacher`) and its distillation step. A batch maps each of the
    teacher's modalities to a tensor of unlabeled images (B, 1, H, W)."""
    import torch

    from biohash.train.losses import EmbeddingDistillationLoss
    from biohash.train.models.quant import quantize_model, set_observing

    teacher = teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    student = quantize_model(teacher, config.bits)
    for p in student.parameters():
        p.requires_grad_(True)
    freeze_at = int(total_steps * config.freeze_ranges_at)
    calls = {"n": 0}
    embedding_loss = EmbeddingDistillationLoss()

    def step(net: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        _freeze_batchnorm(net)
        set_observing(net, calls["n"] < freeze_at)
        calls["n"] += 1
        out: dict[str, torch.Tensor] = {}
        total = torch.zeros(())
        for m in teacher.modalities:
            if m not in batch:
                continue
            x = batch[m]
            with torch.no_grad():
                e_t, c_t = teacher.to(x.device).net(m).embed_and_code(x)  # the fit loop moved the student
            e_s, c_s = net.net(m).embed_and_code(x)
            l_e = embedding_loss(e_s, e_t)
            l_c = (c_s - c_t).pow(2).mean()
            total = total + l_e + config.code_weight * l_c
            out[f"embed_{m}"], out[f"code_{m}"] = l_e.detach(), l_c.detach()
        out["loss"] = total
        return out

    return student, step


def calibrate(student: nn.Module, batches: Iterable[dict[str, torch.Tensor]]) -> nn.Module:
    """Post-training quantization: set activation ranges from unlabeled batches (running min/max), no
    training; the ranges are then frozen."""
    import torch

    from biohash.train.models.quant import set_observing

    student.eval()
    set_observing(student, True)
    with torch.no_grad():
        for batch in batches:
            for m in student.modalities:
                if m in batch:
                    student.net(m)(batch[m])
    set_observing(student, False)
    return student


@register_recipe
class QuantizeRecipe(Recipe):
    """A low-bit copy of another run (`biohash quantize`, not `biohash train`): rebuilt as its source's model,
    fake-quantized; exported as a float network holding the quantized weight values."""

    name = "quantize"
    config = QuantizeConfig
    trains = False

    def rebuild(self, config):
        from biohash.train.models.quant import quantize_model

        return quantize_model(build_untrained(config["source_config"]), config["model"]["quant"]["bits"])

    def for_export(self, model, config):
        from biohash.train.models.quant import bake

        notes = {"quantized": {"bits": config["model"]["quant"]["bits"], "ptq": config["model"]["ptq"]}}
        return bake(model).eval(), config["source_config"], notes


def unlabeled_sources(method: QuantizeConfig, modalities: tuple[str, ...], source_data: DataConfig,
                      seed: int) -> dict:
    """Per modality branch of the teacher: (dataset, samples) of unlabeled images from the method's source
    (synthetic palms of the branch's look, a folder, or the source run's own training images, labels unused)."""
    from biohash.train.data.config import open_split
    from biohash.train.data.datasets import open_dataset

    out = {}
    real = open_split(source_data) if method.source == "real" else None  # opened once for every branch
    for m in modalities:
        if method.source == "synthetic":
            look = method.look_for(m)
            ds = open_dataset("synthetic", identities=-(-method.images // 4), captures=4, seed=seed + 7919,
                              size=source_data.image_size, modalities=(look,))
            out[m] = (ds, ds.samples[: method.images])
        elif method.source == "folder":
            ds = open_dataset("images", root=method.root, modality=m)
            out[m] = (ds, ds.samples[: method.images])
        else:  # the source run's own training images, labels unused
            assert real is not None
            ds, split = real
            out[m] = (ds, [s for s in split.train if s.modality == m][: method.images])
    return out
