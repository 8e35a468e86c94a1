"""ConfigDecoder: every write reaches the weight memory, its neuron bank and the GLOBAL registers,
decoded, with the documented latencies, while the core is idle only."""
import numpy as np
import pytest

from bsnn.firmware_export.bundle import random_bundle
from bsnn.hdl.config import CoreGeometry, HardwareConfig
from bsnn.hdl.config_decoder import ConfigDecoder
from bsnn.hdl.images import global_words
from bsnn.hdl.layouts import ConfigTarget, GlobalAddress

from hdl_testutil import run_sim


def bank_write(g, target, address, data):
    """``{bank: (target, address, data)}`` that a write reaches (the model of the decoder)."""
    if target == ConfigTarget.LAYER_MODE:
        return {u: (target, address, data) for u in range(g.neuron_lanes)}
    for l in range(g.n_layers):
        if g.neuron_base[l] <= address < g.neuron_base[l] + g.layer_sizes[l]:
            j = address - g.neuron_base[l]
            U = g.neuron_lanes
            return {j % U: (target, g.bank_base[l] + j // U, data)}
    return {}


@pytest.mark.parametrize("U", [1, 2, 4])
def test_config_decoder_routes_every_write(U):
    rng = np.random.default_rng(U)
    bundle = random_bundle(rng, sizes=[4, 7, 5, 3], time_steps=3)
    g = CoreGeometry.from_bundle(bundle, HardwareConfig(lanes=4, neuron_lanes=U))
    init = global_words(bundle, trace=True)
    dut = ConfigDecoder(g, init)
    n_total = sum(g.layer_sizes)
    writes = []
    for _ in range(120):
        target = int(rng.integers(0, 5))
        address = int(rng.integers(0, {ConfigTarget.GLOBAL: 5, ConfigTarget.LAYER_MODE: 4}
                                   .get(target, n_total + 3)))
        writes.append((target, address, int(rng.integers(0, 1 << g.cfg_data_w))))
    taken, weights_seen, banks_seen, globals_seen = [], [], [], []

    async def bench(ctx):
        pending = list(writes)
        cycle = 0
        while pending or cycle < taken[-1][0] + 4:
            idle = rng.random() < 0.8
            valid = bool(pending) and rng.random() < 0.7
            ctx.set(dut.idle, idle)
            ctx.set(dut.i_config.valid, valid)
            if pending:
                t, a, d = pending[0]
                ctx.set(dut.i_config.payload, {"target": t, "address": a, "data": d})
            sampled = await ctx.tick().sample(
                dut.i_config.ready, dut.o_weights.valid, dut.o_weights.payload,
                *[x for s in dut.o_neurons for x in (s.valid, s.payload)],
                dut.time_steps, dut.readout_rule, dut.max_input_events, dut.trace)
            ready, w_valid, w_payload = sampled[2:5]
            banks = sampled[5:5 + 2 * U]
            assert ready == idle
            if valid and ready:
                taken.append((cycle, pending.pop(0)))
            if w_valid:
                weights_seen.append((cycle, (w_payload.target, w_payload.address, w_payload.data)))
            for u in range(U):
                if banks[2 * u]:
                    p = banks[2 * u + 1]
                    banks_seen.append((cycle, u, (p.target, p.address, p.data)))
            globals_seen.append(tuple(sampled[5 + 2 * U:]))
            cycle += 1

    run_sim(dut, bench, deadline_cycles=5000)
    assert [w for _, w in taken] == writes
    # Weight memory: every write, one cycle after its transfer.
    assert weights_seen == [(c + 1, w) for c, w in taken]
    # Neuron banks: decoded, two cycles after the transfer.
    expect = [(c + 2, u, bw) for c, w in taken for u, bw in sorted(bank_write(g, *w).items())]
    assert banks_seen == expect
    assert {u for _, u, _ in banks_seen} == set(range(U))
    # GLOBAL registers: visible two cycles after the transfer (one register stage, then the
    # register itself); the trace bit is bit 0 of the data, the rule its low two bits.
    regs = {GlobalAddress.TIME_STEPS: init[GlobalAddress.TIME_STEPS],
            GlobalAddress.READOUT: init[GlobalAddress.READOUT],
            GlobalAddress.MAX_INPUT_EVENTS: init[GlobalAddress.MAX_INPUT_EVENTS],
            GlobalAddress.TRACE: 1}
    masks = {GlobalAddress.TIME_STEPS: 0xFFFF, GlobalAddress.READOUT: 3,
             GlobalAddress.MAX_INPUT_EVENTS: (1 << g.cfg_data_w) - 1, GlobalAddress.TRACE: 1}
    changes = {c + 2: w for c, w in taken if w[0] == ConfigTarget.GLOBAL and w[1] in masks}
    assert len(changes) > 5
    for cycle, seen in enumerate(globals_seen):
        if cycle in changes:
            _, a, d = changes[cycle]
            regs[a] = d & masks[a]
        assert seen == (regs[GlobalAddress.TIME_STEPS], regs[GlobalAddress.READOUT],
                        regs[GlobalAddress.MAX_INPUT_EVENTS], regs[GlobalAddress.TRACE]), cycle
