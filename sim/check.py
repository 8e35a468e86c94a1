"""Scoreboard: the RTL's result records against the golden model, spike for spike."""
from __future__ import annotations

import torch

from bsnn.hdl.layouts import ResultKind


def expected_records(bundle, res, b: int) -> list[tuple]:
    """What the core must emit for sample ``b`` of golden result ``res``, in order (normalized)."""
    records = []
    L = len(bundle.layers)
    for t in range(bundle.time_steps):
        for k in range(L):
            for j in torch.nonzero(res.spikes[k][t, b]).flatten().tolist():
                records.append(("spike", t, k + 1, j))
    for j, v in enumerate(res.v[-1][b].tolist()):
        records.append(("potential", L, j, v))
    records.append(("class", int(res.prediction[b])))
    return records


def normalize(record) -> tuple:
    """Keep the fields a record kind defines (docs/architecture.md)."""
    kind, step, layer, index, value = record
    if kind == ResultKind.SPIKE:
        return ("spike", step, layer, index)
    if kind == ResultKind.POTENTIAL:
        return ("potential", layer, index, value)
    if kind == ResultKind.CLASS:
        return ("class", index)
    return ("unknown", kind, step, layer, index, value)


def compare_sample(bundle, res, b: int, rtl_sample: dict, trace: bool = True,
                   expected_error: int = 0) -> str | None:
    """None when the RTL sample equals the golden model (and raised exactly
    ``expected_error``), else a one-line description."""
    if rtl_sample.get("aborted"):
        return "the sample was aborted by a reset; there is nothing to compare"
    if rtl_sample.get("timeout"):
        return "timeout: the core never emitted its CLASS record"
    if rtl_sample.get("unconsumed_input"):
        return "the core finished before taking all input events"
    if (rtl_sample.get("error") or 0) != expected_error:
        return f"core raised error flags {rtl_sample.get('error') or 0:#x}, expected {expected_error:#x}"
    expected = expected_records(bundle, res, b)
    if not trace:
        expected = [r for r in expected if r[0] != "spike"]
    got = [normalize(r) for r in rtl_sample["records"]]
    if got == expected:
        return None
    for i, (g, e) in enumerate(zip(got, expected)):
        if g != e:
            return f"record {i}: RTL {g} != golden {e}"
    return f"RTL emitted {len(got)} records, golden model {len(expected)}"
