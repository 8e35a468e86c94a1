"""ResultEmitter: SPIKE records and spike-queue entries of a layer update, POTENTIAL records and
readout candidates of the dump, the CLASS record, one per cycle lowest lane first, under random
stalls on every stream."""
import numpy as np
import pytest

from bsnn.firmware_export.bundle import random_bundle
from bsnn.hdl.config import CoreGeometry, HardwareConfig
from bsnn.hdl.layouts import ResultKind
from bsnn.hdl.result_emitter import EmitMode, ResultEmitter

from hdl_testutil import run_sim


def groups_of(rng, n, U, vw, spikes=True):
    """Result groups of a layer of ``n`` neurons (lanes beyond ``n`` report, never spike)."""
    n_groups = -(-n // U)
    out = []
    for grp in range(n_groups):
        lanes = []
        for u in range(U):
            real = grp * U + u < n
            lanes.append({"index": grp, "spike": int(spikes and real and rng.random() < 0.4),
                          "v": int(rng.integers(-(1 << (vw - 1)), 1 << (vw - 1))),
                          "count": int(rng.integers(0, 5)), "first": int(rng.integers(0, 3)),
                          "fired": 1, "last": grp == n_groups - 1, "dump": int(not real)})
        out.append(lanes)
    return out


async def run_phase(ctx, dut, rng, mode, groups, p, done_port, class_item=None):
    """Drive one phase; returns the records, spike-queue entries and candidates taken."""
    ctx.set(dut.mode, mode)
    pending = list(groups)
    records, entries, cands, pulses = [], [], [], 0
    tail = 0
    while tail < 6:
        offer = bool(pending) and rng.random() < p
        ctx.set(dut.i_results.valid, offer)
        if pending:
            ctx.set(dut.i_results.payload, pending[0])
        if class_item is not None:
            ctx.set(dut.i_class.valid, 1)
            ctx.set(dut.i_class.payload, class_item)
        r_ready, c_ready = rng.random() < p, rng.random() < p
        ctx.set(dut.o_results.ready, r_ready)
        ctx.set(dut.o_cand.ready, c_ready)
        sample = [dut.i_results.ready, dut.o_results.valid, dut.o_results.payload,
                  dut.o_cand.valid, dut.o_cand.payload, done_port]
        if hasattr(dut, "o_groups"):
            sample += [dut.o_groups.valid, dut.o_groups.payload]
        _, _, i_ready, r_valid, record, c_valid, cand, done, *grp = await ctx.tick().sample(*sample)
        if offer and i_ready:
            pending.pop(0)
        if r_valid and r_ready:
            records.append((record.kind, record.step, record.layer, record.index, record.value))
            if class_item is not None:
                ctx.set(dut.i_class.valid, 0)
                class_item = None
        if c_valid and c_ready:
            cands.append((cand.index, cand.v, cand.count, cand.last))
        if grp and grp[0]:
            entries.append((grp[1].group, grp[1].mask))
        pulses += done
        tail += bool(pulses)
    assert not pending and pulses == 1
    ctx.set(dut.mode, EmitMode.NONE)
    return records, entries, cands


@pytest.mark.parametrize("U,p", [(1, 1.0), (1, 0.5), (2, 0.6), (4, 0.5), (4, 1.0)])
def test_result_emitter_phases(U, p):
    rng = np.random.default_rng(U + int(10 * p))
    sizes = [3, 9, 6]
    bundle = random_bundle(rng, sizes=sizes, v_width=7)
    g = CoreGeometry.from_bundle(bundle, HardwareConfig(lanes=4, neuron_lanes=U))
    dut = ResultEmitter(g)
    vw = g.v_width
    hidden = groups_of(rng, sizes[1], U, vw)
    for lane in hidden[0]:
        lane["spike"] = 1           # a group with U spikes: U records, one entry
    output = groups_of(rng, sizes[2], U, vw)
    silent = groups_of(rng, sizes[1], U, vw, spikes=False)
    dump = groups_of(rng, sizes[2], U, vw, spikes=False)
    seen = {}

    async def bench(ctx):
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        ctx.set(dut.step, 3)
        ctx.set(dut.trace, 1)
        ctx.set(dut.layer, 0)
        ctx.set(dut.hidden, 1)
        seen["hidden"] = await run_phase(ctx, dut, rng, EmitMode.SPIKES, hidden, p, dut.layer_done)
        seen["silent"] = await run_phase(ctx, dut, rng, EmitMode.SPIKES, silent, p, dut.layer_done)
        ctx.set(dut.trace, 0)
        seen["untraced"] = await run_phase(ctx, dut, rng, EmitMode.SPIKES, hidden, p,
                                           dut.layer_done)
        ctx.set(dut.trace, 1)
        ctx.set(dut.layer, 1)
        ctx.set(dut.hidden, 0)
        seen["output"] = await run_phase(ctx, dut, rng, EmitMode.SPIKES, output, p, dut.layer_done)
        seen["dump"] = await run_phase(ctx, dut, rng, EmitMode.POTENTIALS, dump, p, dut.dump_done)
        seen["class"] = await run_phase(ctx, dut, rng, EmitMode.CLASS, [], p, dut.class_done,
                                        {"index": 4, "value": -5})

    run_sim(dut, bench, deadline_cycles=20_000)

    def spikes(groups, layer):
        return [(ResultKind.SPIKE, 3, layer, lane["index"] * U + u, lane["v"])
                for lane_group in groups for u, lane in enumerate(lane_group) if lane["spike"]]

    def entries(groups):
        masks = [(grp[0]["index"], sum(lane["spike"] << u for u, lane in enumerate(grp)))
                 for grp in groups]
        return [(grp, mask) for grp, mask in masks if mask]

    assert seen["hidden"] == (spikes(hidden, 1), entries(hidden), [])
    assert seen["silent"] == ([], [], [])
    assert seen["untraced"] == ([], entries(hidden), [])        # spikes still replayed
    assert seen["output"] == (spikes(output, 2), [], [])        # the output layer is not queued
    n = sizes[2]
    lanes = [lane for grp in dump for lane in grp][:n]
    assert seen["dump"] == ([(ResultKind.POTENTIAL, 3, 2, j, lane["v"]) for j, lane in enumerate(lanes)],
                            [], [(j, lane["v"], lane["count"], j == n - 1)
                                 for j, lane in enumerate(lanes)])
    assert seen["class"] == ([(ResultKind.CLASS, 3, 2, 4, -5)], [], [])
