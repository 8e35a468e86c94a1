"""A deliberately plain reading of docs/semantics.md: Python ints, loops, one event at a time.

It shares no code with the golden model on purpose; tests run both on random cases and demand
identical results, so a misreading of the semantics has to be made twice to go unnoticed.
"""


def _clamp(x, width):
    lo, hi = -(2 ** (width - 1)), 2 ** (width - 1) - 1
    return lo if x < lo else hi if x > hi else x


def _leak(x, shift):
    if shift == 0:
        return 0
    return x // (2 ** shift)   # floor division == arithmetic shift right


def reference_run(bundle, steps):
    """Run one sample. ``steps``: list of T lists of (index, polarity) events.

    Returns dict with spikes (per layer, per step: list of neuron indices), v, c (final, per
    layer), count, first, prediction, events (per layer), sops.
    """
    sizes = [bundle.input_size] + [layer.size for layer in bundle.layers]
    L = len(bundle.layers)
    v = [[0] * n for n in sizes[1:]]
    c = [[0] * n for n in sizes[1:]]
    fired = [[False] * n for n in sizes[1:]]
    count = [0] * sizes[-1]
    first = [-1] * sizes[-1]
    spikes = [[] for _ in range(L)]
    events_in = [0] * L
    for t in range(bundle.time_steps):
        events = list(steps[t])
        for k in range(L):
            layer = bundle.layers[k]
            w = bundle.weights[k]
            n = sizes[k + 1]
            syn = [0] * n
            for (i, pol) in events:
                events_in[k] += 1
                for j in range(n):
                    bit = int(w[i][j])
                    syn[j] += 1 if bit == pol else -1
            out = []
            for j in range(n):
                if layer.current:
                    c[k][j] = _clamp(c[k][j] - _leak(c[k][j], layer.leak_c) + syn[j], bundle.c_width)
                    drive = c[k][j]
                else:
                    drive = syn[j]
                v[k][j] = _clamp(v[k][j] - _leak(v[k][j], layer.leak_v) + drive + int(bundle.bias[k][j]),
                                 bundle.v_width)
                theta = int(bundle.threshold[k][j])
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
    sops = sum(events_in[k] * sizes[k + 1] for k in range(L))
    return {"spikes": spikes, "v": v, "c": c, "count": count, "first": first,
            "prediction": best[1], "events": events_in, "sops": sops}
