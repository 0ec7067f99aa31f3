"""biohash: compact, fast biometric hashing for palm print, palm vein, whole-hand and periocular images.

The top-level namespace re-exports the numpy stack only, so `import biohash` never pulls in torch.
"""
from biohash.codes import binarize, from_real, hamming, pack, similarity, unpack
from biohash.types import Codes, Sample, Scores, Template

__version__ = "0.1.0"

__all__ = ["Codes", "Sample", "Scores", "Template", "__version__", "binarize", "from_real", "hamming", "pack", "similarity",
           "unpack"]
