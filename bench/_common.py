"""Helpers shared by the benchmarks: a results folder and a printed table."""
from __future__ import annotations

import json
import platform
import sys
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).resolve().parent / "results"


def report(name: str, title: str, columns: list[str], rows: list[list], extra: dict | None = None) -> Path:
    """Print a table and write it, with machine facts, to bench/results/NAME.json."""
    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row])
    Console(width=160).print(table)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"title": title, "columns": columns, "rows": rows, "machine": platform.platform(), **(extra or {})}
    path.write_text(json.dumps(payload, indent=2, default=str))
    print(f"wrote {path}")
    return path


def run_main(main: Callable[[], None]) -> None:
    """Run a benchmark's main; Ctrl-C ends it with one line (where its rows are), not a traceback."""
    try:
        main()
    except KeyboardInterrupt:
        print(f"\ninterrupted: the rows reported so far are in {RESULTS}/",
              file=sys.stderr)
        sys.exit(130)


def parse_run_args(description: str, runs_help: str, shifts_default: int | None, shifts_help: str):
    """Arguments of a benchmark that scores trained run folders: RUN..., --test-shifts, --threads (applied here)."""
    import argparse

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("runs", nargs="+", type=Path, help=runs_help)
    ap.add_argument("--test-shifts", type=int, default=shifts_default, help=shifts_help)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    return args


def open_run(run: Path) -> tuple:
    """A trained run's (config, data config, dataset, split), as its evaluation reads them."""
    from biohash.train.data.config import DataConfig, open_split
    from biohash.train.runs import read_config

    config = read_config(run)
    data = DataConfig(**config["data"])
    return (config, data, *open_split(data))
