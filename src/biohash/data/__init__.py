"""Dataset adapters, synthetic generator, ROI extraction and protocols.

Importing the package registers every adapter: datasets.py defines Dataset and the registry, databases.py
(imported here, not by datasets.py, so the two modules do not import each other) registers the adapters.
"""
from biohash.data import databases  # noqa: F401
