"""What a training config builds: its encoded datasets, its model, and their evaluation.

Shared by training (``train.py``) and export (``export.py``); neither imports the other's
internals (export is a lower step that training may call at its end).
"""
from __future__ import annotations

import re

import torch
import torch.nn.functional as F

from . import data as data_mod
from ..firmware_export.encoding import Encoder, complete_encoding, max_events_per_step
from ..firmware_export.errors import ConfigError
from ..firmware_export.spatial import output_shape
from .model import BSNN, LayerConfig

__all__ = ["EncodedDataset", "encoding_spec", "build_data", "build_model", "evaluate",
           "run_eval_dataset", "with_later_keys"]

# Model keys that configs gained after checkpoints had been written, with the value that gives
# an older checkpoint its original network (a config that lacks them predates them).
LATER_MODEL_KEYS = {"features": [], "input_polarity": "xnor"}


def with_later_keys(cfg: dict) -> dict:
    """``cfg`` (a checkpoint's config) with :data:`LATER_MODEL_KEYS` filled in where absent."""
    return {**cfg, "model": {**LATER_MODEL_KEYS, **cfg.get("model", {})}}


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


FEATURE_PATTERN = re.compile(r"^(?:(?P<channels>\d+)c|(?P<pool>pool))(?P<kernel>\d+)"
                             r"(?:s(?P<stride>\d+))?(?:p(?P<padding>\d+))?$")
FEATURE_SYNTAX = ("'<C>c<K>[s<S>][p<P>]' (conv2d: C kernels of K x K, stride S, zero padding P) or "
                  "'pool<K>[s<S>][p<P>]' (OR pooling, stride K unless given)")


def input_shape_of(cfg: dict, input_size: int) -> tuple:
    """The ``(C, H, W)`` map a conv2d layer 1 reads (docs/semantics.md 10.2): the sensor's
    ``height x width`` for event streams, a square image otherwise; two channels with
    ``input_polarity = "channels"``."""
    spec = encoding_spec(cfg)
    if spec["kind"] == "events":
        h, w = int(spec["height"]), int(spec["width"])
    else:
        h = w = int(round(input_size ** 0.5))
    if h * w != input_size:
        raise ConfigError(f"model.features: {input_size} inputs are not a square image; "
                          f"convolution needs an image or an event sensor")
    return (2 if cfg["model"]["input_polarity"] == "channels" else 1, h, w)


def feature_layers(cfg: dict, input_size: int, neuron: dict) -> tuple:
    """``model.features`` (e.g. ``["32c5", "pool2", "64c5", "pool2"]``) as layer configs, with
    the input shape: one-line :class:`ConfigError` for a spec that does not parse or a window
    that does not fit the map it reads (semantics 10.1)."""
    features = cfg["model"]["features"]
    if not features:
        return [], None
    shape = input_shape_of(cfg, input_size)
    in_shape, layers = shape, []
    for i, text in enumerate(features):
        m = FEATURE_PATTERN.match(str(text).strip().lower())
        if m is None:
            raise ConfigError(f"model.features[{i}]: {text!r} is not {FEATURE_SYNTAX}")
        k = int(m["kernel"])
        stride = int(m["stride"]) if m["stride"] else (k if m["pool"] else 1)
        padding = int(m["padding"] or 0)
        if not (1 <= k and 1 <= stride <= k and 0 <= padding < k):
            raise ConfigError(f"model.features[{i}]: {text!r}: need kernel >= 1, 1 <= stride <= kernel, "
                              f"0 <= padding < kernel")
        if m["pool"] and not layers:
            raise ConfigError(f"model.features[{i}]: {text!r}: pooling reads spikes; the first "
                              f"feature layer must be a convolution")
        if k > min(in_shape[1:]) + 2 * padding:
            raise ConfigError(f"model.features[{i}]: {text!r}: a {k}x{k} window does not fit the "
                              f"{in_shape[1]}x{in_shape[2]} map it reads (padding {padding})")
        window = dict(kernel=(k, k), stride=(stride, stride), padding=(padding, padding))
        if m["pool"]:
            layer = LayerConfig(size=0, kind="pool2d", **window)
        else:
            layer = LayerConfig(size=0, kind="conv2d", channels=int(m["channels"]), **window, **neuron)
        in_shape = output_shape(layer, in_shape)
        layer.size = int(in_shape[0] * in_shape[1] * in_shape[2])
        layers.append(layer)
    return layers, shape


def build_model(cfg: dict, input_size: int, max_input_events: int) -> BSNN:
    m = cfg["model"]
    neuron = dict(current=m["current"], leak_v=m["leak_v"], leak_c=m["leak_c"], reset=m["reset"],
                  fire_once=m["fire_once"])
    features, input_shape = feature_layers(cfg, input_size, neuron)
    hidden = [LayerConfig(size=n, **neuron) for n in m["hidden"]]
    if m["readout"] == "potential":  # non-leaky, non-firing integrator
        out = LayerConfig(size=m["num_classes"], current=False, leak_v=0, reset="none",
                          learn_threshold=False)
    else:
        out = LayerConfig(size=m["num_classes"], **neuron)
    return BSNN(input_size, features + hidden + [out], cfg["encoding"]["time_steps"], v_width=m["v_width"],
                c_width=m["c_width"], bias_width=m["bias_width"], readout=m["readout"],
                max_input_events=m["max_input_events"] or max_input_events, agmm=cfg["agmm"],
                surrogate_width=m["surrogate_width"], weight_init=m["weight_init"],
                logit_scale=m["logit_scale"], input_shape=input_shape,
                input_polarity=m["input_polarity"])


# ------------------------------------------------------------------ evaluation
@torch.no_grad()
def evaluate(model: BSNN, data: EncodedDataset, batch_size: int = 1000, device="cpu", hardware=False):
    """Accuracy, mean loss and firing rate per layer (spikes / neuron / step) of ``model``; at most
    ``batch_size`` samples a batch, fewer for a network whose maps would not fit memory."""
    from bsnn.firmware_export.golden import batch_for_memory

    batch_size = batch_for_memory(model.time_steps, sum(model.sizes), batch_size)
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
    # semantics 10.6: the hidden neuron layers (pool2d has none); the output layer if none
    hidden = [k for k in model.neuron_layers if k < len(spk) - 1] or [len(spk) - 1]
    return {"acc": correct / max(1, n), "loss": loss_sum / max(1, n), "firing_rate_layers": rates,
            "spikes_per_neuron_hidden": sum(spk[k] for k in hidden) / n / sum(model.sizes[k + 1] for k in hidden)}


def run_eval_dataset(bundle, data: EncodedDataset, batch_size: int = 500, limit: int | None = None):
    """Hardware-exact accuracy of a bundle: ``bsnn.firmware_export.golden.run_golden`` over a dataset
    (at most ``batch_size`` samples a batch, fewer for a network whose maps would not fit memory)."""
    from bsnn.firmware_export.golden import golden_batches

    n = len(data) if limit is None else min(limit, len(data))
    correct, spikes_hidden, sops = 0, 0.0, 0.0
    hidden_layers = [k for k, l in enumerate(bundle.layers[:-1]) if l.has_neurons] or [len(bundle.layers) - 1]
    hidden = sum(bundle.layers[k].size for k in hidden_layers)
    for start, stop, res in golden_batches(bundle, n, lambda a, b: data.batch(torch.arange(a, b))[:2],
                                           batch_size):
        y = data.labels[start:stop]
        correct += int((torch.as_tensor(res.prediction).cpu() == y).sum())
        spikes_hidden += float(sum(torch.as_tensor(res.spikes[k]).sum() for k in hidden_layers))
        sops += float(torch.as_tensor(res.sops).sum())
    return {"acc": correct / max(1, n), "n": n, "spikes_per_neuron": spikes_hidden / n / hidden,
            "sops_per_inference": sops / n}
