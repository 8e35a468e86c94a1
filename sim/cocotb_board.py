"""cocotb test of a board top (bsnn.hdl.board.BoardTop) through its UART pins only.

The job (JSON, ``BSNN_BOARD_JOB``) names the build key, the UART divisor, optionally the log
file of the Verilog SPI flash model on the board top's ``flash_*`` pins (the toplevel is then
the bench of ``sim/spi_flash.py:flash_bench_verilog``, the image given to the model as a
plusarg; the board top's loader boots from it), config writes to load first, self-tests for
the host to run (golden vectors: ``steps`` and ``signature``), the samples, and batches
(``batches``: each ``{"images": [...]}`` run with ``BoardHost.run_batch``, or with ``"count"``
loaded and run as given, unchecked, to show the device's refusals);
:class:`bsnn.sim.board_host.BoardHost` speaks the protocol of
docs/uart-protocol.md through :class:`UARTPins`, a bit-level UART driver and receiver on the
``rx`` / ``tx`` pins. Every sample's records, cycles and error flags go to ``BSNN_BOARD_RESULT``;
the comparison with the golden model happens in the pytest (tests/sim/test_board_uart.py).
"""
from __future__ import annotations

import json
import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Event, FallingEdge, RisingEdge, SimTimeoutError, with_timeout
from cocotb.utils import get_sim_time

from bsnn.sim.board_host import BoardHost
from bsnn.sim.spi_flash import read_flash_log

CLOCK_PERIOD_NS = 10


class UARTPins:
    """A byte stream over the board top's UART pins: ``write`` shifts 8N1 frames into ``rx``;
    a receiver task decodes ``tx`` (sampling mid-bit) into a buffer that ``read`` consumes."""
    def __init__(self, dut, divisor: int, timeout_cycles: int):
        self.dut, self.div, self.timeout = dut, divisor, timeout_cycles
        self.buf = bytearray()
        self.frame_errors = 0
        self.received = Event()        # a byte arrived (read waits on it, not polling)
        dut.rx.value = 1
        cocotb.start_soon(self._receive())

    async def write(self, data: bytes) -> None:
        for byte in data:
            for bit in [0] + [(byte >> i) & 1 for i in range(8)] + [1]:
                self.dut.rx.value = bit
                await ClockCycles(self.dut.clk, self.div)

    async def _receive(self):
        dut, div = self.dut, self.div
        while True:
            # One callback per start bit (not one per idle clock cycle).
            if int(dut.tx.value) != 0:
                await FallingEdge(dut.tx)
            await RisingEdge(dut.clk)
            await ClockCycles(dut.clk, div // 2)
            if int(dut.tx.value) != 0:
                continue                      # a glitch
            byte = 0
            for i in range(8):
                await ClockCycles(dut.clk, div)
                byte |= int(dut.tx.value) << i
            await ClockCycles(dut.clk, div)
            if int(dut.tx.value) != 1:
                self.frame_errors += 1
            self.buf.append(byte)
            self.received.set()

    async def read(self, n: int) -> bytes:
        while len(self.buf) < n:
            self.received.clear()
            try:
                await with_timeout(self.received.wait(), self.timeout * CLOCK_PERIOD_NS, "ns")
            except SimTimeoutError:
                raise TimeoutError(f"uart: no byte from the board top for {self.timeout} cycles")
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


@cocotb.test()
async def run_board_job(dut):
    with open(os.environ["BSNN_BOARD_JOB"]) as f:
        job = json.load(f)
    cocotb.start_soon(Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns").start())
    flash = job.get("flash")
    dut.rst.value = 1
    dut.rx.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 3)
    link = UARTPins(dut, job["divisor"], job.get("timeout_cycles", 2_000_000))
    host = BoardHost(link, job["build_key"])
    out = {}
    if flash is not None:
        # Neither LED while the loader runs; BOOT waits in the receive FIFO until it has ended.
        out["boot_leds_loading"] = [int(dut.boot_ok.value), int(dut.boot_fail.value)]
        out["boot"] = await host.boot()
        out["boot_leds"] = [int(dut.boot_ok.value), int(dut.boot_fail.value)]
        out["boot_cycles"] = int(get_sim_time("ns") // CLOCK_PERIOD_NS)
        # The image's golden vector ran right after the load; its frames came before BOOT's.
        out["self_test"] = host.self_test
        out["self_test_records"] = host.self_test_result and host.self_test_result.records
    out["info"] = await host.info()
    if job.get("config_writes"):
        await host.configure([tuple(w) for w in job["config_writes"]])
    # Self-tests run by the host: EXPECT, the inference, then the BOOT reply's verdict.
    out["host_self_tests"] = []
    for test in job.get("self_tests", []):
        status, res = await host.self_test_run(test["steps"], test["signature"])
        out["host_self_tests"].append({"status": status, "records": res.records,
                                       "leds": [int(dut.boot_ok.value), int(dut.boot_fail.value)]})
    samples = []
    for steps in job["samples"]:
        res = await host.infer(steps)
        samples.append({"records": res.records, "cycles": res.cycles, "error": res.error})
    out["samples"] = samples
    out["batches"] = []
    for batch in job.get("batches", []):
        images = [[[tuple(e) for e in step] for step in steps] for steps in batch["images"]]
        if "count" in batch:
            await host.batch_load(images)
            res = await host.batch_run(batch["count"])
        else:
            res = await host.run_batch(images)
        out["batches"].append({"classes": res.classes, "errors": res.errors,
                               "cycles": res.cycles, "status": res.status, "count": res.count})
    if job.get("batches"):
        # an ordinary inference after the batches (the core's input queue was left empty)
        res = await host.infer(job["samples"][0])
        out["after_batches"] = {"records": res.records, "cycles": res.cycles, "error": res.error}
    out["status"] = await host.status()
    out["uart_frame_errors"] = link.frame_errors
    if flash is not None:
        out["flash"] = read_flash_log(flash["log"])
    with open(os.environ["BSNN_BOARD_RESULT"], "w") as f:
        json.dump(out, f)
