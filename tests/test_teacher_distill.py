"""Similarity distillation from trained co-hashing runs: the loss by hand, the step's term, what a student learns."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from biohash.errors import ConfigError
from biohash.imaging.transforms import standardize
from biohash.train.data.config import DataConfig
from biohash.train.data.datasets import open_dataset
from biohash.train.fit import FitConfig
from biohash.train.losses import SimilarityDistillLoss
from biohash.train.recipes.base import load_model
from biohash.train.recipes.cohash import CohashConfig, build
from biohash.train.runs import RunError
from biohash.train.train_job import train

DATA = DataConfig(identities=12, captures=4, image_size=64, protocol="closed", seed=0)


def test_similarity_distillation_is_the_mean_squared_gap_over_off_diagonal_pairs():
    torch.manual_seed(0)
    codes, target = torch.randn(4, 6), torch.rand(4, 4)
    total = 0.0
    for i in range(4):
        for j in range(4):
            if i != j:
                cos = float(codes[i] @ codes[j] / (codes[i].norm() * codes[j].norm()))
                total += (cos - float(target[i, j])) ** 2
    assert abs(float(SimilarityDistillLoss()(codes, target)) - total / 12) < 1e-5
    with pytest.raises(ValueError, match="must be \\(4, 4\\)"):
        SimilarityDistillLoss()(codes, torch.rand(3, 3))


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    """Two tiny runs of different seeds: the ensemble a student distils from."""
    root = tmp_path_factory.mktemp("teachers")
    for seed in (0, 1):
        train(root / f"t{seed}", DATA, CohashConfig(backbone="tiny", bits=32, loss="arcface"),
              FitConfig(epochs=2, batch_size=16, lr=3e-3, seed=seed))
    return [root / "t0", root / "t1"]


def _similarities(model, images: torch.Tensor, modality: str) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        codes = F.normalize(torch.tanh(model.net(modality).forward_pre_code(images)), dim=1)
    return codes @ codes.T


def test_the_step_adds_the_gap_to_the_teachers_mean_similarity_per_modality(teachers):
    config = CohashConfig(backbone="tiny", bits=64, loss="arcface", teachers=",".join(map(str, teachers)),
                          lambda_teacher=3.0, dropout=0.0)
    model, step = build(config, n_classes=12)
    model.eval()
    torch.manual_seed(0)
    batch = {"print": torch.randn(6, 1, 64, 64), "vein": torch.randn(6, 1, 64, 64), "label": torch.arange(6)}
    with torch.no_grad():
        parts = step(model, batch)
    loaded = [load_model(t) for t in teachers]
    for m in ("print", "vein"):
        target = sum(_similarities(t, batch[m], m) for t in loaded) / 2
        codes = torch.tanh(model.net(m).forward_pre_code(batch[m])).detach()
        assert abs(float(parts[f"teacher_{m}"]) - float(SimilarityDistillLoss()(codes, target))) < 1e-5
    no_teacher = build(CohashConfig(backbone="tiny", bits=64, loss="arcface", dropout=0.0), n_classes=12)[1]
    with torch.no_grad():
        plain = no_teacher(model, batch)
    assert "teacher_print" not in plain
    assert abs(float(parts["loss"]) - float(plain["loss"]) - 3.0 * float(parts["teacher_print"] + parts["teacher_vein"])) < 1e-4


def test_a_distilled_student_scores_pairs_like_its_teachers(teachers, tmp_path):
    """Same seed and data, with and without the term: on unseen images the distilled student's similarities are
    nearer the teachers' mean."""
    base = dict(backbone="tiny", bits=32, loss="arcface")
    fit = FitConfig(epochs=8, batch_size=16, lr=3e-3, seed=0)
    train(tmp_path / "plain", DATA, CohashConfig(**base), fit)
    train(tmp_path / "distilled", DATA, CohashConfig(**base, teachers=",".join(map(str, teachers)),
                                                     lambda_teacher=30.0), fit)
    unseen = open_dataset("synthetic", identities=8, captures=3, seed=99, size=64)
    images = torch.stack([torch.from_numpy(standardize(unseen.load(s), 64))
                          for s in unseen.samples if s.modality == "print"])
    target = sum(_similarities(load_model(t), images, "print") for t in teachers) / 2
    gap = {name: float(SimilarityDistillLoss()(
        torch.tanh(load_model(tmp_path / name).net("print").forward_pre_code(images)).detach(), target))
        for name in ("plain", "distilled")}
    assert gap["distilled"] < 0.5 * gap["plain"], gap


def test_teachers_must_be_co_hashing_runs_with_the_students_modalities(teachers, tmp_path):
    with pytest.raises(RunError, match="not a run folder"):
        build(CohashConfig(backbone="tiny", bits=32, teachers=str(tmp_path / "nowhere")), n_classes=4)
    with pytest.raises(RunError, match="no ocular branch"):
        build(CohashConfig(backbone="tiny", bits=32, teachers=str(teachers[0])), n_classes=4, modalities=("ocular",))
    with pytest.raises(ConfigError, match="names no run folder"):
        CohashConfig(teachers=" , ")
    with pytest.raises(ConfigError, match="lambda_teacher"):
        CohashConfig(lambda_teacher=-1)
