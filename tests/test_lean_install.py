"""The base install (no extras) is a matching device: enroll and identify hex codes with no torch or OpenCV.
On main `pip install biohash` pulled torch, timm, OpenCV and faiss for every device."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_importing_the_service_and_cli_pulls_no_training_stack():
    code = "import sys, biohash.serve.service, biohash.cli, biohash.cli.deploy, biohash.serve.deployment; " \
           "print(sorted({'torch', 'cv2', 'timm', 'sklearn', 'matplotlib', 'faiss'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_base_install_enrolls_and_identifies_hex_codes_without_torch(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(REPO)], capture_output=True, text=True,
                             timeout=900, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    assert install.returncode == 0, install.stderr[-2000:]
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    for m in ("print", "vein"):
        (bundle / f"{m}.onnx").write_bytes(b"never loaded: hex codes need no encoder")
    (bundle / "bundle.json").write_text(json.dumps({
        "modalities": ["print", "vein"], "bits": 32, "image_size": 64, "fingerprint": "f" * 32,
        "onnx": {m: {"onnx": f"{m}.onnx"} for m in ("print", "vein")},
        "thresholds": {"print": {"0.001": 4}, "fused": {"0.001": 4}}}))
    py = str(venv / "bin" / "python")
    check = "import importlib.util as u; print([m for m in ('torch', 'cv2', 'timm', 'faiss') if u.find_spec(m)])"
    assert subprocess.run([py, "-c", check], capture_output=True, text=True, check=True).stdout.strip() == "[]"
    cli = [str(venv / "bin" / "biohash")]
    store = str(tmp_path / "t.db")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(cli + list(args), capture_output=True, text=True, timeout=120)

    for subject, p, v in (("alice", "0f0f0f0f", "00ff00ff"), ("bob", "f0f0f0f0", "ff00ff00")):
        r = run("enroll", subject, "--bundle", str(bundle), "--store", store, "--code", f"print={p}", "--code",
                f"vein={v}")
        assert r.returncode == 0 and r.stdout.startswith(f"enrolled {subject}"), r.stdout + r.stderr
    r = run("identify", "--bundle", str(bundle), "--store", store, "--code", "print=0f0f0f0e")
    assert r.returncode == 0 and r.stdout.splitlines()[0].split("\t")[:2] == ["alice", "1.0"], r.stdout + r.stderr
    r = run("verify", "bob", "--bundle", str(bundle), "--store", store, "--code", "print=f0f0f0f0", "--code",
            "vein=ff00ff00")
    assert r.returncode == 0 and "fused: distance 0.0 bits" in r.stdout and ": match" in r.stdout
    r = run("verify", "bob", "--bundle", str(bundle), "--store", store, "--code", "print=f0f0f0f0", "--backend", "onnx")
    assert r.returncode == 0 and ": match" in r.stdout, r.stdout + r.stderr  # on main: no module onnxruntime
    r = run("synth", str(tmp_path / "synth"))
    assert r.returncode == 2 and "pip install 'biohash[export]'" in r.stderr and "Traceback" not in r.stderr, r.stderr
    image = tmp_path / "palm.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n")  # never decoded: encoding needs the training stack first
    r = run("identify", "--bundle", str(bundle), "--store", store, "--image", f"print={image}")
    assert r.returncode == 2 and "pip install 'biohash[train]'" in r.stderr, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    r = run("train", "cohash", "--epochs", "1")  # the train commands come from recipes, which need torch
    assert r.returncode == 2 and "training needs torch and cv2" in r.stderr and "Traceback" not in r.stderr, r.stderr
