"""Register slice: a stream stage whose every output (and its input's ready) is a flip-flop."""
from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["RegisterSlice"]


class RegisterSlice(wiring.Component):
    """A two-entry stream stage that cuts every combinational path through it.

    An output register holds the item offered on ``o``; a second ("skid") register catches the
    item accepted while the output register is held. ``i.ready`` is the skid register's
    emptiness, so neither side's handshake logic reaches the other.

    Ports
    -----
    i : In(stream.Signature(shape))
        Ready whenever the skid register is empty (from a flip-flop).
    o : Out(stream.Signature(shape))
        Valid and payload from flip-flops.

    Latency 1 cycle (an item accepted in one cycle is offered from the next); throughput one
    item per cycle while ``o.ready`` is high; order preserved.

    ``skid_follows_input``: how the skid register is enabled, the same cycles either way.
    ``True``: it follows the input while it is empty (its wide enable a flip-flop, not the
    downstream ``ready``: the ECP5 parallel core's timing). ``False``: it loads only the item it
    catches (the iCE40, where the first form costs about 230 logic cells of the UP5K MNIST build,
    which then no longer fits). ``None`` (default): ``True`` on an ECP5 platform, else ``False``.
    """
    def __init__(self, shape, *, skid_follows_input=None):
        self._shape = shape
        self._follow = skid_follows_input
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        skid_valid = Signal()
        skid = Signal(self._shape)
        m.d.comb += self.i.ready.eq(~skid_valid)
        follow = self._follow
        if follow is None:
            follow = getattr(platform, "family", None) == "ecp5"
        if follow:
            # The skid register follows the input while it is empty, so its (wide) enable is a
            # flip-flop, not the downstream `ready` (timing); only its flag decides whether the
            # item it holds counts.
            with m.If(~skid_valid):
                m.d.sync += skid.eq(self.i.payload)
        with m.If(self.o.ready | ~self.o.valid):
            # The output register is free: it takes the skid item first, else the input's.
            m.d.sync += [self.o.valid.eq(skid_valid | self.i.valid),
                         self.o.payload.eq(Mux(skid_valid, skid, self.i.payload)),
                         skid_valid.eq(0)]
        with m.Elif(self.i.valid & ~skid_valid):
            m.d.sync += skid_valid.eq(1)
            if not follow:
                m.d.sync += skid.eq(self.i.payload)
        return m
