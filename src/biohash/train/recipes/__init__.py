"""One module per method: a settings dataclass, build(), the loss step and its registered Recipe (see base).
Importing the package registers the built-in recipes (biohash.train.recipes.builtin); none of them needs torch
until a model is built."""
from biohash.train.recipes import builtin  # noqa: F401  (each built-in recipe registers itself)
