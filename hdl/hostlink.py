"""Host link: the framed byte protocol of docs/uart-protocol.md between a byte stream and the core."""
from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import enum, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from .batch import COUNT_BYTES, BatchClassLayout, BatchDoneLayout, BatchRunLayout, batch_log2
from .config import CYCLES_WIDTH, CoreGeometry
from .layouts import ConfigWriteLayout, ErrorBit, InputEventLayout, ResultLayout
from .selftest import SIGNATURE_BITS
from .slice import RegisterSlice

__all__ = ["HostLink", "Opcode", "Reply", "PROTOCOL_VERSION", "RX_FIFO_DEPTH", "HOST_WINDOW",
           "EXPECT_BYTES", "INFO_FIELDS", "BATCH_OPCODES", "BATCH_DONE_BYTES", "frame_sizes",
           "config_frame", "event_frame", "inference_frames", "expect_frame", "batch_frames",
           "batch_run_frame", "link_bytes"]

PROTOCOL_VERSION = 4
#: Bytes the receive FIFO holds (the host keeps at most half of it outstanding).
RX_FIFO_DEPTH = 512
#: Command bytes the host sends between two PINGs (half the receive FIFO; sim/board_host.py).
HOST_WINDOW = RX_FIFO_DEPTH // 2


class Opcode(enum.IntEnum, shape=8):
    """First byte of a host -> device command."""
    CONFIG = 0x01     # target (1 byte), address (A bytes LE), data (D bytes LE)
    EVENT = 0x02      # one InputEventLayout word (K bytes LE)
    START = 0x03      # start an inference (ignored by the core while busy)
    PING = 0x04       # reply PONG once every earlier command has been executed
    INFO = 0x05       # reply INFO (build widths and frame sizes)
    BOOT = 0x06       # reply BOOT (the flash loader's and the self-test's status)
    EXPECT = 0x07     # arm the self-test (hdl/selftest.py): its expect word (2 bytes LE)
    BATCH_EVENT = 0x08  # append one InputEventLayout word (K bytes LE) to the batch memory
    BATCH_RUN = 0x09    # run the batch memory's words as N images (COUNT_BYTES LE)

#: The commands of the batch unit (hdl/batch.py): decoded only by builds that have one.
BATCH_OPCODES = (Opcode.BATCH_EVENT, Opcode.BATCH_RUN)


class Reply(enum.IntEnum, shape=8):
    """First byte of a device -> host frame."""
    RESULT = 0xA1     # one ResultLayout word (R bytes LE)
    DONE = 0xA2       # cycles (4 bytes LE), error (1 byte): after the CLASS record
    PONG = 0xA4       # status (1 byte)
    INFO = 0xA5       # version, idx_w, v_width, cfg_addr_w, cfg_data_w, A, D, K, R, batch (1 byte each)
    BOOT = 0xA6       # boot status (1 byte: bits 3:0 BootStatus, bits 5:4 SelfTestStatus)
    BATCH_CLASS = 0xA7  # one image's BatchClassLayout word (K bytes LE), in image order
    BATCH_DONE = 0xA8   # status (1 byte), images (COUNT_BYTES LE), cycles (4 bytes LE)


def _nbytes(bits):
    return -(-bits // 8)


#: Argument bytes of EXPECT.
EXPECT_BYTES = _nbytes(SIGNATURE_BITS)
#: The INFO reply's fields, one byte each, in order (``batch``: log2 of the batch memory's
#: words, 0 without batch hardware: hdl/batch.py ``batch_log2``).
INFO_FIELDS = ("version", "idx_w", "v_width", "cfg_addr_w", "cfg_data_w", "A", "D", "K", "R",
               "batch")
#: Payload bytes of BATCH_DONE.
BATCH_DONE_BYTES = _nbytes(BatchDoneLayout().size)


def frame_sizes(geom: CoreGeometry) -> dict:
    """Byte counts of the variable-width frame fields of a build."""
    return {"A": _nbytes(geom.cfg_addr_w), "D": _nbytes(geom.cfg_data_w),
            "K": _nbytes(InputEventLayout(geom.idx_w).size),
            "R": _nbytes(ResultLayout(geom.idx_w, geom.v_width).size)}


def config_frame(geom: CoreGeometry, target: int, address: int, data: int) -> bytes:
    """The bytes of one CONFIG command (the host's config writes, and a flash image's payload)."""
    s = frame_sizes(geom)
    return (bytes([Opcode.CONFIG, target]) + address.to_bytes(s["A"], "little")
            + int(data).to_bytes(s["D"], "little"))


def event_frame(geom: CoreGeometry, index: int, polarity: int, end_of_step: bool) -> bytes:
    """The bytes of one EVENT command: an input event, or the end of a time step."""
    word = InputEventLayout(geom.idx_w).const(
        {"index": index, "polarity": polarity, "end_of_step": int(end_of_step)}).as_bits()
    return bytes([Opcode.EVENT]) + word.to_bytes(frame_sizes(geom)["K"], "little")


def inference_frames(geom: CoreGeometry, steps) -> bytes:
    """The commands of one inference as the host sends them: START, then per time step its
    events ``(index, polarity)`` and the end-of-step marker."""
    return b"".join([bytes([Opcode.START])] + _event_frames(geom, steps))


def expect_frame(word: int) -> bytes:
    """The bytes of one EXPECT command (``word``: hdl/selftest.py ``expect_word``)."""
    return bytes([Opcode.EXPECT]) + int(word).to_bytes(EXPECT_BYTES, "little")


def batch_frames(geom: CoreGeometry, images) -> bytes:
    """The BATCH_EVENT commands that load ``images`` (each a list, one per time step, of
    ``(index, polarity)``; every step closed by its end-of-step marker) into the batch memory:
    the EVENT commands of the images' inferences with the batch opcode."""
    return b"".join(bytes([Opcode.BATCH_EVENT]) + f[1:]
                    for steps in images for f in _event_frames(geom, steps))


def _event_frames(geom: CoreGeometry, steps) -> list:
    """The EVENT commands of one inference: per time step its events, then the marker."""
    out = []
    for step in steps:
        out += [event_frame(geom, int(i), int(p), False) for i, p in step]
        out.append(event_frame(geom, 0, 0, True))
    return out


def batch_run_frame(count: int) -> bytes:
    """The bytes of one BATCH_RUN command (``count`` images)."""
    return bytes([Opcode.BATCH_RUN]) + int(count).to_bytes(COUNT_BYTES, "little")


def link_bytes(geom: CoreGeometry, time_steps: int, input_events: float,
               spike_records: float) -> dict:
    """UART bytes of one inference as the host runs it (``BoardHost.infer``): to the device
    START, one EVENT per input event and per end of step, a PING per ``HOST_WINDOW`` command
    bytes; from the device one RESULT per SPIKE record (``spike_records``: 0 with trace off),
    per output neuron (POTENTIAL) and for the CLASS, DONE, and a PONG per PING."""
    sz = frame_sizes(geom)
    commands = 1 + (1 + sz["K"]) * (input_events + time_steps)
    pings = commands / HOST_WINDOW
    to_device = commands + pings
    results = spike_records + geom.sizes[-1] + 1
    from_device = (1 + sz["R"]) * results + (1 + 5) + 2 * pings
    return {"to_device": to_device, "from_device": from_device}


class HostLink(wiring.Component):
    """Decodes host commands from ``i_rx`` into core transactions and sends the core's results,
    completion and replies as frames on ``o_tx`` (docs/uart-protocol.md).

    Parameters
    ----------
    geom : CoreGeometry
        The build of the core (payload widths).
    rx_depth : int
        Bytes of the receive FIFO (commands wait there while the core applies backpressure).

    Ports
    -----
    i_rx : In(stream.Signature(8))
        Bytes from the host (a UART receiver); always ready while the FIFO has room.
    o_tx : Out(stream.Signature(8))
        Bytes to the host.
    o_config, o_events : Out(stream.Signature(...))
        To the core's ``i_config`` and ``i_events``.
    i_results : In(stream.Signature(ResultLayout))
        From the core's ``o_results``.
    start : Out(1)
    busy, done : In(1)
    cycles : In(32)
    error : In(ErrorBit.WIDTH)
    link_status : In(2)
        Sticky receiver errors reported in PONG (bit 0 overrun, bit 1 frame error).
    i_boot : In(stream.Signature(8))
        Command bytes of the flash loader (hdl/flash_loader.py): while ``hold`` is high the
        decoder reads them instead of the receive FIFO, where the host's bytes wait.
    hold : In(1)
    boot_status : In(8)
        Reported in the BOOT reply.
    boot_pending : In(1)
        A BOOT command waits while it is high (the self-test of the flash image is running), so
        that its reply is the outcome.
    o_expect : Out(stream.Signature(SIGNATURE_BITS))
        The argument of an EXPECT command, to the self-test unit (hdl/selftest.py).
    o_batch_word : Out(stream.Signature(InputEventLayout))
    o_batch_run : Out(stream.Signature(BatchRunLayout))
    i_batch_class : In(stream.Signature(BatchClassLayout))
    i_batch_done : In(stream.Signature(BatchDoneLayout))
        With ``batch_words`` only: to and from the batch unit (hdl/batch.py). BATCH_RUN is
        passed on once the core is idle and every earlier EVENT has reached it.

    ``batch_words`` is reported in INFO (log2); 0: no batch unit, the batch opcodes are unknown
    ones, and the link is the same logic as without batch mode (the INFO reply's last byte, 0,
    is shifted out of the transmitter's empty register).
    """
    def __init__(self, geom: CoreGeometry, rx_depth: int = RX_FIFO_DEPTH, batch_words: int = 0):
        self.geom = g = geom
        self.rx_depth = rx_depth
        self.sizes = frame_sizes(g)
        self.batch_words = batch_words
        self.batch_log2 = batch_log2(batch_words)
        batch_ports = {}
        if batch_words:
            batch_ports = {
                "o_batch_word": Out(stream.Signature(InputEventLayout(g.idx_w))),
                "o_batch_run": Out(stream.Signature(BatchRunLayout())),
                "i_batch_class": In(stream.Signature(BatchClassLayout(g.idx_w))),
                "i_batch_done": In(stream.Signature(BatchDoneLayout())),
            }
        super().__init__({
            "i_rx": In(stream.Signature(8)),
            "o_tx": Out(stream.Signature(8)),
            "o_config": Out(stream.Signature(ConfigWriteLayout(g.cfg_addr_w, g.cfg_data_w))),
            "o_events": Out(stream.Signature(InputEventLayout(g.idx_w))),
            "i_results": In(stream.Signature(ResultLayout(g.idx_w, g.v_width))),
            "start": Out(1),
            "busy": In(1),
            "done": In(1),
            "cycles": In(CYCLES_WIDTH),
            "error": In(ErrorBit.WIDTH),
            "link_status": In(2),
            "i_boot": In(stream.Signature(8)),
            "hold": In(1),
            "boot_status": In(8),
            "boot_pending": In(1),
            "o_expect": Out(stream.Signature(SIGNATURE_BITS)),
            **batch_ports,
        })

    def elaborate(self, platform):
        g, sz = self.geom, self.sizes
        A, D, K, R = sz["A"], sz["D"], sz["K"], sz["R"]
        m = Module()
        m.submodules.rxq = rxq = fifo.SyncFIFOBuffered(width=8, depth=self.rx_depth)
        wiring.connect(m, wiring.flipped(self.i_rx), rxq.w_stream)
        # Results enter through a register slice (timing: the core's result handshake ends at
        # its flip-flops, and the transmitter's state does not reach back into the core).
        m.submodules.result_slice = result_slice = RegisterSlice(ResultLayout(g.idx_w, g.v_width))
        wiring.connect(m, wiring.flipped(self.i_results), result_slice.i)
        result = result_slice.o
        # Input events leave through a queue with a registered output (timing: the decoder's
        # state no longer reaches into the core's event handling).
        event_layout = InputEventLayout(g.idx_w)
        m.submodules.eventq = eventq = fifo.SyncFIFOBuffered(width=event_layout.size, depth=4)
        m.d.comb += [self.o_events.valid.eq(eventq.r_stream.valid),
                     self.o_events.payload.eq(eventq.r_stream.payload),
                     eventq.r_stream.ready.eq(self.o_events.ready)]

        # ---- command decoder ----
        # The received bytes pass one more register stage (timing: a block RAM's output does
        # not drive the decoder directly); an opcode is registered one-hot and acted on in the
        # next cycle (no byte compare in front of the decoder's state).
        # While `hold` (a flash boot), the bytes come from the flash loader instead.
        m.submodules.rxreg = rxreg = RegisterSlice(8)
        boot, host = self.i_boot, rxq.r_stream
        m.d.comb += [rxreg.i.valid.eq(Mux(self.hold, boot.valid, host.valid)),
                     rxreg.i.payload.eq(Mux(self.hold, boot.payload, host.payload)),
                     boot.ready.eq(self.hold & rxreg.i.ready),
                     host.ready.eq(~self.hold & rxreg.i.ready)]
        rx = rxreg.o
        batch = bool(self.batch_words)
        max_args = max(1 + A + D, K, EXPECT_BYTES, COUNT_BYTES if batch else 0)
        opcodes = [c for c in Opcode if batch or c not in BATCH_OPCODES]
        op = Signal(len(opcodes))                # the command being received, one-hot
        bit = {code: op[i] for i, code in enumerate(opcodes)}
        op_config, op_event, op_start, op_ping, op_info, op_boot, op_expect = (
            bit[Opcode.CONFIG], bit[Opcode.EVENT], bit[Opcode.START], bit[Opcode.PING],
            bit[Opcode.INFO], bit[Opcode.BOOT], bit[Opcode.EXPECT])
        if batch:
            op_batch_event, op_batch_run = bit[Opcode.BATCH_EVENT], bit[Opcode.BATCH_RUN]
        # Argument bytes shift in from the top: after the n bytes of a command they are the
        # top n bytes, little-endian (no byte-position decoder on the receive path).
        args = Signal(8 * max_args)
        left = Signal(range(max_args + 1))      # argument bytes still to come, minus one
        proto_err = Signal()
        reply_pong = Signal()           # requests to the transmitter, cleared when taken
        reply_info = Signal()
        reply_boot = Signal()
        byte = rx.payload

        def top(n):
            return args[8 * (max_args - n):]

        with m.FSM():
            with m.State("OPCODE"):
                m.d.comb += rx.ready.eq(1)
                with m.If(rx.valid):
                    m.d.sync += op.eq(Cat(*[byte == code for code in opcodes]))
                    m.next = "DECODE"
            with m.State("DECODE"):
                with m.If(op_config):
                    m.d.sync += left.eq(A + D)
                    m.next = "ARGS"
                with m.Elif((op_event | op_batch_event) if batch else op_event):
                    m.d.sync += left.eq(K - 1)
                    m.next = "ARGS"
                if batch:
                    with m.Elif(op_batch_run):
                        m.d.sync += left.eq(COUNT_BYTES - 1)
                        m.next = "ARGS"
                with m.Elif(op_expect):
                    m.d.sync += left.eq(EXPECT_BYTES - 1)
                    m.next = "ARGS"
                with m.Elif(op != 0):
                    m.next = "EXEC"
                with m.Else():
                    m.d.sync += proto_err.eq(1)
                    m.next = "OPCODE"
            with m.State("ARGS"):
                m.d.comb += rx.ready.eq(1)
                with m.If(rx.valid):
                    m.d.sync += [args.eq(Cat(args[8:], byte)), left.eq(left - 1)]
                    with m.If(left == 0):
                        m.next = "EXEC"
            with m.State("EXEC"):
                with m.If(op_config):
                    cfg_args = top(1 + A + D)
                    m.d.comb += [self.o_config.valid.eq(1),
                                 self.o_config.payload.target.eq(cfg_args[:8]),
                                 self.o_config.payload.address.eq(cfg_args[8:8 + 8 * A]),
                                 self.o_config.payload.data.eq(cfg_args[8 + 8 * A:8 + 8 * (A + D)])]
                    with m.If(self.o_config.ready):
                        m.next = "OPCODE"
                with m.If(op_event):
                    m.d.comb += [eventq.w_stream.valid.eq(1),
                                 eventq.w_stream.payload.eq(top(K)[:event_layout.size])]
                    with m.If(eventq.w_stream.ready):
                        m.next = "OPCODE"
                with m.If(op_start):
                    m.d.comb += self.start.eq(1)
                    m.next = "OPCODE"
                with m.If(op_ping):
                    # Executed once every earlier event has reached the core.
                    with m.If(~eventq.r_stream.valid):
                        m.d.sync += reply_pong.eq(1)
                        m.next = "WAIT_REPLY"
                with m.If(op_info):
                    m.d.sync += reply_info.eq(1)
                    m.next = "WAIT_REPLY"
                with m.If(op_boot & ~self.boot_pending):
                    m.d.sync += reply_boot.eq(1)
                    m.next = "WAIT_REPLY"
                if batch:
                    with m.If(op_batch_event):
                        word, run = self.o_batch_word, self.o_batch_run
                        m.d.comb += [word.valid.eq(1),
                                     word.payload.eq(top(K)[:event_layout.size])]
                        with m.If(word.ready):
                            m.next = "OPCODE"
                    with m.If(op_batch_run & ~self.busy & ~eventq.r_stream.valid):
                        m.d.comb += [run.valid.eq(1),
                                     run.payload.eq(top(COUNT_BYTES)[:len(run.payload.as_value())])]
                        with m.If(run.ready):
                            m.next = "OPCODE"
                with m.If(op_expect):
                    m.d.comb += [self.o_expect.valid.eq(1),
                                 self.o_expect.payload.eq(top(EXPECT_BYTES)[:SIGNATURE_BITS])]
                    with m.If(self.o_expect.ready):
                        m.next = "OPCODE"
            with m.State("WAIT_REPLY"):
                with m.If(~reply_pong & ~reply_info & ~reply_boot):
                    m.next = "OPCODE"

        # ---- transmitter: one frame at a time from a shift register ----
        info = [PROTOCOL_VERSION, g.idx_w, g.v_width, g.cfg_addr_w, g.cfg_data_w, A, D, K, R,
                self.batch_log2]
        assert len(info) == len(INFO_FIELDS)
        # Without batch hardware INFO's last byte (0) is not held: it comes from the zeros
        # shifted into the emptied register (the register is no wider than before batch mode).
        info_held = len(info) - (0 if batch else 1)
        frame_bytes = 1 + max(R, 5, info_held, BATCH_DONE_BYTES if batch else 0)
        tx_buf = Signal(8 * frame_bytes)
        tx_left = Signal(range(max(frame_bytes, 1 + len(info)) + 1))
        done_pending = Signal()
        with m.If(self.done):
            m.d.sync += done_pending.eq(1)
        tx_busy = Signal()              # tx_left != 0, as a register (timing)
        m.d.comb += [self.o_tx.valid.eq(tx_busy), self.o_tx.payload.eq(tx_buf[:8])]
        with m.If(self.o_tx.valid & self.o_tx.ready):
            m.d.sync += [tx_buf.eq(tx_buf >> 8), tx_left.eq(tx_left - 1)]
            with m.If(tx_left == 1):
                m.d.sync += tx_busy.eq(0)
        status = Signal(8)
        m.d.comb += status.eq(Cat(self.busy, self.error, self.link_status, proto_err))
        with m.If(~tx_busy):
            # Priority: the running inference's results, its completion, then replies.
            with m.If(result.valid):
                m.d.comb += result.ready.eq(1)
                m.d.sync += [tx_buf.eq(Cat(Const(Reply.RESULT, 8), result.payload)),
                             tx_left.eq(1 + R), tx_busy.eq(1)]
            with m.Elif(done_pending & ~self.done):
                m.d.sync += [tx_buf.eq(Cat(Const(Reply.DONE, 8), self.cycles, self.error)),
                             tx_left.eq(6), tx_busy.eq(1), done_pending.eq(0)]
            if batch:
                klass, summary = self.i_batch_class, self.i_batch_done
                with m.Elif(klass.valid):
                    m.d.comb += klass.ready.eq(1)
                    m.d.sync += [tx_buf.eq(Cat(Const(Reply.BATCH_CLASS, 8), klass.payload)),
                                 tx_left.eq(1 + K), tx_busy.eq(1)]
                with m.Elif(summary.valid):
                    m.d.comb += summary.ready.eq(1)
                    m.d.sync += [tx_buf.eq(Cat(Const(Reply.BATCH_DONE, 8), summary.payload)),
                                 tx_left.eq(1 + BATCH_DONE_BYTES), tx_busy.eq(1)]
            with m.Elif(reply_pong):
                m.d.sync += [tx_buf.eq(Cat(Const(Reply.PONG, 8), status)), tx_left.eq(2),
                             tx_busy.eq(1), reply_pong.eq(0)]
            with m.Elif(reply_info):
                word = sum(v << (8 * i) for i, v in enumerate(info[:info_held]))
                m.d.sync += [tx_buf.eq(Cat(Const(Reply.INFO, 8), Const(word, 8 * info_held))),
                             tx_left.eq(1 + len(info)), tx_busy.eq(1), reply_info.eq(0)]
            with m.Elif(reply_boot):
                m.d.sync += [tx_buf.eq(Cat(Const(Reply.BOOT, 8), self.boot_status)), tx_left.eq(2),
                             tx_busy.eq(1), reply_boot.eq(0)]
        return m
