"""Training losses, each a small nn.Module: hashing terms over relaxed codes h in (-1, 1)^bits, identity terms
(softmax, ArcFace, supervised contrastive, GPA-Net's), and distillation (soft targets, code L2, embeddings)."""
from __future__ import annotations

import math
from typing import Any

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


class PairwiseHashLoss(nn.Module):
    """Contrastive hash loss of deep hashing networks (distilled-hashing paper, eq. 1-2), over all pairs i < j
    of the batch: 1/2 S D + 1/2 (1 - S) max(t - D, 0), with D the squared Euclidean distance of the relaxed
    codes and S = 1 for the same identity. The margin t is 180 at 128 bits in the paper; `margin=None` scales
    that with the code length (t = 180 * bits / 128)."""

    def __init__(self, margin: float | None = None) -> None:
        super().__init__()
        self.margin = margin

    def forward(self, codes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        t = self.margin if self.margin is not None else 180.0 * codes.shape[1] / 128
        d = torch.cdist(codes, codes).pow(2)
        same = (labels[:, None] == labels[None, :]).float()
        pair = 0.5 * same * d + 0.5 * (1 - same) * F.relu(t - d)
        upper = torch.triu(torch.ones_like(d, dtype=torch.bool), diagonal=1)
        return pair[upper].mean() if upper.any() else d.new_zeros(())


class L1QuantizationLoss(nn.Module):
    """|| |h| - 1 ||_1 / bits, averaged over the batch (the paper's eq. 3 quantization term, per bit).

    Per bit, not summed: summed over 128 bits at w = 0.5 it outweighs the pairwise term from the first step,
    saturates tanh at one constant code for every image and training never leaves it (seen here)."""

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return (codes.abs() - 1).abs().mean()


class CodeL2Loss(nn.Module):
    """|| b_T - b_S ||^2 between teacher and student relaxed codes, averaged over the batch (eq. 7, L_b)."""

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return (student - teacher.detach()).pow(2).sum(dim=1).mean()


class SoftTargetLoss(nn.Module):
    """Soft cross-entropy between temperature-scaled teacher and student logits (eq. 7-8, L_T):
    -sum softmax(z_T / T_teacher) log softmax(z_S / T_student), averaged over the batch."""

    def __init__(self, teacher_temperature: float = 20.0, student_temperature: float = 5.0) -> None:
        super().__init__()
        self.t_teacher, self.t_student = teacher_temperature, student_temperature

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        target = F.softmax(teacher_logits.detach() / self.t_teacher, dim=1)
        return -(target * F.log_softmax(student_logits / self.t_student, dim=1)).sum(dim=1).mean()


class ArcFaceLoss(nn.Module):
    """Additive angular margin (ArcFace, Deng et al. 2019): cross-entropy over scale * cos(theta_j), with the
    true class's angle widened by `margin` (cos(theta_y + m)); past theta_y = pi - m, where that stops being
    monotonic, the usual linear stand-in cos(theta_y) - m sin(m) is used. Features and class weights are
    L2-normalised; the weights may be learnt or fixed (co-hashing's identity centroids)."""

    def __init__(self, scale: float = 30.0, margin: float = 0.5) -> None:
        super().__init__()
        self.scale, self.margin = scale, margin

    def logits(self, features: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        cos = (F.normalize(features, dim=1) @ F.normalize(weights, dim=1).T).clamp(-1 + 1e-7, 1 - 1e-7)
        target = cos.gather(1, labels[:, None])
        m = self.margin
        widened = torch.where(target > math.cos(math.pi - m), torch.cos(torch.acos(target) + m),
                              target - math.sin(m) * m)
        return self.scale * cos.scatter(1, labels[:, None], widened)

    def forward(self, features: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.logits(features, labels, weights), labels)


class SupConLoss(nn.Module):
    """Supervised contrastive loss (Khosla et al. 2020) over L2-normalised features: for each anchor with at
    least one positive, minus the mean over its positives p of log(exp(z.z_p / T) / sum_{a != anchor}
    exp(z.z_a / T)). Anchors without a positive in the batch are skipped (zero when none has one)."""

    def __init__(self, temperature: float = 0.07) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        z = F.normalize(features, dim=1)
        sim = z @ z.T / self.temperature
        self_mask = torch.eye(len(z), dtype=torch.bool, device=z.device)
        sim = sim.masked_fill(self_mask, float("-inf"))
        log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
        positive = (labels[:, None] == labels[None, :]) & ~self_mask
        has = positive.any(dim=1)
        if not has.any():
            return features.new_zeros(())
        pos_log = log_prob.masked_fill(~positive, 0.0).sum(dim=1)
        return -(pos_log[has] / positive[has].sum(dim=1)).mean()


class GPALoss(nn.Module):
    """Label-smoothed cross-entropy (epsilon 0.1) of the first classifier (the global one) plus lambda times
    that of every other (part) classifier; with a hash head, plus the cross-entropy of the code's classifier
    and a per-bit quantization term pulling the relaxed code to +-1."""

    def __init__(self, smoothing: float = 0.1, part_weight: float = 1.0, quantization_weight: float = 0.1) -> None:
        super().__init__()
        self.smoothing, self.part_weight, self.quantization_weight = smoothing, part_weight, quantization_weight

    def forward(self, out: dict[str, Any], labels: torch.Tensor) -> torch.Tensor:
        ce = [F.cross_entropy(z, labels, label_smoothing=self.smoothing) for z in out["logits"]]
        total = ce[0] + self.part_weight * sum(ce[1:], torch.zeros(()))
        if "code" in out:
            code = out["code"]
            total = total + F.cross_entropy(out["hash_logits"], labels, label_smoothing=self.smoothing)
            total = total + self.quantization_weight * (code.abs() - 1).abs().mean()
        return total


class EmbeddingDistillationLoss(nn.Module):
    """Embedding-level distillation (SyPer): mean ||n(e_S) - n(e_T)||^2 of L2-normalised embeddings (0 when
    the student's embeddings point where the teacher's do); the teacher's side is taken as fixed."""

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return (F.normalize(student, dim=1) - F.normalize(teacher.detach(), dim=1)).pow(2).sum(dim=1).mean()


def cosine_similarities(codes: torch.Tensor) -> torch.Tensor:
    """(B, B) cosine similarity of every pair of rows: the float score a matcher reads from relaxed codes."""
    unit = F.normalize(codes, dim=1)
    return unit @ unit.T


DISTILL_PAIRS = ("all", "above")


class SimilarityDistillLoss(nn.Module):
    """Relational distillation: the mean squared difference between the cosine similarities of the student's
    codes and target similarities (a teacher ensemble's mean), over every pair of the batch but the diagonal:
    the pairs a matcher scores, whatever the two code lengths.

    pairs="above" keeps only the false-accept side: pairs the target calls different palms (below
    `different_below`) that the student scores higher, averaged over those pairs alone, so a few look-alike
    pairs are not drowned in a mean over every pair (0 when there are none)."""

    def __init__(self, pairs: str = "all", different_below: float = 0.15) -> None:
        super().__init__()
        if pairs not in DISTILL_PAIRS:
            raise ValueError(f"pairs must be one of: {', '.join(DISTILL_PAIRS)}; got {pairs!r}")
        self.pairs, self.different_below = pairs, different_below

    def forward(self, student: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.shape != (len(student), len(student)):
            raise ValueError(f"target similarities must be ({len(student)}, {len(student)}), got {tuple(target.shape)}")
        pairs = ~torch.eye(len(student), dtype=torch.bool, device=student.device)
        gap = cosine_similarities(student) - target.detach()
        if self.pairs == "all":
            return gap[pairs].pow(2).mean()
        above = pairs & (target < self.different_below) & (gap > 0)
        return gap[above].pow(2).sum() / above.sum().clamp(min=1)
