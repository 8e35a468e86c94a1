"""cocotb test of the Verilog SPI flash model (sim/spi_flash_model.v) against the Python one
(:class:`bsnn.sim.spi_flash.SPIFlashModel`), tests/sim/test_spi_flash_model.py: the same random
SPI transactions (release from power-down, reads at random addresses, power-down, unknown
opcodes, commands while asleep, clocks too fast and chip selects too short) drive both, and
CIPO is compared after every pin change; the commands and violations go to the result."""
import json
import os
import random

import cocotb
from cocotb.triggers import Timer
from cocotb.utils import get_sim_time

from bsnn.sim.spi_flash import SPIFlashModel

OPCODES = (0xAB, 0xAB, 0x03, 0x03, 0x03, 0x03, 0xB9, 0x9F)


@cocotb.test()
async def same_bits_as_the_python_model(dut):
    with open(os.environ["BSNN_FLASH_JOB"]) as f:
        job = json.load(f)
    rng = random.Random(job["seed"])
    image, base = bytes.fromhex(job["image"]), job["offset"]
    py = SPIFlashModel.with_image(image, base)
    mismatches = []

    def now():
        return get_sim_time("ns")

    async def pin(name, value, wait_ns):
        getattr(dut, name).value = value
        await Timer(1, unit="ps")                   # the Verilog model reacts to the change
        t = now()
        if name == "cs_n":
            py.set_cs_n(value, t)
        elif name == "sck":
            py.set_sck(value, int(dut.copi.value), t)
        if int(dut.cipo.value) != py.cipo and len(mismatches) < 20:
            mismatches.append(f"{t:.3f} ns after {name}={value}: cipo {int(dut.cipo.value)}, "
                              f"Python model {py.cipo}")
        await Timer(max(wait_ns - 0.001, 0.001), unit="ns")

    dut.cs_n.value, dut.sck.value, dut.copi.value = 1, 0, 0
    await Timer(100, unit="ns")
    for _ in range(job["transactions"]):
        fast = rng.random() < 0.15                  # some transactions break the timing
        half = rng.choice([3, 5, 9]) if fast else rng.choice([10, 12, 25])
        await pin("cs_n", 0, rng.choice([2, 10]) if fast else 10)
        opcode = rng.choice(OPCODES)
        bits = [(opcode >> (7 - i)) & 1 for i in range(8)]
        if opcode == 0x03:
            address = base + rng.randrange(-4, len(image) + 4)
            bits += [(address >> (23 - i)) & 1 for i in range(24)] + [0] * (8 * rng.randrange(1, 12))
        for bit in bits:
            dut.copi.value = bit
            await pin("sck", 1, half)
            await pin("sck", 0, half)
        await pin("cs_n", 1, rng.choice([4, 9, 11, 20, 200, 4000]))
    result = {"mismatches": mismatches, "violations": py.violations, "commands": py.commands,
              "bytes_read": py.bytes_read}
    with open(os.environ["BSNN_FLASH_RESULT"], "w") as f:
        json.dump(result, f)
