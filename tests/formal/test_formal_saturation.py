"""Formal checks of the neuron's arithmetic helpers for every input (not samples): saturation
clamps exactly (semantics.md: saturate, never wrap), and the leak is a floor division by 2^k."""
import pytest
from amaranth.asserts import AnySeq
from amaranth.hdl import Assert, Elaboratable, Module, Mux, Signal, signed

from bsnn.hdl.neuron import leak, leak_amount, saturate
from bsnn.sim.formal import prove
from tests.formal.test_formal_streams import _require


class SaturationSpec(Elaboratable):
    def __init__(self, width, extra):
        self.width, self.extra = width, extra

    def elaborate(self, platform):
        m = Module()
        W = self.width
        x = Signal(signed(W + self.extra))
        m.d.comb += x.eq(AnySeq(signed(W + self.extra)))
        out = saturate(m, x, W, "out")
        hi, lo = (1 << (W - 1)) - 1, -(1 << (W - 1))
        m.d.comb += [Assert((out >= lo) & (out <= hi)),
                     Assert(((x > hi) & (out == hi)) | ((x < lo) & (out == lo))
                            | ((x >= lo) & (x <= hi) & (out == x)))]
        return m


class LeakSpec(Elaboratable):
    def __init__(self, width):
        self.width = width

    def elaborate(self, platform):
        m = Module()
        W = self.width
        x = Signal(signed(W))
        shift = Signal(6)                   # the LAYER_MODE field: any value, even >= W
        m.d.comb += [x.eq(AnySeq(signed(W))), shift.eq(AnySeq(shift.shape()))]
        # As the neuron unit drives it: the clamped amount, and "on" for a non-zero shift.
        out = leak(m, x, leak_amount(shift, W), shift != 0, "out")
        wide_out = Signal(signed(2 * W + 2))
        m.d.comb += wide_out.eq(out)
        with m.If(shift == 0):
            m.d.comb += Assert(out == 0)
        with m.Elif(shift < W):
            # floor(x / 2^k): out * 2^k <= x < (out + 1) * 2^k
            m.d.comb += [Assert((wide_out << shift) <= x), Assert(x < ((wide_out + 1) << shift))]
        with m.Else():
            m.d.comb += Assert(out == Mux(x < 0, -1, 0))    # floor(x / 2^k) for 2^k > |x|
        return m


@pytest.mark.parametrize("width,extra", [(2, 3), (5, 4), (16, 3)])
def test_saturation_is_an_exact_clamp(tmp_path, width, extra):
    _require()
    ok, log = prove(SaturationSpec(width, extra), [], tmp_path, depth=1)
    assert ok, log


@pytest.mark.parametrize("width", [2, 6, 16])
def test_leak_is_floor_division(tmp_path, width):
    _require()
    ok, log = prove(LeakSpec(width), [], tmp_path, depth=1)
    assert ok, log
