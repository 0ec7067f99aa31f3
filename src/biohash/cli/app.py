"""The typer app and the helpers every command module shares (main, train, deploy and zoo import from here, so
none of them imports another)."""
from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path

import typer

from biohash.errors import BiohashError

app = typer.Typer(help="biohash: compact biometric hashing for palm print, palm vein and hand images.",
                  no_args_is_help=True, pretty_exceptions_enable=False)


def _show_version(value: bool) -> None:
    if value:
        from biohash import __version__

        typer.echo(f"biohash {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                       help="print the version and exit")) -> None:
    """biohash: compact biometric hashing for palm print, palm vein and hand images."""


def _friendly(fn: Callable) -> Callable:
    """Turn user errors (the BiohashError family) into one line on stderr and exit code 2 (BIOHASH_DEBUG=1 shows
    the traceback); anything else is a bug in biohash and keeps its traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except BiohashError as err:
            if os.environ.get("BIOHASH_DEBUG"):
                raise
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None

    return wrapper


def _drop_none(**kwargs):
    return {k: v for k, v in kwargs.items() if v is not None}


def _finish(run_dir: Path, device: str = "auto") -> None:
    """What a command that trained a run prints last: the run's test-split table and where the run is."""
    from biohash.train.eval_run import evaluate_run
    from biohash.train.report import markdown_table

    typer.echo(markdown_table(evaluate_run(run_dir, device=device)))
    typer.echo(f"run folder: {run_dir}")


def _options(pairs: list[str] | None) -> dict[str, object]:
    """`--option KEY=VALUE` pairs for a dataset adapter; values parse as YAML scalars (10 -> int, a,b -> str)."""
    import yaml

    out: dict[str, object] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise BiohashError(f"--option expects KEY=VALUE, got {pair!r}")
        parsed = yaml.safe_load(value) if value.strip() else None
        out[key.strip().replace("-", "_")] = parsed
    return out
