"""Dataset adapters, synthetic generator, ROI extraction and protocols.

Importing the package registers every adapter: datasets.py defines Dataset and the registry, databases.py
and folders.py (imported here, not by datasets.py, so no module imports its importer) register the adapters.
"""
from biohash.train.data import databases, folders  # noqa: F401
