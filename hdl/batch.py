"""Batch unit: N images' input events held on chip, run back to back, their classes kept."""
import enum

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .config import CYCLES_WIDTH, STEP_WIDTH, CoreGeometry
from .layouts import ErrorBit, InputEventLayout, ResultKind, ResultLayout
from .slice import RegisterSlice

__all__ = ["BatchUnit", "BatchStatus", "BatchRunLayout", "BatchClassLayout", "BatchDoneLayout",
           "COUNT_BYTES", "MIN_WORDS", "MAX_WORDS", "batch_words_check", "batch_log2",
           "IMAGE_OVERHEAD"]

#: Bytes of the image count in BATCH_RUN and BATCH_DONE (docs/uart-protocol.md).
COUNT_BYTES = 2
#: Sizes of the batch memory a build may have (a power of two; 0: no batch hardware). At most
#: as many images as words (each image is at least its T end-of-step markers), counted in
#: ``COUNT_BYTES``.
MIN_WORDS = 16
MAX_WORDS = 1 << (8 * COUNT_BYTES - 1)
#: Cycles of the batch count per image beyond the core's own ``cycles`` (no stall): the unit's
#: start pulse passes the board top's start register (1), the core's ``done`` follows the
#: CLASS record's acceptance (1), the unit starts the next image the cycle after ``done`` (1).
IMAGE_OVERHEAD = 3


def batch_words_check(words: int) -> int:
    """``words`` if it is a valid batch memory size (0, or a power of two from ``MIN_WORDS`` to
    ``MAX_WORDS``), else a ValueError."""
    if isinstance(words, bool) or not isinstance(words, int):
        raise ValueError(f"batch_event_words: an integer, got {words!r}")
    if words != 0 and (words < MIN_WORDS or words > MAX_WORDS or words & (words - 1)):
        raise ValueError(f"batch_event_words: 0 (no batch hardware) or a power of two from "
                         f"{MIN_WORDS} to {MAX_WORDS}, got {words}")
    return words


def batch_log2(words: int) -> int:
    """The INFO reply's batch byte: log2 of the batch memory's words, 0 without one."""
    return batch_words_check(words).bit_length() - 1 if words else 0


class BatchStatus(enum.IntFlag):
    """Status byte of BATCH_DONE."""
    OVERFLOW = 1    # more words were loaded than the memory holds: refused, nothing ran
    BAD_COUNT = 2   # N = 0 or N > the memory's words: refused, nothing ran
    SHORT = 4       # the words ran out before N images of T steps: empty steps were added
    LONG = 8        # words were left over after N images (not run)


class BatchRunLayout(data.StructLayout):
    """BATCH_RUN's argument: the number of images."""
    def __init__(self):
        super().__init__({"count": 8 * COUNT_BYTES})


class BatchClassLayout(data.StructLayout):
    """One image's outcome, as the batch memory keeps it (the width of an input event word)."""
    def __init__(self, idx_w):
        super().__init__({"index": idx_w, "error": ErrorBit.WIDTH})


class BatchDoneLayout(data.StructLayout):
    """BATCH_DONE's payload."""
    def __init__(self):
        super().__init__({"status": 8, "count": 8 * COUNT_BYTES,
                          "cycles": CYCLES_WIDTH})


class BatchUnit(wiring.Component):
    """Holds the input event words of a batch of images in one memory (block RAM), runs the
    images through the core back to back without the host, and returns each image's CLASS
    index and error flags and the batch's cycle count (docs/uart-protocol.md, "Batch mode").

    Images are delimited by the core's own delimiter: each is ``T`` end-of-step markers (the
    core's ``time_steps``). The unit counts the markers it hands to the core and holds the
    stream after an image's ``T``-th until the core's ``done``, so no word of the next image
    enters the core's input queue before its start, and the queue is empty when the batch
    ends; if the words run out, the unit supplies the missing markers (status SHORT), so a
    malformed batch never hangs. Image ``k``'s outcome is written over the memory's word ``k``,
    already read by then (images ``0..k`` hold at least ``k + 1`` words, their markers; if the
    words ran out, all were read), so the results need no memory of their own; after the run
    they are read out in order.

    Parameters
    ----------
    geom : CoreGeometry
        The core's build (``idx_w``).
    words : int
        Words of the batch memory (:func:`batch_words_check`; > 0).

    Ports
    -----
    i_word : In(stream.Signature(InputEventLayout))
        A word to append (BATCH_EVENT); ready while no batch runs. Words beyond the memory are
        dropped and refuse the next run (OVERFLOW).
    i_run : In(stream.Signature(BatchRunLayout))
        Run the loaded words as ``count`` images (BATCH_RUN); ready while no batch runs. The
        memory is empty again after the run's BATCH_DONE (or refusal).
    o_events : Out(stream.Signature(InputEventLayout))
        To the core's ``i_events`` while ``active``.
    i_results : In(stream.Signature(ResultLayout))
        The core's ``o_results`` while ``active``: always ready; CLASS records are kept,
        the others dropped.
    start : Out(1)
        One-cycle pulse per image (to the core's start, through a register).
    done : In(1); error : In(ErrorBit.WIDTH); time_steps : In(STEP_WIDTH)
        From the core.
    active : Out(1)
        The unit owns the core's event and result streams (from the run's acceptance to the
        last image's ``done``).
    o_class : Out(stream.Signature(BatchClassLayout))
        After a run: the ``count`` images' outcomes, in order.
    o_done : Out(stream.Signature(BatchDoneLayout))
        After the outcomes (or at once for a refused run): status, images run, and the cycles
        from the first image's start pulse to the last image's ``done`` (both counted).

    Latency and throughput: a word is written in the cycle it is taken (one per cycle). Events
    leave at one per cycle from the memory's registered read port, an output register and a
    register slice (payload and valid from flip-flops): the core never waits on the unit, so a batch of images takes the
    sum of their no-stall cycles (``bsnn.hdl.generate.cycle_estimate``, trace off) plus
    ``IMAGE_OVERHEAD`` per image. Outcomes leave at one per cycle.
    """
    def __init__(self, geom: CoreGeometry, words: int):
        if not batch_words_check(words):
            raise ValueError("BatchUnit: a batch memory of 0 words (no batch hardware)")
        self.geom = geom
        self.words = words
        event = InputEventLayout(geom.idx_w)
        assert BatchClassLayout(geom.idx_w).size == event.size
        super().__init__({
            "i_word": In(stream.Signature(event)),
            "i_run": In(stream.Signature(BatchRunLayout())),
            "o_events": Out(stream.Signature(event)),
            "i_results": In(stream.Signature(ResultLayout(geom.idx_w, geom.v_width))),
            "start": Out(1),
            "done": In(1),
            "error": In(ErrorBit.WIDTH),
            "time_steps": In(STEP_WIDTH),
            "active": Out(1),
            "o_class": Out(stream.Signature(BatchClassLayout(geom.idx_w))),
            "o_done": Out(stream.Signature(BatchDoneLayout())),
        })

    def elaborate(self, platform):
        g, depth = self.geom, self.words
        event = InputEventLayout(g.idx_w)
        m = Module()
        m.submodules.mem = mem = Memory(shape=event.size, depth=depth, init=[])
        wr = mem.write_port()
        rd = mem.read_port()

        loaded = Signal(range(depth + 1))   # words in the memory
        overflow = Signal()
        count = Signal(8 * COUNT_BYTES)     # images of the run
        image = Signal(range(depth + 1))    # images finished
        launch = Signal()                   # start the next image (a pulse)
        markers = Signal(STEP_WIDTH)        # end-of-step markers still to send for this image
        sending = Signal()                  # markers != 0 (a register: timing)
        status = Signal(8)               # BatchStatus
        cycles = Signal(CYCLES_WIDTH)
        klass = Signal(g.idx_w)             # the CLASS index of the running image

        # ---- reader: two stages, the read port's data register and the output register ----
        # (timing: the block RAM's unregistered output, 5.8 ns on the ECP5, ends at flip-flops
        # next to it, not after the multiplexers behind it)
        ptr = Signal(range(depth + 1))      # next address to read
        limit = Signal(range(depth + 1))    # words to read (loaded, or count for the outcomes)
        fetched = Signal()                  # the read port's data is a word (stage 1)
        held = Signal()                     # `data` is a word not yet sent (stage 2)
        data = Signal(event.size)
        more = Signal()                     # ptr != limit (a register: timing)
        taken = Signal()                    # the word (or padding marker) offered is taken
        m.d.comb += [rd.addr.eq(ptr), rd.en.eq(~held | taken)]
        with m.If(rd.en):
            m.d.sync += [held.eq(fetched), data.eq(rd.data), fetched.eq(more)]
            with m.If(more):
                m.d.sync += [ptr.eq(ptr + 1), more.eq(ptr + 1 != limit)]
        in_flight = fetched | more          # words still to come through the stages

        word = event(data)
        marker = event.const({"end_of_step": 1})
        # Events leave through a register slice (timing: the block RAM's unregistered output,
        # 5.8 ns on the ECP5, went through the event multiplexer into the core's index check).
        # It holds at most the current image's last words: the next image's wait for `done`.
        m.submodules.outq = outq = RegisterSlice(event)
        wiring.connect(m, outq.o, wiring.flipped(self.o_events))

        # ---- loading ----
        m.d.comb += [wr.addr.eq(loaded), wr.data.eq(self.i_word.payload)]

        with m.FSM():
            with m.State("LOAD"):
                m.d.comb += [self.i_word.ready.eq(1), self.i_run.ready.eq(1)]
                with m.If(self.i_word.valid):
                    with m.If(loaded == depth):
                        m.d.sync += overflow.eq(1)
                    with m.Else():
                        m.d.comb += wr.en.eq(1)
                        m.d.sync += loaded.eq(loaded + 1)
                with m.Elif(self.i_run.valid):
                    n = self.i_run.payload.count
                    bad = (n == 0) | (n > depth)
                    m.d.sync += [status.eq(Cat(overflow, bad)), count.eq(n), image.eq(0),
                                 cycles.eq(0), ptr.eq(0), limit.eq(loaded), more.eq(loaded != 0),
                                 held.eq(0), fetched.eq(0)]
                    with m.If(overflow | bad):
                        m.d.sync += count.eq(0)
                        m.next = "SUMMARY"
                    with m.Else():
                        m.d.sync += [launch.eq(1), markers.eq(self.time_steps),
                                     sending.eq(self.time_steps != 0)]
                        m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += [self.active.eq(1), self.start.eq(launch),
                             self.i_results.ready.eq(1)]
                m.d.sync += [launch.eq(0), cycles.eq(cycles + 1)]
                # Words while the image needs markers; padding markers once they run out.
                out = outq.i
                m.d.comb += [out.valid.eq(sending & (held | ~in_flight)),
                             out.payload.eq(Mux(held, word, marker)),
                             taken.eq(out.valid & out.ready)]
                with m.If(taken):
                    with m.If(~held):
                        m.d.sync += status.eq(status | int(BatchStatus.SHORT))
                    with m.If(~held | word.end_of_step):
                        m.d.sync += [markers.eq(markers - 1), sending.eq(markers != 1)]
                res = self.i_results
                with m.If(res.valid & (res.payload.kind == ResultKind.CLASS)):
                    m.d.sync += klass.eq(res.payload.index)
                with m.If(self.done):
                    m.d.comb += [wr.en.eq(1), wr.addr.eq(image),
                                 wr.data.eq(Cat(klass, self.error))]
                    m.d.sync += image.eq(image + 1)
                    with m.If(image + 1 == count):
                        with m.If(held | in_flight):
                            m.d.sync += status.eq(status | int(BatchStatus.LONG))
                        m.d.sync += [ptr.eq(0), limit.eq(count), more.eq(1), held.eq(0),
                                     fetched.eq(0)]
                        m.next = "OUTCOMES"
                    with m.Else():
                        m.d.sync += [launch.eq(1), markers.eq(self.time_steps),
                                     sending.eq(self.time_steps != 0)]
            with m.State("OUTCOMES"):
                m.d.comb += [self.o_class.valid.eq(held), self.o_class.payload.eq(data),
                             taken.eq(self.o_class.valid & self.o_class.ready)]
                with m.If(~held & ~in_flight):
                    m.next = "SUMMARY"
            with m.State("SUMMARY"):
                m.d.comb += [self.o_done.valid.eq(1),
                             self.o_done.payload.status.eq(status),
                             self.o_done.payload.count.eq(count),
                             self.o_done.payload.cycles.eq(cycles)]
                with m.If(self.o_done.ready):
                    m.d.sync += [loaded.eq(0), overflow.eq(0), ptr.eq(0), limit.eq(0), more.eq(0)]
                    m.next = "LOAD"
        # (in LOAD the reader idles: ptr == limit, nothing is read)
        # Timing: the slice input's valid is flip-flops and a padding flag (``sending``,
        # ``held``, ``fetched``, ``more``), the read enable one gate more with the slice's ready.
        return m
