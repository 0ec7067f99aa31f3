"""Palm competition backbones: learnable Gabor banks + a competition over orientations (CompNet, CCNet).

Palm lines are oriented, and the classic matchers (CompCode, CompNet) code each place by which orientation
answers best. Here that is learnt end to end: a bank of Gabor filters with learnable orientation, scale,
wavelength, aspect and phase, followed by a softmax across the orientation channels (a soft "winner takes
all"), at several scales in parallel; optionally a second-order competition on the first bank's responses
(CCNet). A few plain convolutions then reduce the competition maps. At export the Gabor kernels are computed
once and become ordinary convolution weights (`bake_gabor`).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from biohash.errors import ConfigError


class GaborBank(nn.Module):
    """`n` learnable Gabor filters of one kernel size, orientations initialised to j * pi / n.

    Kernel as OpenCV's getGaborKernel (same coordinates, so cv2.filter2D and this conv agree):
    g(x, y) = exp(-(x'^2 + gamma^2 y'^2) / (2 sigma^2)) cos(2 pi x' / wavelength + psi), with
    x' = x cos(theta) + y sin(theta), y' = -x sin(theta) + y cos(theta). With zero_dc, each kernel has its
    mean removed (brightness does not answer). One kernel is applied to the sum over input channels.

    Args:
        in_chans: input channels.
        n: number of filters (orientations).
        kernel_size: odd side of every kernel.
        sigma, wavelength, gamma, psi: initial values, shared by all filters.
        stride: convolution stride.
        zero_dc: subtract each kernel's mean.
    """

    def __init__(self, in_chans: int = 1, n: int = 6, kernel_size: int = 35, sigma: float = 5.6,
                 wavelength: float = 10.9, *, gamma: float = 1.0, psi: float = 0.0, stride: int = 1,
                 zero_dc: bool = True) -> None:
        super().__init__()
        if kernel_size % 2 == 0 or kernel_size < 3:
            raise ConfigError(f"kernel_size must be odd and >= 3, got {kernel_size}")
        if n < 2:
            raise ConfigError(f"a competition needs at least two orientations, got {n}")
        self.in_chans, self.n, self.kernel_size, self.stride, self.zero_dc = in_chans, n, kernel_size, stride, zero_dc
        self.theta = nn.Parameter(torch.arange(n, dtype=torch.float32) * math.pi / n)
        self.sigma = nn.Parameter(torch.full((n,), float(sigma)))
        self.wavelength = nn.Parameter(torch.full((n,), float(wavelength)))
        self.gamma = nn.Parameter(torch.full((n,), float(gamma)))
        self.psi = nn.Parameter(torch.full((n,), float(psi)))
        half = kernel_size // 2
        # row i holds y = half - i and column j holds x = half - j, as in cv2.getGaborKernel
        coords = torch.arange(half, -half - 1, -1, dtype=torch.float32)
        self.register_buffer("ys", coords[:, None].expand(kernel_size, kernel_size).clone(), persistent=False)
        self.register_buffer("xs", coords[None, :].expand(kernel_size, kernel_size).clone(), persistent=False)

    def kernels(self) -> torch.Tensor:
        """The current filters, (n, in_chans, k, k)."""
        c, s = torch.cos(self.theta)[:, None, None], torch.sin(self.theta)[:, None, None]
        xr = self.xs * c + self.ys * s
        yr = -self.xs * s + self.ys * c
        sigma = self.sigma.abs().clamp_min(0.5)[:, None, None]
        wavelength = self.wavelength.abs().clamp_min(2.0)[:, None, None]
        envelope = torch.exp(-(xr**2 + (self.gamma[:, None, None] * yr) ** 2) / (2 * sigma**2))
        g = envelope * torch.cos(2 * math.pi * xr / wavelength + self.psi[:, None, None])
        if self.zero_dc:
            g = g - g.mean(dim=(1, 2), keepdim=True)
        return (g / self.in_chans)[:, None].expand(-1, self.in_chans, -1, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.kernels(), stride=self.stride, padding=self.kernel_size // 2)

    def as_conv(self) -> nn.Conv2d:
        """A plain Conv2d with the current kernels baked in (for export)."""
        conv = nn.Conv2d(self.in_chans, self.n, self.kernel_size, self.stride, self.kernel_size // 2, bias=False)
        with torch.no_grad():
            conv.weight.copy_(self.kernels())
        return conv


class Competition(nn.Module):
    """Softmax across the orientation (channel) axis with a learnable sharpness: at each place the
    orientations compete and the answers sum to 1 (a soft CompCode winner)."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x * self.scale, dim=1)


class CompetitionStem(nn.Module):
    """CompCode's prior as a stem for a plain CNN: average-pool by 2, a learnable Gabor bank with a soft
    competition across its orientations, and the pooled image itself as one more channel (nothing the bank
    misses is lost). (B, 1, H, W) -> (B, n + 1, H/2, W/2)."""

    def __init__(self, n: int = 12, kernel_size: int = 17, sigma: float = 2.8, wavelength: float = 5.45,
                 *, in_chans: int = 1) -> None:
        super().__init__()
        if in_chans != 1:
            raise ConfigError(f"a competition stem reads grey images (in_chans=1), got in_chans={in_chans}")
        self.pool = nn.AvgPool2d(2)
        self.gabor = GaborBank(1, n, kernel_size, sigma, wavelength)
        self.compete = Competition(1.0)
        self.out_chans = n + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(x)
        return torch.cat([self.compete(self.gabor(x)), x], dim=1)


def _conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class CompetitionBlock(nn.Module):
    """One scale: Gabor bank (stride 2, or 1 on a pre-shrunk image) -> competition [-> second-order bank on the
    responses -> competition] -> conv-BN-ReLU -> max-pool 2. (B, 1, H, W) -> (B, width, H/4, W/4) at stride 2."""

    def __init__(self, n: int, kernel_size: int, sigma: float, wavelength: float, width: int,
                 *, second_order: bool = False, stride: int = 2) -> None:
        super().__init__()
        self.gabor = GaborBank(1, n, kernel_size, sigma, wavelength, stride=stride)
        self.compete = Competition(1.0)
        self.gabor2 = (GaborBank(n, n, kernel_size // 2 | 1, sigma / 2, wavelength / 2) if second_order
                       else None)
        self.compete2 = Competition(1.0) if second_order else None
        self.mix = nn.Sequential(_conv_bn(2 * n if second_order else n, width), nn.MaxPool2d(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.gabor(x)
        parts = [self.compete(r)]
        if self.gabor2 is not None:
            parts.append(self.compete2(self.gabor2(r)))
        return self.mix(torch.cat(parts, dim=1) if len(parts) > 1 else parts[0])


class PalmCompNet(nn.Module):
    """Competition blocks at several scales in parallel on the grey ROI, concatenated, then two strided
    conv-BN-ReLU layers: (B, 1, 128, 128) -> (B, num_features, 8, 8).

    Args:
        scales: (kernel_size, sigma, wavelength) per block; CompCode's filter is (35, 5.6, 10.9) at 128 px.
        n: orientations per bank.
        width: channels out of each block.
        second_order: add CCNet's second-order competition in each block.
        features: channels of the output map.
        shrink: average-pool the input by 2 first and run the banks at stride 1 with the scales halved (the
            same output at a quarter of the cost; the CPU variant).
    """

    def __init__(self, scales: tuple[tuple[int, float, float], ...], n: int = 9, width: int = 32,
                 second_order: bool = True, features: int = 128, *, in_chans: int = 1, shrink: bool = False) -> None:
        super().__init__()
        if in_chans != 1:
            raise ConfigError(f"competition backbones read grey images (in_chans=1), got in_chans={in_chans}")
        if shrink:
            scales = tuple((k // 2 | 1, s / 2, w / 2) for k, s, w in scales)
        self.shrink = nn.AvgPool2d(2) if shrink else nn.Identity()
        self.blocks = nn.ModuleList([CompetitionBlock(n, k, s, w, width, second_order=second_order, stride=1 if shrink else 2)
                                     for k, s, w in scales])
        self.reduce = nn.Sequential(_conv_bn(width * len(scales), features // 2, 3, 2),
                                    _conv_bn(features // 2, features, 3, 2))
        self.num_features = features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.shrink(x)
        return self.reduce(torch.cat([block(x) for block in self.blocks], dim=1))


def bake_gabor(model: nn.Module) -> nn.Module:
    """Replace every GaborBank in `model` by a plain Conv2d holding its current kernels (in place; returns
    the model). Outputs are unchanged; ONNX then sees ordinary convolutions."""
    for name, child in list(model.named_children()):
        if isinstance(child, GaborBank):
            setattr(model, name, child.as_conv())
        else:
            bake_gabor(child)
    return model
