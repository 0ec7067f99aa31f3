"""A tiny co-hashing run learns; the fit loop resumes and survives Ctrl-C."""
import dataclasses
import json

import numpy as np
import pytest
import torch

from biohash.errors import ConfigError
from biohash.train.data.config import DataConfig
from biohash.train.eval_run import evaluate_run
from biohash.train.fit import FitConfig, fit, lr_factor
from biohash.train.recipes.cohash import CohashConfig
from biohash.train.runs import RunError, read_config, write_config
from biohash.train.train_job import train

TINY_DATA = DataConfig(identities=16, captures=8, image_size=64, protocol="closed", seed=0)
TINY_MODEL = CohashConfig(backbone="tiny", bits=32)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    torch.set_num_threads(2)
    run = tmp_path_factory.mktemp("runs") / "tiny"
    train(run, TINY_DATA, TINY_MODEL, FitConfig(epochs=25, batch_size=16, lr=1e-2, seed=0))
    return run


def test_tiny_run_separates_genuine_from_impostor(trained_run):
    per_mode = evaluate_run(trained_run)
    for mode in ("print", "vein", "fused"):
        m = per_mode[mode]
        gap = m["genuine_mean"] - m["impostor_mean"]  # similarities: 1 - Hamming/bits
        assert gap > 0.15, (mode, m)
        assert m["eer"] < 0.2, (mode, m)
    assert per_mode["cross"]["genuine_mean"] > per_mode["cross"]["impostor_mean"] + 0.05
    # the relaxed codes before binarisation are scored next to the codes, per modality
    assert {"print-float", "vein-float"} <= set(per_mode) and "fused-float" not in per_mode
    assert per_mode["print-float"]["eer"] < 0.2
    # and the probe's relaxed code against the stored codes (asymmetric: the template stays the code)
    assert {"print-asym", "vein-asym"} <= set(per_mode) and per_mode["print-asym"]["eer"] < 0.2


def test_float_scores_are_cosines_of_relaxed_codes():
    import numpy as np

    from biohash.match.types import Sample
    from biohash.train.evaluate import _code_set, float_scores

    values = np.array([[0.5, -0.2, 0.9, 0.1, 0.3, -0.7, 0.2, 0.4], [0.1, 0.1, -0.3, 0.8, -0.5, 0.2, 0.6, -0.1]],
                      np.float32)
    samples = [Sample("a", "print", 0), Sample("b", "print", 0)]
    s = float_scores("print", values, values, _code_set(values, samples), _code_set(values, samples))
    assert s.mode == "print-float"
    expected = float(values[0] @ values[1] / np.linalg.norm(values[0]) / np.linalg.norm(values[1]))
    assert abs(s.matrix[0, 1] - expected) < 1e-6 and abs(s.matrix[0, 0] - 1) < 1e-6


def test_run_folder_has_everything(trained_run):
    evaluate_run(trained_run)
    for name in ("config.yaml", "environment.json", "history.json", "metrics.json", "checkpoints/best.pt",
                 "checkpoints/last.pt", "report.md", "eval/closed-test/report.md", "eval/closed-test/roc.png",
                 "eval/closed-test/det.png", "eval/closed-test/cmc.png", "eval/closed-test/scores-fused.txt"):
        assert (trained_run / name).is_file(), name
    history = json.loads((trained_run / "history.json").read_text())
    assert len(history) == 25 and all("val_eer" in row for row in history)
    best = torch.load(trained_run / "checkpoints" / "best.pt", weights_only=False)
    assert best["val_eer"] == pytest.approx(min(r["val_eer"] for r in history))


def test_open_set_evaluation_of_closed_run_is_refused(trained_run):
    with pytest.raises(RunError, match="closed"):
        evaluate_run(trained_run, protocol="open")


def test_existing_run_needs_resume(trained_run):
    with pytest.raises(RunError, match="--resume"):
        train(trained_run, TINY_DATA, TINY_MODEL, FitConfig(epochs=1))


def _tiny_setup():
    from biohash.train.data.config import open_split
    from biohash.train.data.loaders import PairedTrainSet
    from biohash.train.recipes.cohash import build

    ds, split = open_split(DataConfig(identities=6, captures=2, image_size=32, protocol="closed"))
    train = PairedTrainSet(ds, split.train, ("print", "vein"), 32)
    model, step = build(CohashConfig(backbone="tiny", bits=16), len(train.classes))
    return model, step, torch.utils.data.DataLoader(train, batch_size=2)


def test_resume_continues_where_it_stopped(tmp_path):
    torch.manual_seed(0)
    model, step, loader = _tiny_setup()
    fit(model, step, loader, FitConfig(epochs=2, batch_size=2), tmp_path)
    model2, step2, _ = _tiny_setup()
    history = fit(model2, step2, loader, FitConfig(epochs=3, batch_size=2), tmp_path)
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=False)["epoch"] == 3


def test_ctrl_c_leaves_a_resumable_checkpoint(tmp_path):
    model, step, loader = _tiny_setup()
    calls = {"n": 0}

    def interrupting_step(net, batch):
        calls["n"] += 1
        if calls["n"] == len(loader) + 2:  # during the second epoch
            raise KeyboardInterrupt
        return step(net, batch)

    with pytest.raises(KeyboardInterrupt):
        fit(model, interrupting_step, loader, FitConfig(epochs=3, batch_size=2), tmp_path)
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=False)
    assert state["epoch"] == 1  # the interrupted epoch starts over
    history = fit(model, step, loader, FitConfig(epochs=3, batch_size=2), tmp_path)
    assert [r["epoch"] for r in history] == [1, 2, 3]


def test_lr_schedule_warms_up_then_decays():
    cfg = FitConfig(epochs=10, warmup_epochs=1)
    assert lr_factor(cfg, 0.0) < 0.01 and lr_factor(cfg, 1.0) == pytest.approx(1.0)
    assert lr_factor(cfg, 9.9) < 0.01
    assert np.all(np.diff([lr_factor(cfg, e) for e in np.linspace(1, 10, 20)]) <= 0)


def test_resume_with_other_settings_is_refused(trained_run):
    other = DataConfig(identities=17, captures=6, image_size=64, protocol="closed", seed=0)
    with pytest.raises(RunError, match="other data"):
        train(trained_run, other, TINY_MODEL, FitConfig(epochs=25, batch_size=16, lr=1e-2, seed=0),
              resume=True)


def test_a_run_from_before_a_setting_existed_resumes_when_that_setting_holds_its_default(tmp_path):
    """A run started by an older biohash has no entry for a setting added since: its default is the old
    behaviour, so resuming with the same flags goes on; a non-default value for it is still another setting."""
    data = DataConfig(identities=8, captures=4, image_size=32, protocol="closed", seed=0)
    run = tmp_path / "old"
    train(run, data, TINY_MODEL, FitConfig(epochs=1, batch_size=8))
    config = read_config(run)
    del config["model"]["teacher_pairs"], config["fit"]["ema"]  # as an older version wrote it
    write_config(run, config)
    train(run, data, TINY_MODEL, FitConfig(epochs=1, batch_size=8), resume=True)  # refused before
    assert [r["epoch"] for r in json.loads((run / "history.json").read_text())] == [1]
    config = read_config(run)
    del config["model"]["lambda_parts"]
    write_config(run, config)
    with pytest.raises(RunError, match="other model"):
        train(run, data, dataclasses.replace(TINY_MODEL, lambda_parts=0.9), FitConfig(epochs=1, batch_size=8),
              resume=True)


def test_a_run_that_would_train_no_step_is_an_error(tmp_path):
    data = torch.utils.data.TensorDataset(torch.zeros(3, 2))
    loader = torch.utils.data.DataLoader(data, batch_size=8, drop_last=True)  # 3 items, no full batch
    with pytest.raises(RunError, match="no training step: 3 training items make no full batch"):
        fit(torch.nn.Linear(2, 1), lambda m, b: {"loss": m(b[0]).sum()}, loader, FitConfig(epochs=1, batch_size=8),
            tmp_path)


def test_the_checkpoint_can_be_chosen_on_like_with_like_modes_and_a_wrong_monitor_is_named(tmp_path):
    data = DataConfig(identities=8, captures=4, image_size=32, protocol="closed", seed=0)
    train(tmp_path / "same", data, TINY_MODEL, FitConfig(epochs=2, batch_size=8, monitor="val_eer_same"))
    history = json.loads((tmp_path / "same" / "history.json").read_text())
    row = history[-1]
    same = [row[f"val_eer_{m}"] for m in ("print", "vein", "fused")]
    assert abs(row["val_eer_same"] - np.mean(same)) < 1e-9 and "val_eer_cross" in row
    best = torch.load(tmp_path / "same" / "checkpoints" / "best.pt", weights_only=False)
    assert best["val_eer_same"] == min(r["val_eer_same"] for r in history)
    with pytest.raises(RunError, match="--monitor val_eer_typo is not a validation figure.*val_eer_same"):
        train(tmp_path / "typo", data, TINY_MODEL, FitConfig(epochs=1, batch_size=8, monitor="val_eer_typo"))


def test_the_checkpoint_can_be_chosen_by_the_asymmetric_scoring_that_is_reported(tmp_path):
    """val_eer_same_asym: the like-with-like modes scored as the figures are (the probe's relaxed code against the
    stored codes), beside the plain Hamming figures, which keep their meaning."""
    data = DataConfig(identities=8, captures=4, image_size=32, protocol="closed", seed=0)
    train(tmp_path / "asym", data, TINY_MODEL, FitConfig(epochs=2, batch_size=8, monitor="val_eer_same_asym"))
    history = json.loads((tmp_path / "asym" / "history.json").read_text())
    from biohash.train.data.config import open_split
    from biohash.train.evaluate import evaluate
    from biohash.train.recipes.base import build_untrained
    from biohash.train.runs import read_config

    config = read_config(tmp_path / "asym")
    model = build_untrained(config)
    best = torch.load(tmp_path / "asym" / "checkpoints" / "best.pt", weights_only=False)
    model.load_state_dict(best["model"])
    dataset, split = open_split(data)
    _, per_mode = evaluate(model.eval(), dataset, split.val_gallery, split.val_probe, 32, floats=True)
    want = np.mean([per_mode[f"{m}-asym"]["eer"] for m in ("print", "vein", "fused")])
    row = history[best["epoch"] - 1]
    assert abs(row["val_eer_same_asym"] - want) < 1e-9
    assert best["val_eer_same_asym"] == min(r["val_eer_same_asym"] for r in history)
    plain = [row[f"val_eer_{m}"] for m in ("print", "vein", "fused", "cross", "cross-rev")]
    assert abs(row["val_eer"] - np.mean(plain)) < 1e-9 and not any(k.endswith(("-asym", "-float")) for k in row)


def test_ema_validates_and_keeps_the_moving_average_of_the_weights_across_a_resume(tmp_path):
    """FitConfig.ema: validation and best.pt read the exponential moving average of the weights (decay per
    step), not the raw weights; last.pt carries it, so a resumed run ends where an uninterrupted one does."""
    data = torch.utils.data.TensorDataset(torch.ones(4, 1))
    cfg = FitConfig(epochs=2, batch_size=2, lr=0.1, optimizer="sgd", schedule="constant", warmup_epochs=0,
                    weight_decay=0.0, ema=0.5)

    def run(folder, epochs_list):
        torch.manual_seed(0)
        model = torch.nn.Linear(1, 1, bias=False)
        raw, seen = [], []

        def step(m, batch):
            raw.append(float(m.weight.detach()))  # the raw weight before this step's update
            return {"loss": ((m(batch[0]) - 3.0) ** 2).mean()}

        def validate(m):
            seen.append(float(m.weight))
            return {"val_eer": 1.0 / len(seen)}

        for epochs in epochs_list:
            fit(model, step, torch.utils.data.DataLoader(data, batch_size=2), dataclasses.replace(cfg, epochs=epochs),
                folder, validate=validate)
        final = float(torch.load(folder / "checkpoints" / "last.pt", weights_only=False)["model"]["weight"])
        best = float(torch.load(folder / "checkpoints" / "best.pt", weights_only=False)["model"]["weight"])
        return raw, seen, final, best

    raw, seen, final, best = run(tmp_path / "a", [2])
    after = raw[1:] + [final]  # the raw weight after each of the 4 steps
    ema = [after[0]]
    for w in after[1:]:
        ema.append(0.5 * ema[-1] + 0.5 * w)
    assert seen == pytest.approx([ema[1], ema[3]]) and best == pytest.approx(ema[3])
    assert abs(best - final) > 1e-3  # not the raw weights
    _, seen_b, _, best_b = run(tmp_path / "b", [1, 2])  # stopped after epoch 1, resumed
    assert seen_b == pytest.approx(seen) and best_b == pytest.approx(best)
    with pytest.raises(ConfigError, match="ema must be in"):
        FitConfig(ema=1.0)
