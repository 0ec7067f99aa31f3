"""One module per method: a settings dataclass, build(), the loss step and its registered Recipe (see base)."""
