"""Stochastic weight averaging of the latent weights (``[train] average_from``).

From the end of epoch ``average_from`` on, every optimiser step adds the model's floating-point
state (latent weights, biases, thresholds, logit scale, AGMM gates) to a running uniform mean.
The averaged model is what the epoch is evaluated on, what ``last.pt`` holds as ``model`` and so
what is exported: its binary weights are the signs of the averaged latent weights, and its integer
biases and thresholds the rounding of the averaged ones, like any other checkpoint. The trained
(not averaged) state is kept as ``trained_model`` so that ``--resume`` goes on from it.

Why: the sign of a latent weight near zero flips back and forth from step to step late in
training; the mean over many steps settles it on the side it spends most of its time (SWA,
Izmailov et al. 2018, on the latent weights of a binary network).
"""

from __future__ import annotations

import copy

import torch

__all__ = ["WeightAverage"]


class WeightAverage:
    """Running uniform mean of a model's floating-point state over the steps it is updated."""

    def __init__(self, model: torch.nn.Module):
        self.mean = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.steps = 0

    def update(self, model: torch.nn.Module) -> None:
        """Add the model's current state to the mean (non-float entries are copied as they are)."""
        self.steps += 1
        with torch.no_grad():
            for key, value in model.state_dict().items():
                if value.is_floating_point():
                    self.mean[key].add_(value.detach() - self.mean[key], alpha=1.0 / self.steps)
                else:
                    self.mean[key].copy_(value)

    def averaged(self, model: torch.nn.Module) -> torch.nn.Module:
        """A copy of ``model`` holding the mean (the model itself until the first update)."""
        if self.steps == 0:
            return model
        twin = copy.deepcopy(model)
        twin.load_state_dict(self.mean)
        return twin

    def state_dict(self) -> dict:
        return {"mean": self.mean, "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.mean = {k: v.detach().clone() for k, v in state["mean"].items()}
        self.steps = int(state["steps"])
