"""InputFilter: per step, the valid events within the budget and then a flush; dropped events
flagged; nothing leaves while the sequencer is not accumulating layer 1."""
import numpy as np
import pytest

from bsnn.firmware_export.bundle import random_bundle
from bsnn.hdl.config import CoreGeometry, HardwareConfig
from bsnn.hdl.input_filter import InputFilter
from bsnn.hdl.layouts import ErrorBit

from hdl_testutil import event_items, run_sim, stream_put


def expected_step(events, n0, limit):
    """The synapse events a step yields and the error bits it sets."""
    valid = [(i, p) for i, p in events if i < n0]
    error = (len(valid) < len(events)) << ErrorBit.INDEX
    error |= (len(valid) > limit) << ErrorBit.OVERFLOW
    return valid[:limit], error


@pytest.mark.parametrize("p_valid,p_ready", [(1.0, 1.0), (0.6, 0.5), (0.9, 0.3)])
def test_input_filter_budget_drops_and_flushes(p_valid, p_ready):
    rng = np.random.default_rng(int(10 * p_valid + 100 * p_ready))
    capacity = 6
    bundle = random_bundle(rng, sizes=[5, 4], max_input_events=capacity)
    g = CoreGeometry.from_bundle(bundle, HardwareConfig(lanes=2, max_input_events=capacity))
    dut = InputFilter(g)
    # Inferences of 3 steps; the run-time limit 0 (drop all), small, at and above the capacity,
    # and far above it with the low bits of a small one (the filter compares a narrowed budget:
    # these must count as unlimited, not as 0 or 2).
    top = 1 << (len(dut.max_events) - 1)
    assert top > 1 << 8
    inferences = []
    for limit in (3, 0, capacity, capacity + 5, 2, top, top + 2, 2 * top - 1):
        steps = [[(int(rng.integers(0, 7)), int(rng.integers(0, 2)))
                  for _ in range(int(rng.integers(0, 10)))] for _ in range(3)]
        inferences.append((limit, steps))
    inferences.append((4, [[], [(0, 1)], []]))       # empty steps, no error
    got, errors = [], []
    feed = {"items": None}

    async def feeder(ctx):
        for _, steps in inferences:
            while feed["items"] is None:
                await ctx.tick()
            await stream_put(ctx, dut.i_events, feed["items"], rng, p_valid)
            feed["items"] = None

    async def control(ctx):
        for limit, steps in inferences:
            ctx.set(dut.max_events, limit)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            assert ctx.get(dut.error) == 0          # cleared by the start
            feed["items"] = event_items(steps)
            ctx.set(dut.clearing, 1)
            await ctx.tick().repeat(int(rng.integers(2, 5)))
            ctx.set(dut.clearing, 0)
            run = []
            for _ in steps:
                # Between the steps' accumulations the filter is disabled (the sequencer
                # updates the layers): nothing may leave then.
                for _ in range(int(rng.integers(0, 4))):
                    *_, valid = await ctx.tick().sample(dut.o_events.valid)
                    assert not valid
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
                        events.append((payload.index, payload.polarity))
                ctx.set(dut.enable, 0)
                ctx.set(dut.o_events.ready, 0)
                run.append(events)
            got.append(run)
            errors.append(ctx.get(dut.error))
            await ctx.tick().repeat(int(rng.integers(1, 4)))

    run_sim(dut, feeder, control, deadline_cycles=20_000)
    for (limit, steps), run, error in zip(inferences, got, errors):
        want = [expected_step(ev, g.sizes[0], min(limit, capacity)) for ev in steps]
        assert run == [w for w, _ in want]
        assert error == np.bitwise_or.reduce([e for _, e in want])
    assert any(e & (1 << ErrorBit.INDEX) for e in errors)
    assert any(e & (1 << ErrorBit.OVERFLOW) for e in errors)


def test_input_filter_queue_takes_two_events_while_disabled():
    """Events enter the 2-entry queue while the core is idle; then ready falls."""
    bundle = random_bundle(np.random.default_rng(0), sizes=[5, 4])
    dut = InputFilter(CoreGeometry.from_bundle(bundle, HardwareConfig(lanes=2)))
    readies = []

    async def bench(ctx):
        ctx.set(dut.i_events.valid, 1)
        ctx.set(dut.i_events.payload, {"index": 1, "polarity": 1, "end_of_step": 0})
        for _ in range(5):
            *_, ready = await ctx.tick().sample(dut.i_events.ready)
            readies.append(ready)

    run_sim(dut, bench)
    assert readies == [1, 1, 0, 0, 0]
