"""The board checker's comparison loop, against a stand-in device that answers from the golden
model (exact) or with one record changed (must be reported). The protocol itself runs against
the board top in simulation in tests/sim/test_board_uart.py."""
import asyncio

import numpy as np

from bsnn.firmware_export.bundle import random_bundle
from bsnn.firmware_export.events import counts_from_events, random_counts
from bsnn.firmware_export.golden import run_golden
from bsnn.hdl.layouts import ResultKind
from bsnn.board import check_samples
from bsnn.sim.board_host import InferenceResult
from bsnn.sim.check import expected_records


class GoldenDevice:
    """Answers infer(steps) like a correct board would, optionally corrupting one sample."""

    def __init__(self, bundle, corrupt_sample=None):
        from bsnn.hdl.config import CoreGeometry
        self.bundle, self.corrupt, self.calls = bundle, corrupt_sample, 0
        self.geom = CoreGeometry.from_bundle(bundle)      # (as BoardHost.geom)

    async def infer(self, steps):
        on, off = counts_from_events(self.bundle, [steps])
        res = run_golden(self.bundle, on, off)
        kinds = {"spike": ResultKind.SPIKE, "potential": ResultKind.POTENTIAL, "class": ResultKind.CLASS}
        records = []
        for r in expected_records(self.bundle, res, 0):
            if r[0] == "spike":
                records.append((kinds["spike"], r[1], r[2], r[3], 0))
            elif r[0] == "potential":
                records.append((kinds["potential"], 0, r[1], r[2], r[3]))
            else:
                records.append((kinds["class"], 0, 0, r[1], 0))
        if self.calls == self.corrupt:
            k, t, layer, j, v = records[-2]
            records[-2] = (k, t, layer, j, v + 1)
        self.calls += 1
        return InferenceResult(records=records, cycles=100, error=0)


def test_check_samples_passes_exact_device_and_reports_a_wrong_one():
    rng = np.random.default_rng(2)
    bundle = random_bundle(rng, sizes=[10, 6, 3])
    on, off = random_counts(bundle, 5, rng)
    labels = run_golden(bundle, on, off).prediction.tolist()
    good = asyncio.run(check_samples(GoldenDevice(bundle), bundle, on, off, labels))
    assert good["bit_exact"] and good["accuracy"] == 1.0 and good["cycles_per_inference"] == 100
    # The core's own cycles: the cycle formula per sample, as the RTL tests check it.
    from bsnn.hdl.generate import cycle_estimate
    gold = run_golden(bundle, on, off)
    geom = GoldenDevice(bundle).geom
    want = [cycle_estimate(geom, bundle.time_steps, gold.events_per_layer[:, b].tolist(),
                           [s[:, b].numpy() for s in gold.spikes]) for b in range(5)]
    assert good["core_cycles_per_inference"] == sum(want) / 5
    assert good["inferences_per_s"] > 0
    bad = asyncio.run(check_samples(GoldenDevice(bundle, corrupt_sample=3), bundle, on, off, labels))
    assert not bad["bit_exact"] and bad["mismatch_count"] == 1 and bad["mismatches"][0].startswith("sample 3:")
