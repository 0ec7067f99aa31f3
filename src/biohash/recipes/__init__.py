"""One module per method: a config dataclass, build(), and the loss step."""
