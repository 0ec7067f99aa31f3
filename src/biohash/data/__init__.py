"""Dataset adapters, synthetic generator, ROI extraction and protocols."""
