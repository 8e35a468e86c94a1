"""UARTRx / UARTTx: 8N1 framing against a bit-level model, loopback with stalls, errors."""
import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring

from bsnn.hdl.uart import UARTRx, UARTTx, uart_divisor

from hdl_testutil import run_sim, stream_get, stream_put


def frame_bits(byte):
    return [0] + [(byte >> i) & 1 for i in range(8)] + [1]


@pytest.mark.parametrize("divisor", [4, 7, 16])
def test_tx_frames_match_8n1(divisor):
    rng = np.random.default_rng(divisor)
    data = [int(x) for x in rng.integers(0, 256, 12)] + [0x00, 0xFF, 0x55]
    dut = UARTTx(divisor)
    line = []

    async def feed(ctx):
        await stream_put(ctx, dut.i_data, data, rng, p_valid=0.5)

    async def sample(ctx):
        for _ in range(divisor * 11 * (len(data) + 2) * 3):
            _, _, tx = await ctx.tick().sample(dut.tx)
            line.append(tx)

    run_sim(dut, feed, sample, deadline_cycles=1_000_000)
    # Decode the line like a receiver: find each falling edge, sample every bit at its middle,
    # and check that every bit lasts exactly `divisor` cycles.
    got, i = [], 0
    while i < len(line):
        if line[i] == 0 and (i == 0 or line[i - 1] == 1):
            bits = [line[i + k * divisor + divisor // 2] for k in range(10)]
            for k in range(9):       # start and data bits hold for exactly `divisor` cycles
                assert len(set(line[i + k * divisor:i + (k + 1) * divisor])) == 1
            assert bits[0] == 0 and bits[9] == 1
            got.append(sum(b << n for n, b in enumerate(bits[1:9])))
            i += 10 * divisor - 1
        else:
            i += 1
    assert got == data


@pytest.mark.parametrize("divisor,skew", [(8, 1.0), (16, 1.03), (16, 0.97), (5, 1.0)])
def test_rx_decodes_bytes_with_rate_skew(divisor, skew):
    """Frames sent at divisor * skew cycles per bit (a 3 % baud mismatch is tolerated)."""
    rng = np.random.default_rng(int(divisor * 100 * skew))
    data = [int(x) for x in rng.integers(0, 256, 10)] + [0x00, 0xFF]
    dut = UARTRx(divisor)
    got = []

    async def drive(ctx):
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(5)
        for b in data:
            bits = frame_bits(b)

            for k, bit in enumerate(bits):
                ctx.set(dut.rx, bit)
                n = int(round((k + 1) * divisor * skew)) - int(round(k * divisor * skew))
                await ctx.tick().repeat(n)
            await ctx.tick().repeat(int(rng.integers(1, 2 * divisor)))   # idle gap

    async def collect(ctx):
        await stream_get(ctx, dut.o_data, got, count=len(data), rng=rng, p_ready=0.9)

    run_sim(dut, drive, collect, deadline_cycles=200_000)
    assert got == data


def test_rx_frame_error_and_overrun():
    divisor = 6
    dut = UARTRx(divisor)

    async def bench(ctx):
        ctx.set(dut.rx, 1)
        ctx.set(dut.o_data.ready, 0)
        await ctx.tick().repeat(4)
        # A frame with a low stop bit: dropped, frame_error set.
        for bit in frame_bits(0x3C)[:9] + [0, 0]:
            ctx.set(dut.rx, bit)
            await ctx.tick().repeat(divisor)
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(3 * divisor)
        assert ctx.get(dut.frame_error) == 1
        assert ctx.get(dut.o_data.valid) == 0
        # Two good frames without a reader: the second replaces the first, overrun set.
        for b in (0x11, 0x22):
            for bit in frame_bits(b):
                ctx.set(dut.rx, bit)
                await ctx.tick().repeat(divisor)
        await ctx.tick().repeat(2 * divisor)
        assert ctx.get(dut.overrun) == 1
        assert ctx.get(dut.o_data.valid) == 1 and ctx.get(dut.o_data.payload) == 0x22

    run_sim(dut, bench, deadline_cycles=10_000)


class Loopback(wiring.Component):
    def __init__(self, divisor):
        self.tx = UARTTx(divisor)
        self.rx = UARTRx(divisor)
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.tx, m.submodules.rx = self.tx, self.rx
        m.d.comb += self.rx.rx.eq(self.tx.tx)
        return m


def test_loopback_with_stalls():
    rng = np.random.default_rng(9)
    data = [int(x) for x in rng.integers(0, 256, 40)]
    dut = Loopback(5)
    got = []

    async def feed(ctx):
        await stream_put(ctx, dut.tx.i_data, data, rng, p_valid=0.3)

    async def collect(ctx):
        await stream_get(ctx, dut.rx.o_data, got, count=len(data), rng=rng, p_ready=0.5)

    run_sim(dut, feed, collect, deadline_cycles=100_000)
    assert got == data
    

def test_divisor_checks():
    assert uart_divisor(12e6, 115200) == 104
    assert uart_divisor(25e6, 115200) == 217
    with pytest.raises(ValueError, match="too slow"):
        uart_divisor(300e3, 115200)
    with pytest.raises(ValueError, match="off 1000000"):
        uart_divisor(5.5e6, 1_000_000)
    with pytest.raises(ValueError, match="divisor must be an integer >= 4"):
        UARTRx(3)
