"""The model zoo: small pretrained checkpoints shipped inside the package, so `--init zoo:NAME` works offline.

Each model is NAME.pt (the weights, float16) beside NAME.json (the command that reproduced it, its config and
its validation figures). README.md in this folder lists them.
"""
from __future__ import annotations

import json
from pathlib import Path

from biohash.errors import BiohashError

ZOO = Path(__file__).resolve().parent
PREFIX = "zoo:"


def names() -> list[str]:
    """Shipped model names, sorted."""
    return sorted(p.stem for p in ZOO.glob("*.pt"))


def resolve(source: str | Path) -> Path:
    """A checkpoint path for `source`: "zoo:NAME" becomes the shipped file; anything else is returned as a path."""
    text = str(source)
    if not text.startswith(PREFIX):
        return Path(text)
    name = text[len(PREFIX):]
    path = ZOO / f"{name}.pt"
    if not path.is_file():
        raise BiohashError(f"no shipped model {name!r}; the zoo holds: {', '.join(names()) or 'nothing'}")
    return path


def card(name: str) -> dict:
    """The model card (command, config, validation figures) of a shipped model."""
    path = ZOO / f"{name}.json"
    if not path.is_file():
        raise BiohashError(f"no model card for {name!r}; the zoo holds: {', '.join(names()) or 'nothing'}")
    return json.loads(path.read_text())
