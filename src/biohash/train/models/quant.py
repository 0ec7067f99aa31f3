"""Fake quantization for low-bit copies of a trained model (SyPer-style embedding distillation, PTQ baseline).

Every Conv2d and Linear is wrapped: its weights are quantized per output channel, symmetric, at `bits`; its
input activations per tensor, affine (min/max range), at `bits`. Rounding passes gradients straight through
(STE), so the copy trains. Activation ranges follow a running min/max while `observing` and are then frozen.
BatchNorm stays in float (an exporter folds it into the preceding convolution).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from biohash.errors import ConfigError


def _ste_round(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


def quantize_weight(w: torch.Tensor, bits: int) -> torch.Tensor:
    """Symmetric per-output-channel fake quantization: levels -(2^(b-1) - 1) .. 2^(b-1) - 1 times the channel's
    max |w| / (2^(b-1) - 1). The error per weight is at most half a step."""
    qmax = 2 ** (bits - 1) - 1
    scale = w.detach().abs().flatten(1).amax(dim=1).clamp_min(1e-8) / qmax
    scale = scale.view(-1, *([1] * (w.ndim - 1)))
    return _ste_round(w / scale) * scale  # |w| / scale <= qmax by construction: no clipping, full gradient


def quantize_activation(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, bits: int) -> torch.Tensor:
    """Affine fake quantization of x to 2^bits levels spanning [lo, hi] (the range always holds 0, so zero is
    exact); values outside are clipped."""
    lo, hi = torch.minimum(lo, torch.zeros_like(lo)), torch.maximum(hi, torch.zeros_like(hi))
    scale = (hi - lo).clamp_min(1e-8) / (2**bits - 1)
    zero = torch.round(-lo / scale)
    q = torch.clamp(_ste_round(x / scale) + zero, 0, 2**bits - 1)
    return (q - zero) * scale


class QuantLayer(nn.Module):
    """A Conv2d or Linear with fake-quantized weights and input activations."""

    def __init__(self, layer: nn.Conv2d | nn.Linear, bits: int, momentum: float = 0.1) -> None:
        super().__init__()
        self.layer, self.bits, self.momentum = layer, bits, momentum
        self.observing = True
        self.register_buffer("lo", torch.tensor(0.0))
        self.register_buffer("hi", torch.tensor(0.0))
        self.register_buffer("seen", torch.tensor(False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.observing:
            with torch.no_grad():
                lo, hi = x.min(), x.max()
                if not self.seen:
                    self.lo.copy_(lo), self.hi.copy_(hi), self.seen.fill_(True)
                else:
                    self.lo.lerp_(lo, self.momentum), self.hi.lerp_(hi, self.momentum)
        if not self.seen:
            raise RuntimeError("quantized layer has no activation range yet: calibrate it on some images first")
        x = quantize_activation(x, self.lo, self.hi, self.bits)
        w = quantize_weight(self.layer.weight, self.bits)
        if isinstance(self.layer, nn.Conv2d):
            c = self.layer
            return F.conv2d(x, w, c.bias, c.stride, c.padding, c.dilation, c.groups)
        return F.linear(x, w, self.layer.bias)


def quantize_model(model: nn.Module, bits: int) -> nn.Module:
    """A deep copy of `model` with every Conv2d and Linear wrapped in a QuantLayer at `bits` (2..16)."""
    if not 2 <= bits <= 16:
        raise ConfigError(f"bits must be between 2 and 16, got {bits}")
    copy_ = copy.deepcopy(model)

    def wrap(module: nn.Module) -> None:
        for name, child in module.named_children():
            if isinstance(child, (nn.Conv2d, nn.Linear)):
                setattr(module, name, QuantLayer(child, bits))
            elif not isinstance(child, QuantLayer):
                wrap(child)

    wrap(copy_)
    copy_.quant_bits = bits
    return copy_


def set_observing(model: nn.Module, observing: bool) -> None:
    """Let activation ranges follow the data (True) or freeze them (False)."""
    for m in model.modules():
        if isinstance(m, QuantLayer):
            m.observing = observing


def bake(model: nn.Module) -> nn.Module:
    """A float copy of a fake-quantized model with its quantized weights written back into plain layers (for
    ONNX export, where the runtime quantizes again with its own calibration)."""
    out = copy.deepcopy(model)

    def unwrap(module: nn.Module) -> None:
        for name, child in module.named_children():
            if isinstance(child, QuantLayer):
                with torch.no_grad():
                    child.layer.weight.copy_(quantize_weight(child.layer.weight, child.bits))
                setattr(module, name, child.layer)
            else:
                unwrap(child)

    unwrap(out)
    if hasattr(out, "quant_bits"):
        del out.quant_bits
    return out


def quantized_size_bytes(model: nn.Module) -> int:
    """Storage of a model at its quantized width: wrapped weights at `bits` each, everything else float32."""
    total = 0
    quant_weights = set()
    for m in model.modules():
        if isinstance(m, QuantLayer):
            total += (m.layer.weight.numel() * m.bits + 7) // 8 + 4 * m.layer.weight.shape[0]  # codes + scales
            quant_weights.add(id(m.layer.weight))
    for p in model.parameters():
        if id(p) not in quant_weights:
            total += 4 * p.numel()
    return total
