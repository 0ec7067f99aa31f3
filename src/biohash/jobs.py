"""Old home of the jobs, kept for one release so existing imports work: training is biohash.train_job,
evaluation biohash.eval_run, quantization biohash.quantize_job, the demo biohash.demo."""
from __future__ import annotations

from biohash.demo import DEMO_INIT, run_demo
from biohash.eval_run import evaluate_run
from biohash.quantize_job import quantize_run
from biohash.restore import load_model
from biohash.train_job import train

__all__ = ["DEMO_INIT", "evaluate_run", "load_model", "quantize_run", "run_demo", "train"]
