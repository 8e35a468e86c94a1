"""The whole core against the golden model (firmware_export.golden.run_golden)."""
import numpy as np
import pytest
import torch

from firmware_export.bundle import random_bundle
from firmware_export.events import random_counts
from firmware_export.golden import run_golden
from hdl.config import HardwareConfig
from hdl.core import BSNNCore

from hdl_testutil import CoreRunner, events_of, spike_matrix


def check_against_golden(bundle, result, gold, b):
    L = len(bundle.layers)
    T = bundle.time_steps
    for l in range(L):
        got = spike_matrix(result["spikes"][l], T, bundle.layers[l].size)
        want = gold.spikes[l][:, b].numpy()
        assert np.array_equal(got, want), f"layer {l + 1} spikes differ\n{got.astype(int)}\n{want.astype(int)}"
    pots = result["potentials"]
    assert [i for i, _ in pots] == list(range(bundle.layers[-1].size))
    assert [v for _, v in pots] == gold.v[-1][b].tolist()
    assert result["cls"][0] == int(gold.prediction[b])
    assert result["error"] == 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_core_matches_golden(seed):
    rng = np.random.default_rng(seed)
    sizes = [[9, 7, 5], [6, 11, 3, 4], [12, 6]][seed]
    bundle = random_bundle(rng, sizes=sizes)
    hw = HardwareConfig(lanes=[4, 3, 8][seed])
    core = BSNNCore(bundle, hw)
    on, off = random_counts(bundle, 2, rng)
    gold = run_golden(bundle, on, off)
    runner = CoreRunner(core, rng, p_valid=0.7, p_ready=0.7)
    jobs = [("infer", events_of(on, off, b, rng)) for b in range(2)]
    results = runner.run(jobs)
    for b, res in enumerate(results):
        check_against_golden(bundle, res, gold, b)


def test_debug_print():
    rng = np.random.default_rng(0)
    bundle = random_bundle(rng, sizes=[9, 7, 5])
    core = BSNNCore(bundle, HardwareConfig(lanes=4))
    on, off = random_counts(bundle, 2, rng)
    gold = run_golden(bundle, on, off)
    res = CoreRunner(core, rng).run([("infer", events_of(on, off, 0, rng))])
    print(bundle.layers, bundle.time_steps, bundle.readout)
    print([g[:, 0].sum().item() for g in gold.spikes], res[0]["cycles"], len(res[0]["records"]), res[0]["cls"], gold.v[-1][0])
    print(gold.events_per_layer[:, 0])
