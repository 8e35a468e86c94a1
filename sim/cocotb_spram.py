"""cocotb test of the SPRAM weight memory alone (tests/sim/test_spram_memory.py): random words
written through the config port into every address, read back in random order, each compared."""
import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge


@cocotb.test()
async def write_then_read_back(dut):
    with open(os.environ["BSNN_SPRAM_JOB"]) as f:
        job = json.load(f)
    depth, lanes = job["depth"], job["lanes"]
    rng = random.Random(job["seed"])
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.i_write__valid.value = 0
    dut.read__en.value = 0
    dut.read__addr.value = 0
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    words = [rng.getrandbits(lanes) for _ in range(depth)]
    for addr in rng.sample(range(depth), depth):          # writes in random order
        await FallingEdge(dut.clk)
        dut.i_write__valid.value = 1
        dut.i_write__payload.value = (job["target_weights"] | (addr << job["addr_lsb"])
                                      | (words[addr] << job["data_lsb"]))
        await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.i_write__valid.value = 0
    errors = []
    latency = job["latency"]
    order = [rng.randrange(depth) for _ in range(3 * depth)]
    for k, addr in enumerate(order + [0] * latency):
        await FallingEdge(dut.clk)
        if k >= latency:            # the word of the address issued `latency` cycles earlier
            got = int(dut.read__data.value)
            want = words[order[k - latency]]
            if got != want:
                errors.append((order[k - latency], got, want))
        dut.read__en.value = 1
        dut.read__addr.value = addr
        await RisingEdge(dut.clk)
    with open(os.environ["BSNN_SPRAM_RESULT"], "w") as f:
        json.dump({"errors": errors[:20], "n_errors": len(errors), "reads": len(order)}, f)
