"""Several databases in one run: identities kept apart, a print-only database trains the print branch alone,
evaluation per database."""
from __future__ import annotations

import json

import cv2
import pytest
import torch

from biohash.train.data.config import DataConfig, open_split
from biohash.train.data.datasets import DatasetError
from biohash.train.data.multi import parse_spec, part_of
from biohash.train.data.synthetic import SyntheticPalms


def _write_folder(root, seed, identities, captures, modalities):
    """Synthetic palms as a user's folder: ROOT/IDENTITY/MODALITY/K.png (captures of one K pair across modalities)."""
    gen = SyntheticPalms(seed=seed, size=64)
    for i in range(identities):
        for m in modalities:
            (root / f"p{i:02d}" / m).mkdir(parents=True, exist_ok=True)
            for k in range(captures):
                cv2.imwrite(str(root / f"p{i:02d}" / m / f"{k}.png"), gen.render(i, m, k))
    return str(root)


@pytest.fixture(scope="module")
def joined(tmp_path_factory):
    base = tmp_path_factory.mktemp("multi")
    paired = _write_folder(base / "paired", 1, 12, 6, ("print", "vein"))
    print_only = _write_folder(base / "print-only", 2, 12, 6, ("print",))
    return DataConfig(dataset="folder", root=paired, protocol="closed", image_size=64,
                      also=[{"dataset": "folder", "root": print_only}])


def test_joined_split_keeps_identities_and_databases_apart(joined):
    dataset, split = open_split(joined)
    assert dataset.name == "folder+folder#2" and len(dataset.samples) == 12 * 6 * 3
    assert {part_of(s) for s in split.test_probe} == {"folder", "folder#2"}
    ids = {s.identity for s in split.train}
    assert len(ids) == 24 and "folder:p00" in ids and "folder#2:p00" in ids  # same folder name, two people
    sample = split.test_probe[-1]
    assert part_of(sample) == "folder#2" and dataset.load(sample).shape == (64, 64)
    assert {s.modality for s in split.train if part_of(s) == "folder#2"} == {"print"}


def test_print_only_items_leave_the_vein_branch_untouched(joined):
    from biohash.train.data.loaders import PairedTrainSet
    from biohash.train.recipes.cohash import CohashConfig, build

    dataset, split = open_split(joined)
    train_set = PairedTrainSet(dataset, split.train, ("print", "vein"), 64)
    assert len(train_set.classes) == 24
    items = [train_set[i] for i in range(len(train_set))]
    only = [it for it in items if not it["present"][1]]
    assert len(only) == len(items) // 2 and all(it["vein"].abs().sum() == 0 for it in only)
    model, step = build(CohashConfig(backbone="tiny", bits=32, loss="arcface", lambda_supcon=0.2), 24, seed=0)
    batch = {k: torch.stack([it[k] for it in only[:6] + items[:2]]) for k in items[0]}
    assert not batch["present"][:6, 1].any() and batch["present"][6:].all()
    parts = step(model, batch)
    parts["loss"].backward()
    assert {"arcface_print", "arcface_vein", "cross", "supcon"} <= set(parts)
    vein_backbone = [p.grad for p in model.net("vein").backbone.parameters()]
    assert all(g is not None for g in vein_backbone)  # the two paired items reach it
    model.zero_grad(set_to_none=True)
    step(model, {k: v[:6] for k, v in batch.items()})["loss"].backward()  # print-only items alone
    assert all(p.grad is None for p in model.net("vein").backbone.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.net("print").backbone.parameters())


def test_a_joined_run_trains_and_is_scored_per_database(joined, tmp_path):
    from biohash.train.eval_run import evaluate_run
    from biohash.train.fit import FitConfig
    from biohash.train.recipes.cohash import CohashConfig
    from biohash.train.train_job import train

    torch.set_num_threads(2)
    run = tmp_path / "joined"
    train(run, joined, CohashConfig(backbone="tiny", bits=32), FitConfig(epochs=15, batch_size=16, lr=1e-2))
    first = evaluate_run(run)
    paired = json.loads((run / "eval" / "folder-closed-test" / "metrics.json").read_text())
    alone = json.loads((run / "eval" / "folder#2-closed-test" / "metrics.json").read_text())
    assert paired["modes"] == first and paired["identities"] == 12 and alone["identities"] == 12
    assert set(alone["modes"]) == {"print", "print-float", "print-asym"}  # a print-only database: no vein, fused or cross
    assert {"print", "vein", "fused", "cross"} <= set(paired["modes"])
    for modes in (paired["modes"], alone["modes"]):
        assert modes["print"]["eer"] < 0.2 and modes["print"]["genuine_mean"] > modes["print"]["impostor_mean"] + 0.15
    top = json.loads((run / "metrics.json").read_text())
    assert set(top["databases"]) == {"folder", "folder#2"}
    from typer.testing import CliRunner

    from biohash.cli import app

    result = CliRunner().invoke(app, ["eval", str(run), "--test-shifts", "2"])
    assert result.exit_code == 0, result.output
    assert "folder (closed set, 12 identities)" in result.output and "folder#2 (closed set" in result.output
    assert (run / "eval" / "folder#2-closed-test-shifts2" / "metrics.json").is_file()
    result = CliRunner().invoke(app, ["eval", str(run), "--test-shifts", "2", "--test-views", "square"])
    assert result.exit_code == 0, result.output  # on main: No such option: --test-views
    square = json.loads((run / "eval" / "folder-closed-test-square2" / "metrics.json").read_text())["modes"]
    cross = json.loads((run / "eval" / "folder-closed-test-shifts2" / "metrics.json").read_text())["modes"]
    assert square["print"]["d_prime"] != cross["print"]["d_prime"]  # nine copies averaged, not five


def test_also_specs_and_bad_parts():
    assert parse_spec("polyu:../data/polyu-ms-full:bands=paper:test_fraction=0.5") == {
        "dataset": "polyu", "root": "../data/polyu-ms-full", "options": {"bands": "paper"}, "test_fraction": 0.5}
    with pytest.raises(DatasetError, match="NAME:ROOT"):
        parse_spec("tongji")
    with pytest.raises(DatasetError, match="not KEY=VALUE"):
        parse_spec("tongji:/x:bands")
    with pytest.raises(DatasetError, match="takes dataset, root"):
        DataConfig(dataset="tongji", root="/x", also=[{"dataset": "tongji", "folder": "/y"}])
