"""Memory images and config-port writes of a bundle for a given build geometry."""
from __future__ import annotations

import numpy as np

from .config import CoreGeometry, check_fits
from .layouts import ConfigTarget, GlobalAddress, LayerModeLayout, ReadoutRule, ResetMode

__all__ = ["weight_words", "bias_image", "threshold_image", "layer_mode_word", "layer_mode_words",
           "global_words", "config_writes_for"]


def weight_words(bundle, geom: CoreGeometry) -> list[int]:
    """Weight memory image: layer l, row i, chunk k at ``base_l + i * chunks_l + k``; bit m of
    that word is the weight to neuron ``k * P + m`` (1 = +1); unused high bits 0. A dense
    layer's rows are its sources; a conv2d layer's are ``i = (c * K_h + ky) * K_w + kx`` and bit
    m of chunk k is ``w[k * P + m][c][ky][kx]`` (output channel); a pool2d layer has none."""
    P = geom.lanes
    words = []
    for l, w in enumerate(bundle.weights):
        kind = geom.kinds[l]
        if kind == "pool2d":
            continue
        w = np.asarray(w, dtype=np.uint8)
        if kind == "conv2d":      # [C_out, C_in, K_h, K_w] -> rows (c, ky, kx) of C_out bits
            w = w.transpose(1, 2, 3, 0).reshape(-1, w.shape[0])
        n_in, n_out = w.shape
        chunks = geom.chunks[l]
        padded = np.zeros((n_in, chunks * P), dtype=np.uint8)
        padded[:, :n_out] = w
        blocks = padded.reshape(n_in, chunks, P).astype(object)
        weights_of_bit = np.array([1 << m for m in range(P)], dtype=object)
        words.extend(int(x) for x in (blocks * weights_of_bit).sum(axis=2).reshape(-1))
    assert len(words) == geom.weight_depth
    return words


def bias_image(bundle) -> list[int]:
    """Bias of every neuron (of every channel of a conv2d layer; a pool2d layer has none),
    layers concatenated (layer 1 first), as signed Python ints."""
    return [int(x) for b in bundle.bias for x in np.asarray(b).reshape(-1)]


def threshold_image(bundle) -> list[int]:
    return [int(x) for t in bundle.threshold for x in np.asarray(t).reshape(-1)]


def layer_mode_word(layer) -> int:
    """LAYER_MODE data of a layer (a :class:`~bsnn.firmware_export.bundle.LayerSpec`), packed
    by :class:`LayerModeLayout`."""
    return LayerModeLayout().const({
        "current": int(bool(layer.current)), "fire_once": int(bool(layer.fire_once)),
        "reset": ResetMode.NAMES[layer.reset], "leak_v": int(layer.leak_v),
        "leak_c": int(layer.leak_c)}).as_bits()


def layer_mode_words(bundle) -> list[int]:
    return [layer_mode_word(layer) for layer in bundle.layers]


def global_words(bundle, trace: bool = True) -> dict[int, int]:
    """GLOBAL registers: address -> value."""
    return {GlobalAddress.TIME_STEPS: int(bundle.time_steps),
            GlobalAddress.READOUT: ReadoutRule.NAMES[bundle.readout],
            GlobalAddress.MAX_INPUT_EVENTS: int(bundle.max_input_events),
            GlobalAddress.TRACE: int(bool(trace))}


def _twos(x: int, width: int) -> int:
    return x & ((1 << width) - 1)


def config_writes_for(bundle, geom: CoreGeometry, trace: bool = True) -> list[tuple[int, int, int]]:
    """Config-port writes ``(target, address, data)`` that load ``bundle`` into a build of
    geometry ``geom`` (checked with :func:`bsnn.hdl.config.check_fits`). Data words are unsigned
    (two's complement for the bias, sign-extended to the build's bias width)."""
    check_fits(bundle, geom)
    writes = []
    for addr, word in enumerate(weight_words(bundle, geom)):
        writes.append((ConfigTarget.WEIGHTS, addr, word))
    for addr, b in enumerate(bias_image(bundle)):
        writes.append((ConfigTarget.BIAS, addr, _twos(b, geom.bias_width)))
    for addr, t in enumerate(threshold_image(bundle)):
        writes.append((ConfigTarget.THRESHOLD, addr, t))
    for addr, word in enumerate(layer_mode_words(bundle)):
        writes.append((ConfigTarget.LAYER_MODE, addr, word))
    for addr, word in global_words(bundle, trace).items():
        writes.append((ConfigTarget.GLOBAL, addr, word))
    return writes
