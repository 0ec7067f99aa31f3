"""CompCode as a co-hashing student's teacher (`--teachers compcode`): its torch codes and distances agree with
the numpy matcher, the step's term is the gap to 1 - distance / UNRELATED, and a student learns it."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from biohash.imaging import compcode as cc
from biohash.imaging.transforms import standardize
from biohash.train.data.config import DataConfig
from biohash.train.data.datasets import open_dataset
from biohash.train.fit import FitConfig
from biohash.train.losses import SimilarityDistillLoss
from biohash.train.recipes.cohash import CohashConfig, build
from biohash.train.train_job import train


def _palms(n_identities: int = 4, captures: int = 3, standardized: bool = False) -> tuple[torch.Tensor, list[np.ndarray]]:
    """Synthetic print palms as a (n, 1, 128, 128) batch, grey levels or standardised as training batches hold
    them, and CompCode's own numpy codes of the grey images."""
    palms = open_dataset("synthetic", identities=n_identities, captures=captures, seed=3, size=128)
    images = [palms.load(s) for s in palms.samples if s.modality == "print"]
    read = (lambda img: standardize(img, 128)) if standardized else (lambda img: img[None].astype(np.float32))
    return torch.stack([torch.from_numpy(read(img)) for img in images]), [cc.compcode(img) for img in images]


def test_torch_codes_and_distances_are_compcodes():
    from biohash.train.recipes.compcode_teacher import compcode_codes, compcode_distances

    batch, expected = _palms()
    codes = compcode_codes(batch)
    assert codes.shape == (len(batch), 32, 32) and codes.dtype == torch.long
    agree = (codes.numpy() == np.stack(expected)).mean()
    assert agree > 0.999, agree  # float ties aside, the same argmin on every cell
    want = cc.distance_matrix(np.stack(expected), np.stack(expected))
    got = compcode_distances(torch.from_numpy(np.stack(expected)))
    assert np.allclose(got.numpy(), want, atol=1e-5)
    assert float(got.diagonal().abs().max()) == 0.0
    # a code against a copy of itself moved by two cells: the shift search finds it
    moved = torch.from_numpy(np.stack(expected[:1]))
    shifted = torch.roll(moved, shifts=(2, -1), dims=(1, 2))
    assert float(compcode_distances(torch.cat([moved, shifted]))[0, 1]) < 0.05
    upscaled = compcode_codes(torch.nn.functional.interpolate(batch[:2], size=64, mode="bilinear"))
    assert upscaled.shape == (2, 32, 32)  # any image size is read at CompCode's 128 pixels


def test_compcode_similarity_separates_palms_as_the_numpy_matcher_does():
    """On grey images it is the numpy matcher's; on the standardised images training reads (local contrast
    normalised: the orientations barely move, PolyU green EER 0.28 -> 0.30 % on 60 palms) it still separates."""
    from biohash.train.recipes.compcode_teacher import UNRELATED, compcode_similarity

    batch, expected = _palms(n_identities=5)
    want = 1 - cc.distance_matrix(np.stack(expected), np.stack(expected)) / UNRELATED
    assert np.allclose(compcode_similarity(batch).numpy(), want, atol=1e-5)
    sims = compcode_similarity(_palms(n_identities=5, standardized=True)[0])
    labels = torch.arange(5).repeat_interleave(3)
    same = (labels[:, None] == labels[None, :]) & ~torch.eye(15, dtype=torch.bool)
    assert float(sims[same].min()) > float(sims[labels[:, None] != labels[None, :]].max())


@pytest.mark.parametrize("pairs", ["all", "above"])
def test_the_step_adds_the_gap_to_compcodes_similarity(pairs):
    config = CohashConfig(backbone="tiny", bits=64, loss="arcface", teachers="compcode", lambda_teacher=3.0,
                          dropout=0.0, teacher_pairs=pairs)
    model, step = build(config, n_classes=12, modalities=("print",))
    model.eval()
    batch, expected = _palms(n_identities=2)
    batch = {"print": batch, "label": torch.arange(2).repeat_interleave(3)}
    from biohash.train.recipes.compcode_teacher import UNRELATED

    with torch.no_grad():
        parts = step(model, batch)
        codes = torch.tanh(model.net("print").forward_pre_code(batch["print"]))
    target = torch.from_numpy(1 - cc.distance_matrix(np.stack(expected), np.stack(expected)) / UNRELATED)
    assert abs(float(parts["teacher_print"]) - float(SimilarityDistillLoss(pairs)(codes, target.float()))) < 1e-5


def test_a_student_learns_compcodes_similarities(tmp_path):
    """On palms neither run trained on, the codes of a student taught by CompCode are nearer CompCode's
    similarities than those of the same run without the teacher (same data, seed and steps)."""
    from biohash.train.recipes.base import load_model
    from biohash.train.recipes.compcode_teacher import compcode_similarity

    data = DataConfig(identities=16, captures=4, image_size=64, protocol="closed", seed=0)
    fit = FitConfig(epochs=20, batch_size=8, lr=0.01, seed=0)
    base = dict(backbone="tiny", bits=32, loss="arcface")
    train(tmp_path / "taught", data, CohashConfig(**base, teachers="compcode", lambda_teacher=30.0), fit)
    train(tmp_path / "plain", data, CohashConfig(**base), fit)
    history = json.loads((tmp_path / "taught" / "history.json").read_text())
    assert "teacher_print" in history[-1] and "teacher_vein" in history[-1]
    unseen = open_dataset("synthetic", identities=8, captures=3, seed=11, size=64)
    gaps = {}
    for name in ("taught", "plain"):
        model = load_model(tmp_path / name)
        for m in ("print", "vein"):
            x = torch.stack([torch.from_numpy(standardize(unseen.load(s), 64)) for s in unseen.samples
                             if s.modality == m])
            with torch.no_grad():
                codes = torch.tanh(model.net(m).forward_pre_code(x))
            gaps[name, m] = float(SimilarityDistillLoss()(codes, compcode_similarity(x)))
    for m in ("print", "vein"):
        assert gaps["taught", m] < 0.7 * gaps["plain", m], gaps


def test_compcode_teacher_needs_no_run_folder_and_a_missing_one_beside_it_is_still_an_error(tmp_path):
    from biohash.train.recipes.compcode_teacher import CompCodeTeacher
    from biohash.train.recipes.teachers import load_teachers
    from biohash.train.runs import RunError

    assert isinstance(load_teachers("compcode", ("print", "vein"))[0], CompCodeTeacher)
    with pytest.raises(RunError, match="not a run folder"):
        load_teachers(f"compcode,{tmp_path}", ("print",))
