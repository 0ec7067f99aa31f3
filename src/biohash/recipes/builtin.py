"""The recipes biohash ships; importing this module registers them (biohash.recipes.base loads it on first use)."""
from biohash.recipes import cohash, dhn, distill, gpa, quantize  # noqa: F401  (each registers itself)
