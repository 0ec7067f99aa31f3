"""python -m biohash.cli: the `biohash` command."""
from biohash.cli import app

app()
