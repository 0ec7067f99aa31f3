"""Knowledge distillation of a DHN teacher into the light student (distilled-hashing paper, eq. 7-8).

The teacher is frozen. Student loss, with h its relaxed codes and z its identity logits:
  L_v = L_h + w L_q + alpha L_b + beta L_T     (verification: pairwise hash, quantization, code L2 to the
                                                teacher's codes, soft targets from the teacher's logits)
  L_c = m L_s + n L_T                           (classification: label cross-entropy and soft targets)
and the step minimises L_v + L_c (L_T appears in both, as in the paper). Paper values: t = 180 (128 bits),
w = 0.5, alpha = 5, beta = 10, m = 0.2, n = 0.8, teacher temperature 20, student temperature 5.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from biohash.errors import ConfigError
from biohash.train.recipes.base import Recipe, load_model, option, register_recipe
from biohash.train.recipes.dhn import hash_and_class_losses, one_modality_set, rebuild_hash_classifier
from biohash.train.runs import RunError, read_config

if TYPE_CHECKING:  # torch loads when a model is built, so `biohash train distill --help` stays instant
    from biohash.train.models.hashnet import HashClassifier


@dataclass
class DistillConfig:
    """Student settings; `teacher` is the DHN run folder whose best checkpoint teaches."""

    teacher: str = option("", "the DHN teacher's run folder")
    backbone: str = option("student", "student backbone (Table 1: 2 conv + FC-512)")
    head: str = option("avg", "avg: the student's FC-512 output goes straight into its FC-bits hash layer")
    margin: float | None = option(None, "pairwise margin t (default 180 * bits / 128)")
    w_quant: float = option(0.5, "quantization weight w (paper 0.5)")
    alpha: float = option(5.0, "code L2 weight (paper 5)")
    beta: float = option(10.0, "soft-target weight in L_v (paper 10)")
    m: float = option(0.2, "label cross-entropy weight in L_c (paper 0.2)")
    n: float = option(0.8, "soft-target weight in L_c (paper 0.8)")
    teacher_temperature: float = option(20.0, "teacher softmax temperature (paper 20)")
    student_temperature: float = option(5.0, "student softmax temperature (paper 5)")

    def __post_init__(self) -> None:
        if not self.teacher:
            raise ConfigError("distillation needs a teacher run (--teacher RUN)")


def build(config: DistillConfig, teacher: HashClassifier, seed: int = 0):
    """The student (same bits, classes and modality as the teacher) and its loss step; the teacher is frozen."""
    import torch

    from biohash.train.losses import CodeL2Loss, L1QuantizationLoss, PairwiseHashLoss, SoftTargetLoss
    from biohash.train.models.backbones import BACKBONES
    from biohash.train.models.hashnet import HashClassifier

    BACKBONES.canonical(config.backbone)
    torch.manual_seed(seed)
    modality = teacher.modalities[0]
    student = HashClassifier(config.backbone, teacher.bits, teacher.classifier.out_features, modality,
                             head=config.head)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    pairwise, quant = PairwiseHashLoss(config.margin), L1QuantizationLoss()
    code_l2 = CodeL2Loss()
    soft = SoftTargetLoss(config.teacher_temperature, config.student_temperature)

    def step(net: HashClassifier, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        images, labels = batch[modality], batch["label"]
        with torch.no_grad():
            t_codes, t_logits = teacher.to(images.device)(images)  # the fit loop moved the student only
        codes, logits, parts = hash_and_class_losses(net, images, labels, pairwise, quant, w_quant=config.w_quant)
        parts["code_l2"] = code_l2(codes, t_codes)
        parts["soft"] = soft(logits, t_logits)
        parts["bit_agreement"] = (torch.sign(codes) == torch.sign(t_codes)).float().mean().detach()
        verification = (parts["pairwise"] + config.w_quant * parts["quant"] + config.alpha * parts["code_l2"]
                        + config.beta * parts["soft"])
        classification = config.m * parts["class"] + config.n * parts["soft"]
        return {"loss": verification + classification, **parts}

    return student, step


def _teacher(method: DistillConfig) -> HashClassifier:
    return cast("HashClassifier", load_model(Path(method.teacher)))


@register_recipe
class DistillRecipe(Recipe):
    """Distil a DHN teacher into the light student (2 conv + FC-512 + FC-bits), teacher frozen."""

    name = "distill"
    config = DistillConfig

    def inherited_data(self, method):
        return dict(read_config(Path(method.teacher))["data"])

    def training_set(self, method, dataset, split, data, seed):
        teacher_modality = read_config(Path(method.teacher))["model"]["modality"]  # the model loads in build
        return one_modality_set(dataset, split, data, teacher_modality, seed)

    def build(self, method, train_set, seed):
        teacher = _teacher(method)
        if teacher.classifier.out_features != len(train_set.classes):
            raise RunError(f"the teacher knows {teacher.classifier.out_features} identities, this training split "
                           f"has {len(train_set.classes)}: distil on the teacher's dataset and protocol")
        model, step = build(method, teacher, seed=seed)
        return model, step, {"n_classes": teacher.classifier.out_features, "modality": teacher.modalities[0],
                             "bits": model.bits}

    def batch_identities(self, method):
        return 4

    def rebuild(self, config):
        return rebuild_hash_classifier(config)
