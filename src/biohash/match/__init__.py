"""Codes become scores become decisions: numpy only, never torch (what a matching device needs).

types (Sample, Codes, Template, Scores), codes (pack, binarize, the one Hamming kernel), metrics, scores and
modes (genuine/impostor sets, the one fusion), matching + scan + mih (1:N search), protect (cancellable
templates).
"""
