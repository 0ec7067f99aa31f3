"""The numpy stack and the CLI's start-up never import torch: a matching-only device installs no torch."""
import subprocess
import sys

import pytest

NUMPY_STACK = ["biohash", "biohash.types", "biohash.codes", "biohash.metrics", "biohash.scores", "biohash.registry",
               "biohash.data.synthetic", "biohash.data.datasets", "biohash.data.protocols", "biohash.cli",
               "biohash.matching", "biohash.scan", "biohash.mih", "biohash.protect", "biohash.store", "biohash.quality"]


@pytest.mark.parametrize("module", NUMPY_STACK)
def test_module_does_not_import_torch(module):
    code = f"import sys, {module}; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_help_does_not_import_torch():
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom biohash.cli import app\n"
            "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output\n"
            "r = CliRunner().invoke(app, ['train', 'cohash', '--help']); assert r.exit_code == 0, r.output\n"
            "assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
