"""The recipes biohash ships; importing this module registers them (the biohash.train.recipes package imports it)."""
import biohash.train.recipes.cohash
import biohash.train.recipes.dhn
import biohash.train.recipes.distill
import biohash.train.recipes.gpa
import biohash.train.recipes.quantize  # noqa: F401  (each registers itself)
