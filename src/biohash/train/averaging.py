"""WeightAverage: an exponential moving average of a model's weights, what validation and best.pt read when
FitConfig.ema is on: the usual one-model stand-in for an ensemble of the recent weights. On PolyU and Tongji it
did not help (README ablation), where averaging two runs' scores did."""
from __future__ import annotations

import copy

import torch


class WeightAverage:
    """After every optimiser step: average <- decay * average + (1 - decay) * weights (floating-point parameters
    and buffers; integer buffers such as BatchNorm's batch count are copied). The first update copies."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay, self.started = decay, False
        self.module = copy.deepcopy(model)  # keeps shared submodules shared, so tensors pair up one to one

    @staticmethod
    def _tensors(model: torch.nn.Module) -> list[torch.Tensor]:
        return [*model.parameters(), *model.buffers()]  # each shared tensor once

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for mine, theirs in zip(self._tensors(self.module), self._tensors(model), strict=True):
            if self.started and mine.is_floating_point():
                mine.lerp_(theirs.detach(), 1.0 - self.decay)
            else:
                mine.copy_(theirs.detach())
        self.started = True

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "started": self.started}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.started = bool(state["started"])
