"""Training past one process: torchrun on the gloo back-end (CPU) gives the run one process gives; a DDP
checkpoint resumes in one process; a device or precision this machine lacks is a one-line error.

The runs use tests/tiny_recipe.py (no BatchNorm, whose batch statistics would differ per process), named in
BIOHASH_RECIPES so that the torchrun workers register it too."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from biohash.cli import app

TESTS = Path(__file__).resolve().parent
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
pytestmark = pytest.mark.slow  # every test here trains or exports a model

runner = CliRunner()


def _args(runs: Path, name: str, epochs: int) -> list[str]:
    return ["train", "tinyhash", "--identities", "40", "--captures", "4", "--epochs", str(epochs), "-b", "16",
            "--lr", "0.01", "--device", "cpu", "--threads", "1", "--runs", str(runs), "--name", name]


def _env() -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "BIOHASH_RECIPES": "tiny_recipe", "OMP_NUM_THREADS": "1"}


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)["model"]


def test_two_gloo_processes_train_what_one_process_trains(tmp_path):
    """Same seed, same global batch of 16: each process takes 8 of every batch, DDP averages the gradients."""
    launch = subprocess.Popen(TORCHRUN + ["-m", "biohash"] + _args(tmp_path, "two", 3), env=_env(), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = launch.communicate(timeout=300)
    finally:
        if launch.poll() is None:  # a hung launch: take its workers down too
            _kill_tree(launch.pid)
    assert launch.returncode == 0, out[-2000:] + err[-2000:]
    import tiny_recipe  # noqa: F401  (registers the recipe in this process)

    one = runner.invoke(app, _args(tmp_path, "one", 3))
    assert one.exit_code == 0, one.output
    h1, h2 = (json.loads((tmp_path / n / "history.json").read_text()) for n in ("one", "two"))
    assert [r["loss"] for r in h2] == pytest.approx([r["loss"] for r in h1], rel=1e-5)
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-4
    assert json.loads((tmp_path / "two" / "environment.json").read_text())["world_size"] == 2
    assert out.count("run folder:") == 1  # rank 0 alone reports (and evaluates)


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and its descendants (torchrun starts its workers in sessions of their own)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    kids = [int(c) for c in children.read_text().split()] if children.exists() else []
    os.kill(pid, signal.SIGSTOP)  # no new worker while the tree is taken down
    for kid in kids:
        _kill_tree(kid)
    os.kill(pid, signal.SIGKILL)


def test_a_checkpoint_of_a_ddp_run_resumes_in_one_process(tmp_path):
    epochs = 40
    launch = subprocess.Popen(TORCHRUN + ["-m", "biohash"] + _args(tmp_path, "r", epochs), env=_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = tmp_path / "r" / "checkpoints" / "last.pt"
    deadline = time.time() + 240
    while not last.exists() and launch.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    _kill_tree(launch.pid)  # a crash: no process gets a chance to save anything more
    launch.wait()
    time.sleep(0.5)  # let the killed workers' file handles close
    stopped_at = torch.load(last, weights_only=False)["epoch"]
    assert 1 <= stopped_at < epochs, f"the launch was not stopped mid-run (epoch {stopped_at})"
    import tiny_recipe  # noqa: F401

    resumed = runner.invoke(app, _args(tmp_path, "r", epochs) + ["--resume"])
    assert resumed.exit_code == 0, resumed.output
    text = " ".join(resumed.output.split())  # (rich folds the long checkpoint path)
    assert "resumed from" in text and f"at epoch {stopped_at}/{epochs}" in text
    history = json.loads((tmp_path / "r" / "history.json").read_text())
    assert [r["epoch"] for r in history] == list(range(1, epochs + 1))
    assert json.loads((tmp_path / "r" / "environment.json").read_text())["world_size"] == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_device_or_precision_this_machine_lacks_is_one_line(tmp_path):
    for extra, expected in ((["--device", "cuda"], "no CUDA GPU is visible"),
                            (["--device", "cuda:1"], "no CUDA GPU is visible"),
                            (["--device", "tpu"], "unknown device 'tpu'"),
                            (["--device", "cpu", "--amp", "fp16"], "--amp fp16 needs a GPU"),
                            (["--amp", "fp32"], "unknown --amp 'fp32'")):
        result = runner.invoke(app, ["train", "cohash", "--backbone", "tiny", "--epochs", "1",
                                     "--runs", str(tmp_path), "--name", "x"] + extra)
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1 and expected in lines[0], result.output
        assert not (tmp_path / "x" / "config.yaml").exists()  # refused before the run folder is written


def test_bf16_mixed_precision_trains_on_the_cpu(tmp_path):
    import tiny_recipe  # noqa: F401

    result = runner.invoke(app, _args(tmp_path, "bf", 2) + ["--amp", "bf16"])
    assert result.exit_code == 0, result.output
    history = json.loads((tmp_path / "bf" / "history.json").read_text())
    assert history[-1]["loss"] < history[0]["loss"]
    assert json.loads((tmp_path / "bf" / "environment.json").read_text())["amp"] == "bf16"


def test_a_missing_recipe_module_is_named(monkeypatch):
    from biohash.train.recipes.base import load_recipes
    from biohash.train.runs import RunError

    monkeypatch.setenv("BIOHASH_RECIPES", "no_such_recipes_module")
    with pytest.raises(RunError, match="BIOHASH_RECIPES names 'no_such_recipes_module'"):
        load_recipes()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_an_encoder_or_server_asked_for_a_missing_gpu_refuses_at_start(tmp_path):
    from biohash.serve.encoder import Encoder
    from biohash.train.runs import RunError

    (tmp_path / "bundle.json").write_text(json.dumps({"modalities": ["print"], "bits": 32, "image_size": 64,
                                                      "fingerprint": "f" * 32, "onnx": {}}))
    with pytest.raises(RunError, match="no CUDA GPU is visible"):
        Encoder(tmp_path, device="cuda")
    keys = tmp_path / "keys"
    keys.write_text("7f3c9a61e2b84d05a9c1f6e3b27d4a88\n")
    keys.chmod(0o600)
    result = runner.invoke(app, ["serve", "--bundle", str(tmp_path), "--store", str(tmp_path / "t.db"),
                                 "--api-key-file", str(keys), "--device", "cuda"])
    assert result.exit_code == 2 and "no CUDA GPU is visible" in result.output, result.output


def test_one_numbered_gpu_for_every_torchrun_process_is_refused(monkeypatch):
    from biohash.train.fit_config import FitConfig
    from biohash.train.runs import RunError
    from biohash.train.train_job import _join

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(RunError, match="each process takes cuda:LOCAL_RANK"):
        _join(FitConfig(device="cuda:1"))


def test_a_joined_run_with_a_print_only_database_trains_under_torchrun(tmp_path):
    """Each process's share of a batch may hold no paired item, leaving the vein branch unused there: DDP must
    not assume a static graph (main: 'Expected to have finished reduction' on the first such step)."""
    from test_multi import _write_folder

    paired = _write_folder(tmp_path / "paired", 1, 6, 6, ("print", "vein"))
    alone = _write_folder(tmp_path / "alone", 2, 10, 6, ("print",))
    args = ["train", "cohash", "--ds", "folder", "--root", paired, "--also", f"folder:{alone}", "--protocol",
            "closed", "--image-size", "32", "--model", "tiny", "--bits", "32", "--epochs", "3", "-b", "8",
            "--device", "cpu", "--threads", "1", "--runs", str(tmp_path / "runs"), "--name", "joined"]
    launch = subprocess.Popen(TORCHRUN + ["-m", "biohash"] + args, env=_env(), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = launch.communicate(timeout=300)
    finally:
        if launch.poll() is None:
            _kill_tree(launch.pid)
    assert launch.returncode == 0, out[-2000:] + err[-2000:]
    history = json.loads((tmp_path / "runs" / "joined" / "history.json").read_text())
    assert len(history) == 3 and all(r["loss"] == r["loss"] for r in history)  # finite, every epoch
    assert (tmp_path / "runs" / "joined" / "eval" / "folder#2-closed-test" / "metrics.json").is_file()
