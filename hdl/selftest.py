"""Built-in self-test: checks one inference's result records against an expected signature.

A flash image may end with a golden vector (hdl/flash_image.py): an EXPECT command carrying the
signature the golden model gives for it, then the inference's START and EVENT commands. The
board top runs it right after the model is loaded; this unit watches the core's result records
and reports whether the board computed what the golden model did (docs/board.md, "Self-test").
A host can run the same check at any time over the UART (EXPECT, then an inference).
"""
from amaranth.hdl import Module, Signal
from amaranth.lib import enum, stream, wiring
from amaranth.lib.wiring import In, Out

from .layouts import ErrorBit, ResultKind, ResultLayout

__all__ = ["SelfTest", "SelfTestStatus", "SIGNATURE_BITS", "signature", "expect_word"]

#: Width of the signature (and of the EXPECT command's argument).
SIGNATURE_BITS = 16


class SelfTestStatus(enum.IntEnum, shape=2):
    """``SelfTest.status``: bits 5:4 of the host link's BOOT reply."""
    NONE = 0       # no self-test since reset
    RUNNING = 1    # armed by EXPECT, the inference has not finished
    PASSED = 2     # the records matched the signature and the core raised no error flag
    FAILED = 3     # another signature, or an error flag


def signature(records) -> int:
    """The signature of an inference's records ``(kind, step, layer, index, value)``: the sum of
    the POTENTIAL records' values and the CLASS record's index, modulo 2**SIGNATURE_BITS.
    SPIKE records do not count (the trace may be on or off)."""
    total = 0
    for kind, _step, _layer, index, value in records:
        if kind == ResultKind.POTENTIAL:
            total += int(value)
        elif kind == ResultKind.CLASS:
            total += int(index)
    return total % (1 << SIGNATURE_BITS)


def expect_word(sig: int) -> int:
    """The EXPECT command's argument for signature ``sig``: its negation, so that the unit only
    adds and checks for zero."""
    return -sig % (1 << SIGNATURE_BITS)


class SelfTest(wiring.Component):
    """Accumulates the result records of one inference and compares them with a signature.

    Ports
    -----
    i_expect : In(stream.Signature(SIGNATURE_BITS))
        Arms the check: the payload is :func:`expect_word` of the expected signature. Always
        ready; an EXPECT during an inference restarts the sum from there.
    result : In(ResultLayout); result_taken : In(1)
        The core's ``o_results`` payload, and its handshake (valid and ready): a monitor, it
        never stalls the stream.
    done : In(1); error : In(ErrorBit.WIDTH)
        The core's end-of-inference pulse and its sticky error flags.
    status : Out(SelfTestStatus)
        RUNNING from EXPECT until ``done``, then PASSED or FAILED until the next EXPECT.

    Latency: the inputs are registered first (timing: the core's result handshake does not
    reach the adder), the last record is added the cycle after, and the verdict is in
    ``status`` 3 cycles after ``done`` (a record taken in the ``done`` cycle still counts). One
    record per cycle.
    """
    def __init__(self, idx_w: int, v_width: int):
        super().__init__({
            "i_expect": In(stream.Signature(SIGNATURE_BITS)),
            "result": In(ResultLayout(idx_w, v_width)),
            "result_taken": In(1),
            "done": In(1),
            "error": In(ErrorBit.WIDTH),
            "status": Out(SelfTestStatus),
        })

    def elaborate(self, platform):
        m = Module()
        # Stage 1: what the record taken now adds (0 for none and for SPIKE records), the end.
        term = Signal(SIGNATURE_BITS)
        ended = Signal()
        error = Signal()
        r = self.result
        with m.If(self.result_taken & (r.kind == ResultKind.POTENTIAL)):
            m.d.sync += term.eq(r.value)
        with m.Elif(self.result_taken & (r.kind == ResultKind.CLASS)):
            m.d.sync += term.eq(r.index)
        with m.Else():
            m.d.sync += term.eq(0)
        m.d.sync += [ended.eq(self.done), error.eq(self.error != 0)]
        # Stage 2: the sum; the verdict once the last term is in it (stage 3).
        acc = Signal(SIGNATURE_BITS)
        judge = Signal()
        error_at_end = Signal()
        m.d.comb += self.i_expect.ready.eq(1)
        with m.If(self.i_expect.valid):
            m.d.sync += [acc.eq(self.i_expect.payload), judge.eq(0),
                         self.status.eq(SelfTestStatus.RUNNING)]
        with m.Elif(self.status == SelfTestStatus.RUNNING):
            m.d.sync += [acc.eq(acc + term), judge.eq(ended)]
            with m.If(ended):
                m.d.sync += error_at_end.eq(error)
            with m.If(judge):
                with m.If((acc == 0) & ~error_at_end):
                    m.d.sync += self.status.eq(SelfTestStatus.PASSED)
                with m.Else():
                    m.d.sync += self.status.eq(SelfTestStatus.FAILED)
        return m
