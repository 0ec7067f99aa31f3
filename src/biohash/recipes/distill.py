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

import torch

from biohash.losses import (
    CodeL2Loss,
    L1QuantizationLoss,
    PairwiseHashLoss,
    SoftTargetLoss,
)
from biohash.models.hashnet import HashClassifier
from biohash.recipes.dhn import hash_and_class_losses


@dataclass
class DistillConfig:
    """Student settings; `teacher` is the DHN run folder whose best checkpoint teaches."""

    teacher: str = ""
    backbone: str = "student"
    head: str = "avg"  # the student's FC-512 output goes straight into its FC-bits hash layer (Table 1)
    margin: float | None = None
    w_quant: float = 0.5
    alpha: float = 5.0
    beta: float = 10.0
    m: float = 0.2
    n: float = 0.8
    teacher_temperature: float = 20.0
    student_temperature: float = 5.0

    def __post_init__(self) -> None:
        if not self.teacher:
            raise ValueError("distillation needs a teacher run (--teacher RUN)")


def build(config: DistillConfig, teacher: HashClassifier, seed: int = 0):
    """The student (same bits, classes and modality as the teacher) and its loss step; the teacher is frozen."""
    from biohash.models.backbones import BACKBONES

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
            t_codes, t_logits = teacher(images)
        codes, logits, parts = hash_and_class_losses(net, images, labels, pairwise, quant, config.w_quant)
        parts["code_l2"] = code_l2(codes, t_codes)
        parts["soft"] = soft(logits, t_logits)
        parts["bit_agreement"] = (torch.sign(codes) == torch.sign(t_codes)).float().mean().detach()
        verification = (parts["pairwise"] + config.w_quant * parts["quant"] + config.alpha * parts["code_l2"]
                        + config.beta * parts["soft"])
        classification = config.m * parts["class"] + config.n * parts["soft"]
        return {"loss": verification + classification, **parts}

    return student, step
