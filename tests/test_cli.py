"""The CLI through typer's runner: errors are one line, a tiny training run writes a run folder."""
import pytest
from typer.testing import CliRunner

from biohash.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)


def _error_line(result):
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_unknown_backbone():
    assert "expected one of" in _error_line(runner.invoke(app, ["train", "cohash", "--model", "vgg99"]))


def test_bits_outside_the_documented_lengths():
    assert "one of 16, 32, 64, 128, 256" in _error_line(runner.invoke(app, ["train", "cohash", "--bits", "12"]))
    assert "got 24" in _error_line(runner.invoke(app, ["train", "cohash", "--bits", "24"]))  # main accepted 24
    assert "got 24" in _error_line(runner.invoke(app, ["train", "dhn", "--bits", "24"]))


def test_paper_flags_with_real_dataset_name_fail_clearly(tmp_path):
    args = ["train", "cohash", "-b", "256", "--ds", "casiam", "--bits", "32", "--model", "res18", "--comment",
            "caRes32", "--epoch", "4000", "--runs", str(tmp_path)]
    assert "needs a root folder" in _error_line(runner.invoke(app, args))
    line = _error_line(runner.invoke(app, args + ["--root", str(tmp_path / "none")]))
    assert "root folder not found" in line and "none" in line


def test_bad_dataset_option_is_a_clear_error(tmp_path):
    args = ["train", "cohash", "--ds", "synthetic", "--option", "bands", "--runs", str(tmp_path)]
    assert "KEY=VALUE" in _error_line(runner.invoke(app, args))


def test_unknown_protocol_and_dataset():
    assert "protocol" in _error_line(runner.invoke(app, ["train", "cohash", "--protocol", "half"]))
    assert "unknown dataset" in _error_line(runner.invoke(app, ["train", "cohash", "--ds", "mnist"]))


def test_eval_on_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "notarun").mkdir()
    assert "not a run folder" in _error_line(runner.invoke(app, ["eval", str(tmp_path / "notarun")]))
    assert "not found" in _error_line(runner.invoke(app, ["eval", str(tmp_path / "missing")]))


def test_synth_writes_images_and_sheet(tmp_path):
    result = runner.invoke(app, ["synth", str(tmp_path / "syn"), "--identities", "2", "--captures", "3"])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "syn").rglob("*.png"))) == 2 * 2 * 3 + 1
    assert (tmp_path / "syn" / "contact_sheet.png").is_file()


def test_paper_style_flags_train_and_eval(tmp_path):
    args = ["train", "cohash", "-b", "8", "--ds", "synthetic", "--bits", "16", "--model", "tiny", "--comment",
            "paperflags", "--epoch", "1", "--identities", "8", "--captures", "2", "--image-size", "32",
            "--runs", str(tmp_path / "runs"), "--share", "none", "--lambda-softmax", "0"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "paperflags"
    assert "bits: 16" in (run / "config.yaml").read_text()
    assert "backbone: tiny" in (run / "config.yaml").read_text()
    assert "share: none" in (run / "config.yaml").read_text()
    assert "lambda_softmax: 0.0" in (run / "config.yaml").read_text()
    result = runner.invoke(app, ["eval", str(run)])
    assert result.exit_code == 0, result.output
    assert "| fused |" in result.output and "| cross |" in result.output


def test_unknown_sharing():
    args = ["train", "cohash", "--share", "trunk", "--identities", "8", "--captures", "2", "--image-size", "32", "-b", "4",
            "--model", "tiny"]
    assert "unknown sharing" in _error_line(runner.invoke(app, args))


def test_the_papers_own_command_on_casia_trains_and_says_what_it_did(tmp_path, shared_data):
    """On main: 240 training samples < batch 256 gave zero steps and a KeyError traceback; the 940 nm-only
    folder silently made a vein-only run."""
    import json

    args = ["train", "cohash", "-b", "256", "--ds", "casiam", "--bits", "32", "--model", "res18", "--comment",
            "caRes32", "--epoch", "1", "--root", str(shared_data / "casia-ms"), "--runs", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "batch size 256 is larger than the 240 training samples" in out
    assert "only vein images were found" in out and "bands=460,940" in out
    assert "min so far, about 0.0 min left" in out  # every epoch line estimates the rest (main: none)
    run = next(p for p in tmp_path.iterdir() if (p / "metrics.json").is_file())
    strict = json.loads((run / "metrics.json").read_text(),
                        parse_constant=lambda c: pytest.fail(f"metrics.json holds {c}: not strict JSON"))
    assert strict and json.loads((run / "history.json").read_text())[0]["loss"] > 0


def test_write_json_is_strict_json(tmp_path):
    import json

    import numpy as np

    from biohash.match.metrics import d_prime
    from biohash.train.runs import write_json

    write_json(tmp_path / "m.json", {"d": float("inf"), "n": np.float32("nan"), "a": np.arange(2), "k": (1, 2.5)})
    text = (tmp_path / "m.json").read_text()
    assert "Infinity" not in text and "NaN" not in text
    assert json.loads(text) == {"d": None, "n": None, "a": [0, 1], "k": [1, 2.5]}
    assert d_prime(np.zeros(5), np.zeros(5)) == 0.0  # every code identical: no separation, not infinite


def _casia_subset(shared_data, folder, palms):
    folder.mkdir()
    for palm in palms:
        for k in range(1, 7):
            name = f"{palm}_l_940_0{k}.jpg"
            (folder / name).write_bytes((shared_data / "casia-ms" / "940" / name).read_bytes())
    return folder


def test_train_on_every_identity_then_score_another_folder(tmp_path, shared_data):
    """On main: no --val-fraction/--test-fraction flags, no --protocol all, and eval --ds/--root dropped the run's
    adapter options (-o bands=940 had to be repeated)."""
    import json

    palms = sorted({p.name[:3] for p in (shared_data / "casia-ms" / "940").glob("*.jpg")})
    mine = _casia_subset(shared_data, tmp_path / "mine", palms[:6])
    other = _casia_subset(shared_data, tmp_path / "other", palms[6:10])
    result = runner.invoke(app, ["train", "cohash", "--ds", "casiam", "--root", str(mine), "-o", "bands=940",
                                 "--val-fraction", "0.34", "--test-fraction", "0", "--model", "tiny", "--bits", "16",
                                 "--epochs", "1", "-b", "8", "--image-size", "32", "--name", "r", "--runs",
                                 str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "no test identities" in out and "--protocol all" in out
    import yaml

    split = yaml.safe_load((tmp_path / "runs" / "r" / "config.yaml").read_text())["split"]
    assert (split["train_identities"], split["val_identities"], split["test_identities"]) == (4, 2, 0)
    history = json.loads((tmp_path / "runs" / "r" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1] and "val_eer" in history[0]  # one epoch, validated
    result = runner.invoke(app, ["eval", str(tmp_path / "runs" / "r"), "--ds", "casiam", "--root", str(other),
                                 "--protocol", "all"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "runs" / "r" / "metrics.json").read_text())
    assert metrics["identities"] == 4 and metrics["protocol"] == "all" and metrics["cross_domain"]
    assert metrics["options"] == {"bands": 940}  # inherited from the run
    assert "vein" in metrics["modes"]
    result = runner.invoke(app, ["eval", str(tmp_path / "runs" / "r"), "--protocol", "all"])
    assert result.exit_code == 2 and "another folder" in result.output


def test_version_and_clear_bundle_errors(tmp_path):
    from biohash import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"biohash {__version__}"  # main: no such option
    line = _error_line(runner.invoke(app, ["identify", "--bundle", str(tmp_path / "nowhere"), "-i", "print=x.png"]))
    assert "bundle folder not found" in line  # main: "export the run first" for a folder that does not exist


def test_train_help_shows_the_recipe_defaults():
    """On main `train cohash --help` showed no defaults (the options are None until given); the shown values
    must be the config dataclasses' own."""
    import dataclasses

    from biohash.train.data.config import DataConfig
    from biohash.train.fit import FitConfig
    from biohash.train.recipes.cohash import CohashConfig

    text = " ".join(runner.invoke(app, ["train", "cohash", "--help"], env={"COLUMNS": "250"}).output.split())
    defaults = {f.name: f.default for cls in (CohashConfig, FitConfig, DataConfig) for f in dataclasses.fields(cls)}
    for name in ("bits", "backbone", "batch_size", "epochs", "lr", "loss", "lambda_cross", "protocol",
                 "test_fraction", "image_size"):
        assert f"[default: ({defaults[name]})]" in text, name


def test_a_misspelt_dataset_option_is_one_line_naming_the_accepted_ones(tmp_path, shared_data):
    line = _error_line(runner.invoke(app, ["train", "cohash", "--ds", "casiam", "--root",
                                           str(shared_data / "casia-ms"), "-o", "bandz=940"]))
    assert "takes no option 'bandz'" in line and "bands" in line  # main: a TypeError traceback, exit 1


def test_the_datasets_command_the_help_names_lists_every_adapter():
    result = runner.invoke(app, ["datasets"])
    assert result.exit_code == 0, result.output  # on main: No such command 'datasets'
    for name in ("synthetic (syn)", "casia-ms (casiam)", "polyu-ms (polyu)", "tongji", "folder", "veindeep"):
        assert f"\n{name}\n" in f"\n{result.output}", name
    assert "options: root=None, bands=('940',), roi='valley'" in result.output and "vein = 850 and 940 nm" in result.output


def test_demo_resume_continues_the_stopped_run(monkeypatch, tmp_path):
    import biohash.cli.demo

    calls = []
    monkeypatch.setattr(biohash.cli.demo, "run_demo", lambda run_dir, **kw: calls.append((run_dir, kw)))
    result = runner.invoke(app, ["demo", "--resume", "--runs", str(tmp_path)])
    assert result.exit_code == 0, result.output  # on main: No such option: --resume
    assert calls[0][0] == tmp_path / "demo" and calls[0][1]["fresh"] is False
    runner.invoke(app, ["demo", "--runs", str(tmp_path)])
    assert calls[1][1]["fresh"] is True


def test_help_names_arguments_and_the_roi_failure_default():
    assert "eval [OPTIONS] {RUN}" in runner.invoke(app, ["eval", "--help"]).output  # on main: {run}
    out = runner.invoke(app, ["train", "cohash", "--help"]).output
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if "--on-roi-failure" in line)
    block = [lines[start]] + [line for line in lines[start + 1:start + 4] if not line.lstrip("│ ").startswith("-")]
    text = " ".join(w for line in block for w in line.replace("│", " ").replace("╰", " ").split())
    assert "skip" in text and "the default)" in text  # on main: no default shown


def test_train_takes_a_jitter_scale_and_refuses_a_negative_one():
    line = _error_line(runner.invoke(app, ["train", "cohash", "--jitter", "-1", "--epochs", "1"]))
    assert "jitter must be in [0, 5]" in line


def test_train_takes_a_number_of_training_identities_under_the_open_protocol_only():
    line = _error_line(runner.invoke(app, ["train", "cohash", "--train-identities", "5", "--protocol", "closed",
                                           "--epochs", "1"]))
    assert "train_identities needs the open protocol" in line  # on main: No such option


def test_train_takes_a_photometric_scale_and_refuses_a_negative_one():
    line = _error_line(runner.invoke(app, ["train", "cohash", "--photometric", "-1", "--epochs", "1"]))
    assert "photometric must be in [0, 5]" in line  # on main: No such option: --photometric
