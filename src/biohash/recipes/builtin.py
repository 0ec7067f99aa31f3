"""The recipes biohash ships; importing this module registers them (the biohash.recipes package imports it)."""
import biohash.recipes.cohash
import biohash.recipes.dhn
import biohash.recipes.distill
import biohash.recipes.gpa
import biohash.recipes.quantize  # noqa: F401  (each registers itself)
