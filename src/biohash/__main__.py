"""`python -m biohash ...` and `torchrun --nproc-per-node N -m biohash train ...`: the biohash command line."""
from biohash.cli import app

app(prog_name="biohash")
