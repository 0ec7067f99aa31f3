"""Run folders: every run is `runs/NAME/` with config.yaml, environment.json, metrics and checkpoints."""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from biohash.errors import BiohashError, FileFormatError, check_fields

CONFIG = "config.yaml"
PACKAGES = ("biohash", "torch", "torchvision", "timm", "numpy", "scipy", "opencv-python-headless", "faiss-cpu",
            "scikit-learn")


class RunError(BiohashError):
    """A folder is not a run, or a run is missing what a command needs."""


def run_name(recipe: str) -> str:
    return f"{recipe}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file + rename), so a crash never leaves a half-written file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_strict(data), indent=2, allow_nan=False))
    os.replace(tmp, path)


def _strict(value: Any) -> Any:
    """Plain JSON values: arrays become lists, NaN and infinities None (strict parsers refuse them)."""
    if isinstance(value, dict):
        return {str(k): _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    if hasattr(value, "tolist"):
        return _strict(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG).write_text(yaml.safe_dump(config, sort_keys=False))


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """The run's config; a one-line RunError when the folder is not a run."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"run folder not found: {run_dir}")
    path = run_dir / CONFIG
    if not path.is_file():
        raise RunError(f"{run_dir} is not a run folder: expected {CONFIG} in it (made by `biohash train`)")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise FileFormatError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None
    return check_fields(config, {"recipe": str, "data": dict}, str(path),
                        optional={"model": dict, "fit": dict, "split": dict})


def environment() -> dict[str, Any]:
    """Interpreter, platform, package versions, git commit and thread counts, for reproducibility."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    env: dict[str, Any] = {
        "time": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "packages": versions,
        "git_commit": _git_commit(),
        "argv": sys.argv,
    }
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        env["torch_threads"] = torch.get_num_threads()
        env["cuda"] = torch.cuda.is_available()
    return env


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
