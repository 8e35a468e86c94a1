"""A deliberately plain reading of docs/semantics.md: Python ints, loops, one event at a time.

It shares no code with the golden model on purpose; tests run both on random cases and demand
identical results, so a misreading of the semantics has to be made twice to go unnoticed.
Convolution and pooling (section 10) are done from the event's side: each event finds the
outputs whose windows hold it (the golden model computes each output from its window instead).
"""


def _clamp(x, width):
    lo, hi = -(2 ** (width - 1)), 2 ** (width - 1) - 1
    return lo if x < lo else hi if x > hi else x


def _leak(x, shift):
    if shift == 0:
        return 0
    return x // (2 ** shift)   # floor division == arithmetic shift right


def _windows_holding(i, n, kernel, stride, padding):
    """Pairs (output position, kernel offset) of one dimension whose window holds input ``i``:
    output o reads inputs o * stride - padding + k for k in 0 .. kernel-1."""
    n_out = len(range(-padding, n + padding - kernel + 1, stride))
    found = []
    for k in range(kernel):
        start = i + padding - k
        if start % stride == 0 and 0 <= start // stride < n_out:
            found.append((start // stride, k))
    return found, n_out


def _shapes(bundle):
    """Per layer: (input shape or None, output shape or None); shapes are (C, H, W)."""
    shapes = []
    shape = None if bundle.input_shape is None else tuple(bundle.input_shape)
    for layer in bundle.layers:
        if layer.kind == "dense":
            shapes.append((shape, None))
            shape = None
            continue
        c, h, w = shape
        _, h_out = _windows_holding(0, h, layer.kernel[0], layer.stride[0], layer.padding[0])
        _, w_out = _windows_holding(0, w, layer.kernel[1], layer.stride[1], layer.padding[1])
        out = (layer.channels if layer.kind == "conv2d" else c, h_out, w_out)
        assert out[0] * out[1] * out[2] == layer.size
        shapes.append((shape, out))
        shape = out
    return shapes


def _targets(layer, weights, in_shape, out_shape, unit):
    """(neuron, weight bit) pairs that an event at ``unit`` reaches in a dense or conv2d layer,
    or the pooled positions (weight None) it belongs to in a pool2d layer."""
    if layer.kind == "dense":
        return [(j, int(weights[unit][j])) for j in range(layer.size)]
    c, rest = divmod(unit, in_shape[1] * in_shape[2])
    y, x = divmod(rest, in_shape[2])
    rows, _ = _windows_holding(y, in_shape[1], layer.kernel[0], layer.stride[0], layer.padding[0])
    cols, _ = _windows_holding(x, in_shape[2], layer.kernel[1], layer.stride[1], layer.padding[1])
    _, h_out, w_out = out_shape
    if layer.kind == "pool2d":
        return [((c * h_out + oy) * w_out + ox, None) for oy, _ in rows for ox, _ in cols]
    return [((o * h_out + oy) * w_out + ox, int(weights[o][c][ky][kx]))
            for o in range(layer.channels) for oy, ky in rows for ox, kx in cols]


def reference_run(bundle, steps):
    """Run one sample. ``steps``: list of T lists of (index, polarity) events.

    Returns dict with spikes (per layer, per step: list of neuron indices), v, c (final, per
    layer), count, first, prediction, events (per layer), sops (total and per layer).
    """
    sizes = [bundle.input_size] + [layer.size for layer in bundle.layers]
    shapes = _shapes(bundle)
    L = len(bundle.layers)
    v = [[0] * n for n in sizes[1:]]
    c = [[0] * n for n in sizes[1:]]
    fired = [[False] * n for n in sizes[1:]]
    count = [0] * sizes[-1]
    first = [-1] * sizes[-1]
    spikes = [[] for _ in range(L)]
    events_in = [0] * L
    sops = [0] * L
    for t in range(bundle.time_steps):
        if bundle.input_polarity == "channels":    # OFF events are channel 0, ON events channel 1
            events = [(pol * bundle.input_size + i, 1) for (i, pol) in steps[t]]
        else:
            events = list(steps[t])
        for k in range(L):
            layer = bundle.layers[k]
            in_shape, out_shape = shapes[k]
            n = sizes[k + 1]
            syn = [0] * n
            pooled = set()
            for (i, pol) in events:
                events_in[k] += 1
                for j, bit in _targets(layer, bundle.weights[k], in_shape, out_shape, i):
                    if bit is None:
                        pooled.add(j)
                    else:
                        sops[k] += 1
                        syn[j] += 1 if bit == pol else -1
            if layer.kind == "pool2d":
                out = sorted(pooled)
                spikes[k].append(out)
                events = [(j, 1) for j in out]
                continue
            per_channel = n // layer.channels if layer.kind == "conv2d" else 1
            out = []
            for j in range(n):
                if layer.current:
                    c[k][j] = _clamp(c[k][j] - _leak(c[k][j], layer.leak_c) + syn[j], bundle.c_width)
                    drive = c[k][j]
                else:
                    drive = syn[j]
                bias = int(bundle.bias[k][j // per_channel])
                v[k][j] = _clamp(v[k][j] - _leak(v[k][j], layer.leak_v) + drive + bias, bundle.v_width)
                theta = int(bundle.threshold[k][j // per_channel])
                spike = v[k][j] >= theta
                if layer.fire_once and fired[k][j]:
                    spike = False
                if spike:
                    fired[k][j] = True
                    if k == L - 1:
                        if count[j] == 0:
                            first[j] = t
                        count[j] += 1
                    if layer.reset == "subtract":
                        v[k][j] -= theta
                    elif layer.reset == "zero":
                        v[k][j] = 0
                    out.append(j)
            spikes[k].append(out)
            events = [(j, 1) for j in out]
    best = None
    for j in range(sizes[-1]):
        if bundle.readout == "potential":
            key = (v[-1][j],)
        elif bundle.readout == "spike_count":
            key = (count[j], v[-1][j])
        else:
            key = (-first[j] if first[j] >= 0 else -10 ** 9, v[-1][j])
        if best is None or key > best[0]:
            best = (key, j)
    return {"spikes": spikes, "v": v, "c": c, "count": count, "first": first,
            "prediction": best[1], "events": events_in, "sops": sum(sops), "sops_per_layer": sops}
