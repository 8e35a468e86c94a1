"""What a training config builds: its encoded datasets, its model, and their evaluation.

Shared by training (``train.py``) and export (``export.py``); neither imports the other's
internals (export is a lower step that training may call at its end).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import data as data_mod
from ..firmware_export.encoding import Encoder, complete_encoding, max_events_per_step
from .model import BSNN, LayerConfig

__all__ = ["EncodedDataset", "encoding_spec", "build_data", "build_model", "evaluate",
           "run_eval_dataset"]


# ------------------------------------------------------------------ data
class EncodedDataset:
    """A dataset plus its encoder; ``batch(idx)`` gives ``(on, off, labels)``."""

    def __init__(self, ds, encoder: Encoder, augment_shift: int = 0, augment_flip: bool = False):
        self.ds, self.encoder, self.augment_shift = ds, encoder, int(augment_shift or 0)
        self.augment_flip = bool(augment_flip)
        if self.augment_flip and encoder.kind == "events":
            raise ValueError("data.augment_flip: only for image datasets (event streams keep their geometry)")
        self.labels = torch.as_tensor(ds.labels)
        self._cache = None
        if encoder.kind == "events":  # bin all samples once (int16 keeps memory small)
            on, off = encoder(ds.events)
            self._cache = (on.to(torch.int16), off.to(torch.int16))

    def __len__(self):
        return len(self.labels)

    def batch(self, idx, generator=None):
        idx = torch.as_tensor(idx)
        if self._cache is not None:
            on, off = self._cache[0][:, idx].long(), self._cache[1][:, idx].long()
            if self.augment_shift:
                on, o = data_mod.random_shift_counts(on, self.augment_shift, generator)
                off, _ = data_mod.random_shift_counts(off, self.augment_shift, offsets=o)
        else:
            images = self.ds.images[idx.numpy()]
            if self.augment_shift:
                images = data_mod.random_shift(images, self.augment_shift, generator)
            if self.augment_flip:
                images = data_mod.random_hflip(images, generator)
            on, off = self.encoder(images, generator=generator)
            if self.encoder.kind != "events":
                off = None
        return on, off, self.labels[idx]

    def max_events(self) -> int:
        if self._cache is not None:
            return max_events_per_step(self._cache[0].long(), self._cache[1].long())
        return self.encoder.max_input_events(self.ds.input_size)


def encoding_spec(cfg: dict) -> dict:
    """The complete input encoding of a config's ``[encoding]`` section (``time_steps`` aside:
    that is the model's ``T``), as the exported bundle records it."""
    return complete_encoding({k: v for k, v in cfg["encoding"].items() if k != "time_steps"})


def build_data(cfg: dict):
    d = cfg["data"]
    enc = Encoder(encoding_spec(cfg), cfg["encoding"]["time_steps"])
    train = data_mod.load_dataset(d["dataset"], "train", d.get("root")).subset(d.get("train_limit"))
    test = data_mod.load_dataset(d["dataset"], "test", d.get("root")).subset(d.get("test_limit"))
    return (EncodedDataset(train, enc, d.get("augment_shift", 0), d.get("augment_flip", False)),
            EncodedDataset(test, enc))


def build_model(cfg: dict, input_size: int, max_input_events: int) -> BSNN:
    m = cfg["model"]
    hidden = [LayerConfig(size=n, current=m["current"], leak_v=m["leak_v"], leak_c=m["leak_c"],
                          reset=m["reset"], fire_once=m["fire_once"]) for n in m["hidden"]]
    if m["readout"] == "potential":  # non-leaky, non-firing integrator
        out = LayerConfig(size=m["num_classes"], current=False, leak_v=0, reset="none",
                          learn_threshold=False)
    else:
        out = LayerConfig(size=m["num_classes"], current=m["current"], leak_v=m["leak_v"],
                          leak_c=m["leak_c"], reset=m["reset"], fire_once=m["fire_once"])
    return BSNN(input_size, hidden + [out], cfg["encoding"]["time_steps"], v_width=m["v_width"],
                c_width=m["c_width"], bias_width=m["bias_width"], readout=m["readout"],
                max_input_events=m["max_input_events"] or max_input_events, agmm=cfg["agmm"],
                surrogate_width=m["surrogate_width"], weight_init=m["weight_init"],
                logit_scale=m["logit_scale"])


# ------------------------------------------------------------------ evaluation
@torch.no_grad()
def evaluate(model: BSNN, data: EncodedDataset, batch_size: int = 1000, device="cpu", hardware=False):
    """Accuracy, mean loss and firing rate per layer (spikes / neuron / step) of ``model``."""
    model.eval()
    correct, loss_sum, n = 0, 0.0, 0
    spk = [0.0] * len(model.layer_cfgs)
    for start in range(0, len(data), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(data)))
        on, off, y = data.batch(idx)
        on = on.to(device)
        off = off.to(device) if off is not None else None
        res = model(on, off, hardware=hardware)
        pred = res.prediction.cpu()
        correct += int((pred == y).sum())
        if res.logits is not None:
            loss_sum += float(F.cross_entropy(res.logits.cpu(), y, reduction="sum"))
        for k, s in enumerate(res.spikes):
            spk[k] += float(s.float().sum())
        n += len(y)
    T = model.time_steps
    rates = [s / (n * T * size) for s, size in zip(spk, model.sizes[1:])]
    model.train()
    return {"acc": correct / max(1, n), "loss": loss_sum / max(1, n), "firing_rate_layers": rates,
            "spikes_per_neuron_hidden": (sum(spk[:-1]) / n / max(1, sum(model.sizes[1:-1])))
            if len(spk) > 1 else spk[0] / n / model.sizes[-1]}


def run_eval_dataset(bundle, data: EncodedDataset, batch_size: int = 500, limit: int | None = None):
    """Hardware-exact accuracy of a bundle: ``bsnn.firmware_export.golden.run_golden`` over a dataset."""
    from bsnn.firmware_export.golden import run_golden

    n = len(data) if limit is None else min(limit, len(data))
    correct, spikes_hidden, sops = 0, 0.0, 0.0
    hidden = sum(l.size for l in bundle.layers[:-1]) or bundle.layers[-1].size
    for start in range(0, n, batch_size):
        idx = torch.arange(start, min(start + batch_size, n))
        on, off, y = data.batch(idx)
        res = run_golden(bundle, on, off)
        correct += int((torch.as_tensor(res.prediction).cpu() == y).sum())
        layers = res.spikes[:-1] if len(res.spikes) > 1 else res.spikes
        spikes_hidden += float(sum(torch.as_tensor(s).sum() for s in layers))
        sops += float(torch.as_tensor(res.sops).sum())
    return {"acc": correct / max(1, n), "n": n, "spikes_per_neuron": spikes_hidden / n / hidden,
            "sops_per_inference": sops / n}
