"""Backbones and hashing models (torch)."""
