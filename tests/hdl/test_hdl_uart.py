"""UARTRx / UARTTx: 8N1 framing against a bit-level model, loopback with stalls, errors."""
import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring

from bsnn.hdl.uart import BRIDGES, UARTRx, UARTTx, receiver_tolerance, sample_point, uart_divisor

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


@pytest.mark.parametrize("divisor", [4, 7, 11, 30])
def test_rx_samples_each_bit_at_its_sample_point(divisor):
    """The line of data bit k goes high ``c`` cycles after the start edge: the bit reads 1 for
    every ``c`` up to ``k * divisor + sample_point`` and 0 after (the sample is at that cycle)."""
    def bit_reads_one(k, c):
        dut, got = UARTRx(divisor), []

        async def drive(ctx):
            ctx.set(dut.rx, 1)
            await ctx.tick().repeat(3)
            for t in range(11 * divisor):
                ctx.set(dut.rx, int(c <= t < (k + 1) * divisor or t >= 9 * divisor))
                if ctx.get(dut.o_data.valid):
                    got.append(ctx.get(dut.o_data.payload))
                await ctx.tick()
        run_sim(dut, drive, deadline_cycles=20 * divisor)
        return bool(got) and bool(got[0] >> (k - 1) & 1)

    for k in (1, 5, 8):
        point = k * divisor + sample_point(divisor)
        assert bit_reads_one(k, point) and not bit_reads_one(k, point + 1)


def _frames_at_bit_time(divisor, bit_time, data, seed):
    """``data`` sent back to back (a random fraction of a cycle between frames) with bit time
    ``bit_time`` cycles, each frame at a random phase to the clock: the bytes and frame errors."""
    rng = np.random.default_rng(seed)
    dut, got = UARTRx(divisor), []

    async def drive(ctx):
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(3)
        for b in data:
            await ctx.delay(float(rng.uniform(0, 1)) * 1e-6)
            for bit in frame_bits(b):
                ctx.set(dut.rx, bit)
                await ctx.delay(bit_time * 1e-6)
        await ctx.tick().repeat(3 * divisor)

    async def collect(ctx):
        ctx.set(dut.o_data.ready, 1)
        for _ in range(int(len(data) * (10 * bit_time + 1)) + 6 * divisor):
            await ctx.tick()
            if ctx.get(dut.o_data.valid):
                got.append(ctx.get(dut.o_data.payload))
        errors.append(ctx.get(dut.frame_error))

    errors = []
    run_sim(dut, drive, collect, deadline_cycles=100_000)
    return got, errors[0]


@pytest.mark.parametrize("divisor", [4, 6, 11, 30])
def test_rx_tolerates_its_budget_and_fails_beyond(divisor):
    """Senders off by 97 % of :func:`receiver_tolerance`, faster and slower, at random phases,
    frames back to back: every byte decodes. Beyond the sample point's reach (a slow sender
    whose stop bit starts after the stop sample, a fast one whose next start bit arrives
    before it), frames are refused: the tolerance is the receiver's, not a guess."""
    rng = np.random.default_rng(divisor)
    data = [0x00, 0xFF, 0x55, 0xAA] + [int(x) for x in rng.integers(0, 256, 12)]
    tol = receiver_tolerance(divisor)
    for sign in (1, -1):
        got, errors = _frames_at_bit_time(divisor, divisor * (1 + sign * 0.97 * tol), data, divisor)
        assert got == data and not errors
    s = sample_point(divisor)
    slow = divisor * (1 + 1.15 * (s + 1) / (9 * divisor))
    got, errors = _frames_at_bit_time(divisor, slow, [0x00] * 4, 1)
    assert errors and got == []
    fast = divisor * (1 - 1.15 * (divisor - s + 1) / (10 * divisor))
    got, errors = _frames_at_bit_time(divisor, fast, [0xFF] * 4, 2)
    assert errors and len(got) < 4


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
    # The budget is half the receiver's tolerance at the divisor: 33 MHz makes 3 Mbaud exactly
    # (11 cycles per bit) but 4 Mbaud only as 4.125 (8 cycles: 3.1 % off, 1.9 % allowed).
    assert uart_divisor(33e6, 3_000_000) == 11
    with pytest.raises(ValueError, match=r"3\.1 % off 4000000 \(the budget at 8 cycles per bit is 1\.9 %\)"):
        uart_divisor(33e6, 4_000_000)
    # ... and against the rate the far end's bridge actually makes
    assert BRIDGES["FT231X"].rate(2_200_000) == 2_000_000       # no FT231X rate between 2 and 3 M
    with pytest.raises(ValueError, match="off 2000000"):
        uart_divisor(90e6, 2_200_000, BRIDGES["FT231X"].rate(2_200_000))


def test_bridge_rates_follow_the_ftdi_divisors():
    ft = BRIDGES["FT2232H"]
    assert [ft.rate(b) for b in (12_000_000, 8_000_000, 6_000_000, 3_000_000)] == \
        [12e6, 8e6, 6e6, 3e6]
    assert ft.rate(115200) == 12e6 / (833 / 8)                  # 104.125: nearest eighth
    assert BRIDGES["FT231X"].rate(3_000_000) == 3e6 and BRIDGES["FT231X"].max_baud == 3_000_000
    with pytest.raises(ValueError, match="divisor must be an integer >= 4"):
        UARTRx(3)
