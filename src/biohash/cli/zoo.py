"""Pretraining and model-zoo commands of the CLI: pretrain, publish, zoo (registered on biohash.cli.app.app)."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer

from biohash.cli.app import _drop_none, _friendly, app


@app.command()
@_friendly
def pretrain(
    backbone: str = typer.Option("compnet_lite", "--backbone", "--model", help="registered backbone"),
    bits: int = typer.Option(128, help="code length of the pretraining hash layer"),
    identities: int = typer.Option(10000, help="synthetic identities (96 % train, 2 % validate, 2 % test)"),
    epochs: int = typer.Option(10, "--epochs", "--epoch"),
    batch_size: int = typer.Option(64, "--batch-size", "-b", help="a multiple of 4 (4 captures per identity)"),
    lr: float = typer.Option(2e-3),
    loss: str | None = typer.Option(None, help="csq (default) or arcface"),
    lambda_supcon: float | None = typer.Option(None, help="supervised contrastive weight"),
    seed: int = typer.Option(0, help="seeds the model and the draws (the synthetic universe is fixed)"),
    name: str = typer.Option("pretrain", "--name", help="run name (folder under --runs)"),
    runs: Path = typer.Option(Path("runs")),
    resume: bool = typer.Option(False, help="continue an interrupted pretraining run"),
    threads: int | None = typer.Option(None, help="torch CPU threads"),
    workers: int = typer.Option(1, help="processes rendering synthetic captures beside training"),
    publish: str | None = typer.Option(None, help="when done, ship the result into the zoo under this name"),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps"),
    amp: str = typer.Option("off", help="mixed precision: off, bf16 or fp16 (GPU)"),
) -> None:
    """Pretrain co-hashing (print + vein) on many synthetic identities, fresh captures every epoch; resumable.
    Run it in the background (nohup ... &) and rerun with --resume after a stop."""
    from biohash.train.devices import processes
    from biohash.train.eval_run import evaluate_run
    from biohash.train.fit import FitConfig
    from biohash.train.pretrain import pretrain as run_pretraining
    from biohash.train.pretrain import pretrain_data
    from biohash.train.pretrain import publish as publish_run
    from biohash.train.recipes.cohash import CohashConfig
    from biohash.train.report import markdown_table

    data = pretrain_data(identities)
    method = CohashConfig(**_drop_none(backbone=backbone, bits=bits, loss=loss, lambda_supcon=lambda_supcon))
    fit_cfg = FitConfig(epochs=epochs, batch_size=batch_size, lr=lr, val_every=1, seed=seed, device=device, amp=amp)
    run_dir = runs / name
    run_pretraining(run_dir, data, method, fit_cfg, resume=resume, threads=threads, workers=workers)
    if not processes().main:  # under torchrun, rank 0 evaluates and publishes
        return
    typer.echo(markdown_table(evaluate_run(run_dir, device=device)))
    if publish:
        argv = [a for a in sys.argv[1:] if a != "--resume"]
        path = publish_run(run_dir, publish, "biohash " + shlex.join(argv))
        typer.echo(f"published {path} ({path.stat().st_size / 1e6:.1f} MB)")


@app.command()
@_friendly
def publish(run: Path = typer.Argument(..., metavar="RUN", help="a finished co-hashing run folder"),
            name: str = typer.Argument(..., metavar="NAME", help="zoo name (then --init zoo:NAME)"),
            into: Path | None = typer.Option(None, help="zoo folder (default: the package's own, shipped with it)")
            ) -> None:
    """Ship a trained co-hashing run into the model zoo: float16 weights without centroids, and a model card
    with the command that trained it (from the run's environment.json), its config and validation figures."""
    import json

    from biohash.train.pretrain import publish as publish_run

    env = run / "environment.json"
    argv = json.loads(env.read_text()).get("argv", []) if env.is_file() else []
    path = publish_run(run, name, _command(argv), zoo_dir=into)
    typer.echo(f"published {path} ({path.stat().st_size / 1e6:.1f} MB); the card is {path.with_suffix('.json')}")


def _command(argv: list[str]) -> str:
    """The command line that trained a run, from its recorded argv: a biohash command, or the script a
    benchmark ran (`python real_palm.py ...`); --resume is left out (it only continued the same run)."""
    if not argv:
        return "(not recorded)"
    args = shlex.join(a for a in argv[1:] if a != "--resume")
    program = Path(argv[0])
    if program.name == "biohash" or (program.name == "__main__.py" and program.parent.name in ("biohash", "cli")):
        return f"biohash {args}"
    return f"python {program.name} {args}"


@app.command()
@_friendly
def zoo() -> None:
    """List the shipped pretrained models (use one with --init zoo:NAME)."""
    from biohash.train import zoo as shipped

    names = shipped.names()
    if not names:
        typer.echo("the zoo is empty")
    for n in names:
        card = shipped.card(n)
        val = card.get("validation", {})
        figures = ", ".join(f"{k[8:]} {100 * v:.2f} %" for k, v in val.items() if k.startswith("val_eer_"))
        data = card["data"]
        trained = (f"{data['identities']} synthetic identities" if data["dataset"] == "synthetic" else
                   "real palms: " + " + ".join([data["dataset"]] + [p["dataset"] for p in data.get("also", [])]))
        typer.echo(f"zoo:{n}  {card['model']['backbone']}, {card['model']['bits']} bits, {trained}; "
                   f"validation EER: {figures}")
