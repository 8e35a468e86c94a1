"""cocotb test of two copies of one design side by side (tests/sim/test_ecp5_block_ram_model.py):
its RTL and its gate-level netlist get the same random inputs every cycle, and every output is
compared after every clock edge. The job names the inputs (with widths) and the output pairs."""
import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge


@cocotb.test()
async def same_outputs(dut):
    with open(os.environ["BSNN_PAIR_JOB"]) as f:
        job = json.load(f)
    rng = random.Random(job["seed"])
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    inputs = {name: (getattr(dut, name), width) for name, width in job["inputs"].items()}
    for handle, _ in inputs.values():
        handle.value = 0
    mismatches, compared = [], 0
    for cycle in range(job["cycles"]):
        await FallingEdge(dut.clk)
        if cycle:     # the outputs after the last rising edge
            for rtl, gates in job["outputs"]:
                a, b = getattr(dut, rtl).value, getattr(dut, gates).value
                compared += 1
                if not (a.is_resolvable and b.is_resolvable and int(a) == int(b)):
                    mismatches.append([cycle, rtl, str(a), str(b)])
        for handle, width in inputs.values():      # enables on about half of the cycles
            handle.value = rng.getrandbits(width)
    with open(os.environ["BSNN_PAIR_RESULT"], "w") as f:
        json.dump({"mismatches": mismatches[:20], "n_mismatches": len(mismatches),
                   "compared": compared}, f)
