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
from biohash.train.losses import SimilarityDistillLoss, cosine_similarities
from biohash.train.recipes.base import load_model
from biohash.train.recipes.cohash import CohashConfig, build
from biohash.train.runs import RunError
from biohash.train.train_job import train

DATA = DataConfig(identities=16, captures=4, image_size=64, protocol="closed", seed=0)
# long enough that the teachers' codes of unseen palms differ (cosine about 0.6 for a same-palm pair, 0.4 for
# others); a few steps leave every code near the hash layer's bias and every pair near cosine 1
FIT = dict(epochs=20, batch_size=8, lr=0.01)


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


def test_above_pairs_are_the_false_accept_side_averaged_over_themselves():
    """pairs="above": only pairs the target calls different palms (< 0.15) that the student scores higher, each
    weighing as much as in a batch of them alone; a student below the target everywhere costs nothing."""
    torch.manual_seed(1)
    codes = torch.randn(5, 8)
    target = torch.tensor([[1.0, 0.1, -0.2, 0.9, 0.0], [0.1, 1.0, 0.05, -0.4, 0.3], [-0.2, 0.05, 1.0, 0.1, -0.1],
                           [0.9, -0.4, 0.1, 1.0, 0.12], [0.0, 0.3, -0.1, 0.12, 1.0]])
    total, count = 0.0, 0
    for i in range(5):
        for j in range(5):
            cos = float(codes[i] @ codes[j] / (codes[i].norm() * codes[j].norm()))
            if i != j and float(target[i, j]) < 0.15 and cos > float(target[i, j]):
                total, count = total + (cos - float(target[i, j])) ** 2, count + 1
    assert 0 < count < 20
    assert abs(float(SimilarityDistillLoss("above")(codes, target)) - total / count) < 1e-5
    assert float(SimilarityDistillLoss("above")(codes, torch.ones(5, 5))) == 0.0  # every pair "the same palm"
    target_above = cosine_similarities(codes) + 0.05  # the student below the target on every pair
    assert bool((target_above < 0.15).any())
    assert float(SimilarityDistillLoss("above")(codes, target_above)) == 0.0
    assert abs(float(SimilarityDistillLoss()(codes, target_above)) - 0.05 ** 2) < 1e-6
    with pytest.raises(ValueError, match="pairs must be one of"):
        SimilarityDistillLoss("hard")
    with pytest.raises(ConfigError, match="teacher_pairs"):
        CohashConfig(teachers="compcode", teacher_pairs="hard")


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    """Two tiny runs of different seeds: the ensemble a student distils from."""
    root = tmp_path_factory.mktemp("teachers")
    for seed in (0, 1):
        train(root / f"t{seed}", DATA, CohashConfig(backbone="tiny", bits=32), FitConfig(**FIT, seed=seed))
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


def test_teachers_must_be_co_hashing_runs_with_the_students_modalities(teachers, tmp_path):
    with pytest.raises(RunError, match="not a run folder"):
        build(CohashConfig(backbone="tiny", bits=32, teachers=str(tmp_path / "nowhere")), n_classes=4)
    with pytest.raises(RunError, match="no ocular branch"):
        build(CohashConfig(backbone="tiny", bits=32, teachers=str(teachers[0])), n_classes=4, modalities=("ocular",))
    with pytest.raises(ConfigError, match="names no run folder"):
        CohashConfig(teachers=" , ")
    with pytest.raises(ConfigError, match="lambda_teacher"):
        CohashConfig(lambda_teacher=-1)


def _palm_folder(root, seed: int, identities: int = 10, captures: int = 3):
    """Synthetic print palms written as a user's folder of identity folders (a database the runs never saw)."""
    import cv2

    palms = open_dataset("synthetic", identities=identities, captures=captures, seed=seed, size=64)
    for s in palms.samples:
        if s.modality == "print":
            (root / s.identity).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / s.identity / f"{s.capture}.png"), palms.load(s))
    return root


def test_unlabeled_palms_are_the_training_palms_of_each_databases_own_split(tmp_path):
    from biohash.train.data.config import open_split
    from biohash.train.recipes.teachers import unlabeled_pool

    folder = _palm_folder(tmp_path / "other", seed=5)
    pool = unlabeled_pool(f"folder:{folder}", ("print", "vein"), 64, split_seed=3)
    dataset, split = open_split(DataConfig(dataset="folder", root=str(folder), protocol="open", seed=3, image_size=64))
    train = [s for s in split.train if s.modality == "print"]
    assert set(pool) == {"print"} and pool["print"].shape == (len(train), 1, 64, 64)
    assert pool["print"].dtype == torch.float16
    expected = torch.stack([torch.from_numpy(standardize(dataset.load(s), 64)) for s in train])
    assert torch.allclose(pool["print"].float(), expected, atol=1e-2)
    held_out = {s.identity for s in split.test_probe + split.val_probe}
    assert held_out and not held_out & {s.identity for s in train}
    with pytest.raises(RunError, match="no training image of vein"):
        unlabeled_pool(f"folder:{folder}", ("vein",), 64, split_seed=3)
    with pytest.raises(RunError, match="teacher_data 'tongji:/nowhere': .*root folder not found"):
        unlabeled_pool(f"folder:{folder};tongji:/nowhere", ("print",), 64, split_seed=3)
    with pytest.raises(RunError, match="teacher_data 'tongji': .*NAME:ROOT"):
        unlabeled_pool("tongji", ("print",), 64, split_seed=3)


def test_batch_norm_frozen_normalises_by_the_batch_and_keeps_the_running_statistics():
    from biohash.train.recipes.teachers import batch_norm_frozen

    bn = torch.nn.BatchNorm2d(2).train()
    x = torch.randn(8, 2, 4, 4) * 3 + 5
    with batch_norm_frozen(bn):
        y = bn(x)
    assert torch.equal(bn.running_mean, torch.zeros(2)) and bn.momentum == 0.1
    assert abs(float(y.detach().mean())) < 1e-5  # the batch's own statistics
    bn(x)
    assert float(bn.running_mean.min()) > 0.1


def test_the_step_adds_the_gap_on_unlabeled_palms(teachers, tmp_path):
    folder = _palm_folder(tmp_path / "other", seed=5, identities=6, captures=2)
    base = dict(backbone="tiny", bits=64, loss="arcface", teachers=",".join(map(str, teachers)), lambda_teacher=3.0,
                dropout=0.0)
    model, step = build(CohashConfig(**base, teacher_data=f"folder:{folder}"), n_classes=12, image_size=64)
    plain = build(CohashConfig(**base), n_classes=12)[1]
    model.eval()
    torch.manual_seed(0)
    batch = {"print": torch.randn(6, 1, 64, 64), "vein": torch.randn(6, 1, 64, 64), "label": torch.arange(6)}
    with torch.no_grad():
        parts, without = step(model, batch), plain(model, batch)
    from biohash.train.recipes.teachers import unlabeled_pool

    images = unlabeled_pool(f"folder:{folder}", ("print",), 64, split_seed=0)["print"].float()
    assert len(images) <= 6  # a pool no larger than the batch is drawn whole, in order
    target = sum(_similarities(load_model(t), images, "print") for t in teachers) / 2
    codes = torch.tanh(model.net("print").forward_pre_code(images)).detach()
    assert abs(float(parts["teacher_unlabeled_print"]) - float(SimilarityDistillLoss()(codes, target))) < 1e-5
    assert "teacher_unlabeled_vein" not in parts  # the folder holds no vein image
    assert abs(float(parts["loss"]) - float(without["loss"]) - 3.0 * float(parts["teacher_unlabeled_print"])) < 1e-4
    with pytest.raises(ConfigError, match="give --teachers or --lambda-orientation too"):
        CohashConfig(teacher_data=f"folder:{folder}")


def test_a_student_learns_its_teachers_similarities_on_labeled_and_unlabeled_palms(teachers, tmp_path):
    """The training log: both distillation terms fall as the student trains (the unlabeled one to under half),
    so the gradient reaches the student through a draw of palms it never has labels for."""
    import json

    folder = _palm_folder(tmp_path / "other", seed=5, identities=24, captures=3)
    config = CohashConfig(backbone="tiny", bits=32, teachers=",".join(map(str, teachers)), lambda_teacher=30.0,
                          teacher_data=f"folder:{folder}")
    train(tmp_path / "student", DATA, config, FitConfig(**FIT, seed=0))
    history = json.loads((tmp_path / "student" / "history.json").read_text())
    first, last = history[0], history[-3:]
    assert sum(r["teacher_unlabeled_print"] for r in last) / 3 < 0.5 * first["teacher_unlabeled_print"], history
    assert sum(r["teacher_print"] for r in last) / 3 < first["teacher_print"], history
    assert "teacher_unlabeled_vein" not in first  # the folder holds print palms only
