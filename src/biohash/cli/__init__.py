"""The `biohash` command line: one typer app (cli.app), its commands registered by group on import.

main: synth, quantize, export, roi, eval, demo, datasets; train: train NAME; deploy: enroll,
verify, identify, delete, serve; zoo: pretrain, publish, zoo. Heavy imports (torch) happen inside commands, so --help
is instant.
"""
from biohash.cli.app import app

# each module registers its commands on app; the order here is the order of `biohash --help`
# isort: off
from biohash.cli import main  # noqa: E402,F401
from biohash.cli import train  # noqa: E402,F401
from biohash.cli import deploy  # noqa: E402,F401
from biohash.cli import zoo  # noqa: E402,F401
# isort: on

__all__ = ["app"]
