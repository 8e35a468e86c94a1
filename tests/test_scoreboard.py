"""The scoreboard itself: it must notice every kind of difference between RTL and golden model."""
import numpy as np

from bsnn.firmware_export.bundle import random_bundle
from bsnn.firmware_export.events import random_counts
from bsnn.firmware_export.golden import run_golden
from bsnn.hdl.layouts import ResultKind
from bsnn.sim.check import compare_sample, expected_records

KIND = {"spike": ResultKind.SPIKE, "potential": ResultKind.POTENTIAL, "class": ResultKind.CLASS}


def _as_rtl(records):
    out = []
    for r in records:
        if r[0] == "spike":
            out.append([KIND["spike"], r[1], r[2], r[3], 0])
        elif r[0] == "potential":
            out.append([KIND["potential"], 0, r[1], r[2], r[3]])
        else:
            out.append([KIND["class"], 0, 0, r[1], 0])
    return out


def test_scoreboard_accepts_exact_and_rejects_every_mutation():
    rng = np.random.default_rng(0)
    bundle = random_bundle(rng, sizes=[12, 8, 4], time_steps=4)
    on, off = random_counts(bundle, 1, rng, density=0.5)
    res = run_golden(bundle, on, off)
    good = _as_rtl(expected_records(bundle, res, 0))
    assert any(r[0] == ResultKind.SPIKE for r in good)
    sample = {"records": good, "cycles": 10, "error": 0}
    assert compare_sample(bundle, res, 0, sample) is None
    mutations = []
    for i, r in enumerate(good):
        for field in (1, 2, 3, 4):
            bad = [list(x) for x in good]
            bad[i][field] += 1
            if (r[0] == ResultKind.SPIKE and field == 4) or (r[0] == ResultKind.POTENTIAL and field == 1) \
                    or (r[0] == ResultKind.CLASS and field != 3):
                continue   # fields a record kind does not define
            mutations.append(bad)
    mutations.append(good[:-1])                 # missing CLASS
    mutations.append(good[1:])                  # a lost record
    mutations.append(good + [good[-1]])         # an extra record
    mutations.append([good[1], good[0]] + good[2:])   # reordered
    for bad in mutations:
        assert compare_sample(bundle, res, 0, {"records": bad, "cycles": 10, "error": 0}) is not None
    assert compare_sample(bundle, res, 0, {"records": good, "cycles": 10, "error": 2}) is not None
    assert compare_sample(bundle, res, 0, {"timeout": True, "records": []}) is not None
