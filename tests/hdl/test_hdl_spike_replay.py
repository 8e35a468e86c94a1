"""SpikeReplay: a layer's queued spike groups come back as events, lowest lane first, then a
flush; with the sequencer's tightest timing (load the cycle after the last write, replay from
the next) and with random stalls."""
import numpy as np
import pytest

from bsnn.firmware_export.bundle import random_bundle
from bsnn.hdl.config import CoreGeometry, HardwareConfig
from bsnn.hdl.spike_replay import SpikeReplay

from hdl_testutil import run_sim


@pytest.mark.parametrize("U,p_ready,queue", [(1, 1.0, "bram"), (1, 0.5, "bram"), (2, 0.6, "bram"),
                                             (4, 0.4, "bram"), (4, 1.0, "bram"),
                                             (1, 1.0, "single_port"), (1, 0.5, "single_port"),
                                             (4, 0.4, "single_port")])
def test_spike_replay_events_in_order(U, p_ready, queue):
    """``queue = "single_port"``: the spike queue of an SPRAM build (hdl/single_port.py) on an
    inferred RAM, the same events in the same cycles."""
    rng = np.random.default_rng(U * 10 + int(10 * p_ready))
    sizes = [6, 13, 9, 5]
    bundle = random_bundle(rng, sizes=sizes)
    g = CoreGeometry.from_bundle(bundle, HardwareConfig(lanes=4, neuron_lanes=U,
                                                        spike_queue_memory=queue))
    dut = SpikeReplay(g)
    # Layers of spike groups (ascending group index, non-empty masks): random ones, none, and
    # every group of the largest hidden layer with every lane set (the queue's full depth).
    layers = []
    for _ in range(8):
        n_groups = g.groups[int(rng.integers(0, g.n_layers - 1))]
        chosen = [int(x) for x in np.flatnonzero(rng.random(n_groups) < 0.5)]
        layers.append([(grp, int(rng.integers(1, 1 << U))) for grp in chosen])
    layers.insert(2, [])
    layers.append([(grp, (1 << U) - 1) for grp in range(max(g.groups[:-1]))])
    got = []

    async def bench(ctx):
        for groups in layers:
            # The update writes the entries with gaps; the load follows the last write at once
            # (sometimes later), and the replay starts the cycle after the load.
            for grp, mask in groups:
                while rng.random() < 0.3:
                    await ctx.tick()
                ctx.set(dut.i_groups.valid, 1)
                ctx.set(dut.i_groups.payload, {"group": grp, "mask": mask})
                await ctx.tick()
                ctx.set(dut.i_groups.valid, 0)
            if rng.random() < 0.3:
                await ctx.tick().repeat(int(rng.integers(1, 3)))
            ctx.set(dut.load, 1)
            await ctx.tick()
            ctx.set(dut.load, 0)
            ctx.set(dut.enable, 1)
            events = []
            while True:
                ready = rng.random() < p_ready
                ctx.set(dut.o_events.ready, ready)
                *_, valid, payload = await ctx.tick().sample(dut.o_events.valid,
                                                             dut.o_events.payload)
                if valid and ready:
                    if payload.flush:
                        break
                    assert payload.polarity == 1
                    events.append(payload.index)
            ctx.set(dut.enable, 0)
            ctx.set(dut.o_events.ready, 0)
            got.append(events)
            await ctx.tick()

    run_sim(dut, bench, deadline_cycles=20_000)
    want = [[grp * U + u for grp, mask in groups for u in range(U) if mask >> u & 1]
            for groups in layers]
    assert got == want


@pytest.mark.parametrize("queue", ["bram", "single_port"])
def test_spike_replay_never_drops_a_write(queue):
    """The queue has room for every group of the largest hidden layer: ``i_groups`` is ready
    for each of them (its writer does not look)."""
    bundle = random_bundle(np.random.default_rng(3), sizes=[4, 17, 3])
    g = CoreGeometry.from_bundle(bundle, HardwareConfig(lanes=2, spike_queue_memory=queue))
    dut = SpikeReplay(g)
    readies = []

    async def bench(ctx):
        ctx.set(dut.i_groups.valid, 1)
        for grp in range(g.groups[0]):
            ctx.set(dut.i_groups.payload, {"group": grp, "mask": 1})
            *_, ready = await ctx.tick().sample(dut.i_groups.ready)
            readies.append(ready)

    run_sim(dut, bench)
    assert readies == [1] * g.groups[0]
