"""Shared helpers of the hdl unit tests: stream drivers/monitors and a whole-core runner."""
from __future__ import annotations

import warnings

import numpy as np
import torch
from amaranth.sim import Simulator

from bsnn.hdl.layouts import ResultKind

__all__ = ["stream_put", "stream_get", "stream_exchange", "run_sim", "CoreRunner", "events_of",
           "RefLayer"]


async def stream_put(ctx, stream, items, rng=None, p_valid=1.0):
    """Drive ``items`` (payload values) into ``stream`` with random idle cycles."""
    for item in items:
        while rng is not None and rng.random() > p_valid:
            await ctx.tick()
        ctx.set(stream.valid, 1)
        ctx.set(stream.payload, item)
        await ctx.tick().until(stream.ready)
        ctx.set(stream.valid, 0)


async def stream_get(ctx, stream, out, count=None, rng=None, p_ready=1.0, stop=None):
    """Collect payloads of ``stream`` into ``out`` with random ready stalls, until ``count``
    items were taken or ``stop(item)`` is true for the last one taken."""
    while count is None or len(out) < count:
        ready = rng is None or rng.random() < p_ready
        ctx.set(stream.ready, ready)
        _, _, valid, payload = await ctx.tick().sample(stream.valid, stream.payload)
        if valid and ready:
            out.append(payload)
            if stop is not None and stop(payload):
                break
    ctx.set(stream.ready, 0)


async def stream_exchange(ctx, i_stream, items, o_stream, count, rng=None, p_valid=1.0,
                          p_ready=1.0):
    """Drive ``items`` into ``i_stream`` and collect ``count`` payloads of ``o_stream`` in the
    same cycle loop (for units whose input stalls while their output is not taken)."""
    pending, out = list(items), []
    while len(out) < count or pending:
        if pending and (rng is None or rng.random() < p_valid):
            ctx.set(i_stream.valid, 1)
            ctx.set(i_stream.payload, pending[0])
        else:
            ctx.set(i_stream.valid, 0)
        ready = len(out) < count and (rng is None or rng.random() < p_ready)
        ctx.set(o_stream.ready, ready)
        _, _, iv, ir, ov, op = await ctx.tick().sample(i_stream.valid, i_stream.ready,
                                                       o_stream.valid, o_stream.payload)
        if iv and ir:
            pending.pop(0)
        if ov and ready:
            out.append(op)
    ctx.set(i_stream.valid, 0)
    ctx.set(o_stream.ready, 0)
    return out


def run_sim(dut, *testbenches, deadline_cycles=200_000, vcd=None):
    """Simulate ``dut`` (1 MHz clock) until every testbench returns; warnings are errors.
    A background watchdog fails the test after ``deadline_cycles`` cycles."""
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for tb in testbenches:
        sim.add_testbench(tb)

    async def watchdog(ctx):
        await ctx.delay(deadline_cycles * 1e-6)
        raise TimeoutError(f"simulation still running after {deadline_cycles} cycles")
    sim.add_testbench(watchdog, background=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        if vcd:
            with sim.write_vcd(vcd):
                sim.run()
        else:
            sim.run()


def events_of(on: torch.Tensor, off: torch.Tensor | None, sample: int, rng) -> list[list[tuple]]:
    """Input events (index, polarity) per step of one sample, shuffled inside each step."""
    T, _, n0 = on.shape
    steps = []
    for t in range(T):
        ev = []
        for i in range(n0):
            ev += [(i, 1)] * int(on[t, sample, i])
            if off is not None:
                ev += [(i, 0)] * int(off[t, sample, i])
        rng.shuffle(ev)
        steps.append(ev)
    return steps


class CoreRunner:
    """Drives a :class:`bsnn.hdl.core.BSNNCore` through config loads and inferences in one simulation.

    ``jobs`` is a list of ``("config", writes)`` or ``("infer", steps_of_events)``; the results
    of every inference are collected as a dict: spikes, potentials, cls, cycles, error, records.
    """
    def __init__(self, core, rng, p_valid=1.0, p_ready=1.0, top=None):
        self.core = core
        self.top = core if top is None else top
        self.rng = rng
        self.p_valid = p_valid
        self.p_ready = p_ready
        self.results = []
        self._queue = []

    def run(self, jobs, deadline_cycles=500_000):
        core, rng = self.core, self.rng
        state = {"job": None, "finished": False}

        async def control(ctx):
            for kind, arg in jobs:
                if kind == "config":
                    items = [{"target": t, "address": a, "data": d} for t, a, d in arg]
                    await stream_put(ctx, core.i_config, items, rng, self.p_valid)
                    continue
                items = event_items(arg)
                job = {"items": items, "records": [], "fed": False, "collected": False}
                ctx.set(core.start, 1)
                await ctx.tick()
                ctx.set(core.start, 0)
                state["job"] = job
                await ctx.tick().until(core.done)
                assert job["fed"] and job["collected"]
                assert not ctx.get(core.busy)
                self.results.append(decode_records(core.geom, job["records"], ctx.get(core.cycles),
                                                 ctx.get(core.error)))
                state["job"] = None
            state["finished"] = True

        async def feeder(ctx):
            while not state["finished"]:
                job = state["job"]
                if job is None or job["fed"]:
                    await ctx.tick()
                    continue
                await stream_put(ctx, core.i_events, job["items"], rng, self.p_valid)
                job["fed"] = True

        async def monitor(ctx):
            while not state["finished"]:
                job = state["job"]
                if job is None or job["collected"]:
                    await ctx.tick()
                    continue
                await stream_get(ctx, core.o_results, job["records"], rng=rng,
                                 p_ready=self.p_ready, stop=lambda r: r.kind == ResultKind.CLASS)
                job["collected"] = True

        run_sim(self.top, control, feeder, monitor, deadline_cycles=deadline_cycles)
        n_infer = sum(1 for k, _ in jobs if k == "infer")
        assert len(self.results) == n_infer, f"only {len(self.results)} of {n_infer} inferences finished"
        return self.results

def decode_records(g, records, cycles=None, error=None):
    T_seen = max([r.step for r in records] + [0]) + 1
    spikes = [[] for _ in range(g.n_layers)]
    potentials, cls, order = [], None, []
    for r in records:
        if r.kind == ResultKind.SPIKE:
            spikes[r.layer - 1].append((r.step, r.index))
            order.append((r.step, r.layer, r.index))
        elif r.kind == ResultKind.POTENTIAL:
            potentials.append((r.index, r.value))
        elif r.kind == ResultKind.CLASS:
            cls = (r.index, r.value)
    assert order == sorted(order), "SPIKE records out of (step, layer, index) order"
    assert records and records[-1].kind == ResultKind.CLASS
    return {"spikes": spikes, "potentials": potentials, "cls": cls, "cycles": cycles,
            "error": error, "records": records, "steps_seen": T_seen}


def event_items(steps):
    """Input-event stream payloads of one inference (events, then end_of_step, per step)."""
    items = []
    for ev in steps:
        items += [{"index": i, "polarity": p, "end_of_step": 0} for i, p in ev]
        items.append({"index": 0, "polarity": 0, "end_of_step": 1})
    return items


async def infer_inline(ctx, core, steps, rng=None, p_valid=1.0, p_ready=1.0):
    """One inference in a single cycle loop: start, feed events, collect records until CLASS."""
    ctx.set(core.start, 1)
    await ctx.tick()
    ctx.set(core.start, 0)
    pending, records = event_items(steps), []
    while not (records and records[-1].kind == ResultKind.CLASS):
        if pending and (rng is None or rng.random() < p_valid):
            ctx.set(core.i_events.valid, 1)
            ctx.set(core.i_events.payload, pending[0])
        else:
            ctx.set(core.i_events.valid, 0)
        ready = rng is None or rng.random() < p_ready
        ctx.set(core.o_results.ready, ready)
        _, _, iv, ir, ov, op = await ctx.tick().sample(core.i_events.valid, core.i_events.ready,
                                                       core.o_results.valid, core.o_results.payload)
        if iv and ir:
            pending.pop(0)
        if ov and ready:
            records.append(op)
    ctx.set(core.i_events.valid, 0)
    ctx.set(core.o_results.ready, 0)
    assert not pending, "the core finished without consuming all events"
    _, _, done, cycles, error = await ctx.tick().sample(core.done, core.cycles, core.error)
    assert done
    return records, cycles, error


def spike_matrix(spike_list, T, n):
    m = np.zeros((T, n), dtype=bool)
    for t, i in spike_list:
        assert not m[t, i], f"duplicate spike record step {t} index {i}"
        m[t, i] = True
    return m


def sat(x, w):
    return max(-(1 << (w - 1)), min((1 << (w - 1)) - 1, x))


def leak(x, k):
    return 0 if k == 0 else x >> k


class RefLayer:
    """Plain-integer neuron model of one layer (docs/semantics.md section 5)."""
    def __init__(self, spec, bias, theta, vw, cw):
        n = spec.size
        self.spec, self.bias, self.theta, self.vw, self.cw = spec, bias, theta, vw, cw
        self.v, self.c, self.fired = [0] * n, [0] * n, [False] * n
        self.count, self.first = [0] * n, [0] * n

    def update(self, j, I, t):
        s = self.spec
        if s.current:
            self.c[j] = sat(self.c[j] - leak(self.c[j], s.leak_c) + I, self.cw)
            drive = self.c[j]
        else:
            drive = I
        v = sat(self.v[j] - leak(self.v[j], s.leak_v) + drive + int(self.bias[j]), self.vw)
        spike = v >= self.theta[j] and not (s.fire_once and self.fired[j])
        if spike:
            self.fired[j] = True
            if self.count[j] == 0:
                self.first[j] = t
            self.count[j] += 1
            if s.reset == "subtract":
                v -= int(self.theta[j])
            elif s.reset == "zero":
                v = 0
        self.v[j] = v
        return spike
