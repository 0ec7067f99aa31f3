"""What a matching-only device runs never imports torch, not even at import: every module of match, imaging
and serve (serve's torch encoder back-end imports it inside the call that builds a model), the top-level
package, and the CLI's start-up."""
import importlib
import pkgutil
import subprocess
import sys

import pytest

TORCH_FREE_PACKAGES = ["biohash.match", "biohash.imaging", "biohash.serve"]
ALSO = ["biohash", "biohash.errors", "biohash.registry", "biohash.cli", "biohash.train.runs",
        "biohash.train.data.synthetic", "biohash.train.data.datasets", "biohash.train.data.protocols"]


def _modules(package: str) -> list[str]:
    return [package] + [f"{package}.{m.name}" for m in pkgutil.iter_modules(importlib.import_module(package).__path__)]


@pytest.mark.parametrize("package", TORCH_FREE_PACKAGES + ["others"])
def test_importing_the_package_pulls_in_no_torch(package):
    modules = ALSO if package == "others" else _modules(package)
    assert len(modules) >= 4
    code = ("import importlib, sys\n"
            f"for m in {modules!r}:\n"
            "    importlib.import_module(m)\n"
            "    assert 'torch' not in sys.modules, f'importing {m} imported torch'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_help_does_not_import_torch():
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom biohash.cli import app\n"
            "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output\n"
            "r = CliRunner().invoke(app, ['train', 'cohash', '--help']); assert r.exit_code == 0, r.output\n"
            "assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
