"""Pixels in, numpy + OpenCV/PIL, no torch: safe decoding (images), capture quality, the one preprocessing
(transforms) and the classic CompCode matcher. Training's data adapters and the service's encoder both read
images through here, so it sits below both.
"""
