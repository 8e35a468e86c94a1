"""Per-epoch training diagnostics: sign-flip rates, firing rates, loss, accuracy -> JSON and PNG."""

from __future__ import annotations

import json
from pathlib import Path

import torch

__all__ = ["weight_signs", "flip_rates", "FlipCounter", "write_history", "plot_history"]


def weight_signs(model) -> list[torch.Tensor]:
    """Sign bits (``w >= 0``) of the latent weights of every layer."""
    return [(w.detach() >= 0).clone() for w in model.weights]


def flip_rates(before, after) -> tuple[list[float], float]:
    """Fraction of binary weights whose sign changed, per layer and over all weights."""
    per, flips, total = [], 0, 0
    for a, b in zip(before, after):
        n = int((a != b).sum())
        per.append(n / a.numel() if a.numel() else 0.0)   # pool2d: no weights
        flips += n
        total += a.numel()
    return per, flips / max(1, total)


class FlipCounter:
    """Accumulates per-iteration sign flips (how many weights flip in each optimiser step)."""

    def __init__(self, model):
        self.model = model
        self.prev = weight_signs(model)
        self.flips = [0] * len(self.prev)
        self.steps = 0

    def update(self):
        cur = weight_signs(self.model)
        for k, (a, b) in enumerate(zip(self.prev, cur)):
            self.flips[k] += int((a != b).sum())
        self.prev = cur
        self.steps += 1

    def rates(self) -> tuple[list[float], float]:
        """Mean per-iteration flip rate per layer and overall, then reset."""
        sizes = [p.numel() for p in self.prev]
        s = max(1, self.steps)
        per = [f / (n * s) if n else 0.0 for f, n in zip(self.flips, sizes)]   # pool2d: no weights
        overall = sum(self.flips) / (sum(sizes) * s)
        self.flips = [0] * len(self.prev)
        self.steps = 0
        return per, overall


def write_history(history: list[dict], path: str | Path) -> None:
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(history, indent=1))
    tmp.replace(path)


def plot_history(history: list[dict], path: str | Path, title: str = "") -> None:
    """Loss, accuracy, sign-flip rate per layer and firing rate per layer against epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history:
        return
    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(2, 2, figsize=(11, 7))
    ax[0, 0].plot(ep, [h["loss"] for h in history], "o-")
    ax[0, 0].set_title("training loss")
    ax[0, 1].plot(ep, [100 * h["train_acc"] for h in history], "o-", label="train")
    ax[0, 1].plot(ep, [100 * h["test_acc"] for h in history], "o-", label="test")
    ax[0, 1].set_title("accuracy (%)")
    ax[0, 1].legend()
    nl = len(history[0]["flip_rate_layers"])
    for k in range(nl):
        ax[1, 0].plot(ep, [h["flip_rate_layers"][k] for h in history], "o-", label=f"layer {k + 1}")
    ax[1, 0].plot(ep, [h["flip_rate"] for h in history], "k--", label="all")
    if any(h["flip_rate"] > 0 for h in history):   # (a run without flips has nothing to log-scale)
        ax[1, 0].set_yscale("log")
    ax[1, 0].set_title("weight sign-flip rate per epoch")
    ax[1, 0].legend(fontsize=7)
    for k in range(len(history[0]["firing_rate_layers"])):
        ax[1, 1].plot(ep, [h["firing_rate_layers"][k] for h in history], "o-", label=f"layer {k + 1}")
    ax[1, 1].set_title("firing rate (spikes / neuron / step)")
    ax[1, 1].legend(fontsize=7)
    for a in ax.flat:
        a.set_xlabel("epoch")
        a.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
