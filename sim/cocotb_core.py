"""cocotb test module: drives a job (see sim/runner.py) through the core's streams.

Separate classes for the stream driver and the stream monitor; the scoreboard (comparison
with the golden model) lives in ``bsnn.sim.check`` on the pytest side. Random valid gaps on the
input streams and random ready drops on the result stream exercise backpressure everywhere.
"""
import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from bsnn.hdl.layouts import ResultKind
from bsnn.sim.protocol import Protocol


class StreamDriver:
    """Drives ``<name>__valid`` / ``__payload`` and completes a transfer on valid & ready."""

    def __init__(self, dut, name, rng, p_idle=0.0):
        self.clk = dut.clk
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.rng, self.p_idle = rng, p_idle
        self.valid.value = 0
        self.payload.value = 0   # a defined payload while idle keeps X out of 4-state simulators

    async def send(self, word):
        while self.p_idle and self.rng.random() < self.p_idle:
            self.valid.value = 0
            await RisingEdge(self.clk)
        self.valid.value = 1
        self.payload.value = word
        while True:
            await ReadOnly()
            accepted = int(self.ready.value) == 1
            await RisingEdge(self.clk)
            if accepted:
                break
        self.valid.value = 0


class StreamMonitor:
    """Collects payloads of ``<name>``, dropping ``ready`` at random to create backpressure."""

    def __init__(self, dut, name, rng, p_block=0.0):
        self.clk = dut.clk
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.rng, self.p_block = rng, p_block
        self.ready.value = 0

    async def receive_until(self, stop, max_cycles):
        """Receive words until ``stop(word)`` is true; None after ``max_cycles`` cycles."""
        words = []
        for _ in range(max_cycles):
            ready = not (self.p_block and self.rng.random() < self.p_block)
            self.ready.value = int(ready)
            await ReadOnly()
            got = ready and int(self.valid.value) == 1
            word = self.payload.value.to_unsigned() if got else None
            await RisingEdge(self.clk)
            if got:
                words.append(word)
                if stop(word):
                    self.ready.value = 0
                    return words
        self.ready.value = 0
        return None


async def _pulse(dut, signal):
    signal.value = 1
    await RisingEdge(dut.clk)
    signal.value = 0


async def _abort_with_reset(dut, events, results, feeder, cycles):
    """Let an inference run ``cycles`` cycles, then assert rst in the middle of it."""
    collector = cocotb.start_soon(results.receive_until(lambda w: False, cycles))
    for _ in range(cycles):
        await RisingEdge(dut.clk)
    feeder.cancel()
    collector.cancel()
    events.valid.value = 0
    results.ready.value = 0
    dut.rst.value = 1
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    return {"aborted": True, "timeout": False, "records": [], "cycles": None, "error": None}


async def _run_sample(dut, proto, events, results, steps, max_cycles, abort_after=None):
    """One inference: start, feed events with end-of-step markers, collect until CLASS.
    With ``abort_after``, reset the core that many cycles into the inference instead."""
    await _pulse(dut, dut.start)

    async def feed():
        for step in steps:
            for index, polarity in step:
                await events.send(proto.pack_event(index, polarity, False))
            await events.send(proto.pack_event(0, 0, True))

    feeder = cocotb.start_soon(feed())
    if abort_after is not None:
        return await _abort_with_reset(dut, events, results, feeder, abort_after)
    words = await results.receive_until(lambda w: proto.unpack_result(w)[0] == ResultKind.CLASS, max_cycles)
    if words is None:
        feeder.cancel()
        return {"timeout": True, "records": [], "cycles": None, "error": None}
    await RisingEdge(dut.clk)
    if not feeder.done():   # the core finished without taking all of its input
        feeder.cancel()
        return {"timeout": False, "records": [list(proto.unpack_result(w)) for w in words],
                "cycles": None, "error": None, "unconsumed_input": True}
    for _ in range(max_cycles):
        await ReadOnly()
        if int(dut.busy.value) == 0:
            break
        await RisingEdge(dut.clk)
    sample = {"timeout": False, "records": [list(proto.unpack_result(w)) for w in words],
              "cycles": int(dut.cycles.value.to_unsigned()), "error": int(dut.error.value.to_unsigned())}
    await RisingEdge(dut.clk)
    return sample


@cocotb.test()
async def run_job(dut):
    await drive_job(dut)


async def drive_job(dut):
    """The job in BSNN_JOB through the core; results to BSNN_RESULT."""
    with open(os.environ["BSNN_JOB"]) as f:
        job = json.load(f)
    proto = Protocol.from_key(job["build_key"])
    rng = random.Random(job.get("seed", 0))
    stall = job.get("stall", {})
    Clock(dut.clk, 10, unit="ns").start()
    dut.start.value = 0
    events = StreamDriver(dut, "i_events", rng, stall.get("p_idle", 0.0))
    config = StreamDriver(dut, "i_config", rng, stall.get("p_idle", 0.0))
    results = StreamMonitor(dut, "o_results", rng, stall.get("p_block", 0.0))
    dut.rst.value = 1
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    out = {"programs": []}
    for program in job["programs"]:
        for target, address, data in program["config_writes"]:
            await config.send(proto.pack_config(target, address, data))
        samples = []
        for sample in program["samples"]:
            samples.append(await _run_sample(dut, proto, events, results, sample["steps"],
                                             job.get("max_cycles", 1_000_000),
                                             sample.get("abort_after")))
        out["programs"].append({"samples": samples})
    with open(os.environ["BSNN_RESULT"], "w") as f:
        json.dump(out, f)
