"""Host side of the board's UART protocol (docs/uart-protocol.md), over any byte stream.

A *link* is an object with ``async write(data: bytes)`` and ``async read(n) -> bytes``: a real
board through pyserial (:class:`SerialLink`), or a cocotb bit-level UART driver on the board
top's pins in simulation (``sim/cocotb_board.py``). The same :class:`BoardHost` code talks to
both::

    import asyncio
    from bsnn.sim.board_host import BoardHost, SerialLink
    host = BoardHost(SerialLink("/dev/ttyUSB1", 3_000_000), "build/bitstream/icebreaker-default/hardware.json")
    result = asyncio.run(host.infer([[(12, 1), (300, 1)], [], [(5, 0)], []]))
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path

from bsnn.firmware_export.errors import DeviceError
from bsnn.hdl.config import CoreGeometry
from bsnn.hdl.flash_loader import BootStatus
from bsnn.hdl.batch import COUNT_BYTES, BatchStatus, batch_log2
from bsnn.hdl.hostlink import (BATCH_DONE_BYTES, HOST_WINDOW, INFO_FIELDS, PROTOCOL_VERSION,
                               Opcode, Reply, batch_frames, batch_run_frame, config_frame,
                               event_frame, expect_frame, frame_sizes, inference_frames)
from bsnn.hdl.layouts import ConfigTarget, GlobalAddress, ResultKind, ResultLayout
from bsnn.hdl.selftest import SelfTestStatus, expect_word

__all__ = ["BoardHost", "SerialLink", "InferenceResult", "BatchResult", "ProtocolError",
           "encode_config", "encode_event", "batch_words"]

#: Command bytes the host sends between two PINGs (half the device's receive FIFO).
WINDOW = HOST_WINDOW


class ProtocolError(DeviceError, RuntimeError):
    pass


@dataclass
class InferenceResult:
    records: list = field(default_factory=list)   # (kind, step, layer, index, value)
    cycles: int = 0
    error: int = 0

    @property
    def prediction(self) -> int:
        return self.records[-1][3]

    @property
    def spikes(self):
        return [r for r in self.records if r[0] == ResultKind.SPIKE]

    @property
    def potentials(self):
        return [(r[3], r[4]) for r in self.records if r[0] == ResultKind.POTENTIAL]


@dataclass
class BatchResult:
    """The outcome of a batch (BATCH_RUN): per image its class and error flags, in order, and
    the on-chip cycles from the first image's start to the last image's done."""
    classes: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    cycles: int = 0
    status: int = 0          # BatchStatus flags
    count: int = 0           # images run (0: refused)

    @property
    def refused(self) -> bool:
        return bool(self.status & (BatchStatus.OVERFLOW | BatchStatus.BAD_COUNT))

    @property
    def flags(self) -> list:
        return [f.name for f in BatchStatus if self.status & f]

    def inferences_per_second(self, clock_hz: float) -> float:
        """The core's own rate at ``clock_hz`` (images per second, from the on-chip count)."""
        return self.count * clock_hz / self.cycles if self.cycles else 0.0


def batch_words(images) -> int:
    """Batch memory words of ``images`` (each a list of time steps of ``(index, polarity)``):
    one per event and one end-of-step marker per step."""
    return sum(len(step) + 1 for steps in images for step in steps)


#: The commands' bytes (one definition: bsnn.hdl.hostlink).
encode_config = config_frame
encode_event = event_frame


class BoardHost:
    """Drives a board top: load bundles, run inferences, read results, cycles and errors.

    Parameters
    ----------
    link : object with ``async write(bytes)`` and ``async read(n) -> bytes``
    build : CoreGeometry, build-key dict, or path to the build's ``hardware.json``
    """
    def __init__(self, link, build):
        if isinstance(build, (str, Path)):
            build = json.loads(Path(build).read_text())
        #: Words of the build's batch memory (``[board] batch_event_words``): from the build's
        #: hardware.json if it says, else from the INFO reply (``info()``); None: not known yet.
        self.batch_words = None
        if isinstance(build, dict):
            self.batch_words = build.get("batch_event_words")
            build = CoreGeometry.from_key(build.get("build_key", build))
        self.link = link
        self.geom = build
        self.sizes = frame_sizes(build)
        self._result_layout = ResultLayout(build.idx_w, build.v_width)
        self._pending = bytearray()       # sent since the last PING
        self.frames = []                  # (header, payload) frames not consumed yet
        #: From the last BOOT reply: the self-test's status by name (``SelfTestStatus``), and
        #: the records of its inference if they arrived (the flash image's golden vector runs
        #: at power-up, perhaps before the host listened).
        self.self_test = "NONE"
        self.self_test_result: InferenceResult | None = None

    # ---- frames ------------------------------------------------------------------------------
    def _length(self, header: int) -> int:
        lengths = {Reply.RESULT: self.sizes["R"], Reply.DONE: 5, Reply.PONG: 1,
                   Reply.INFO: len(INFO_FIELDS), Reply.BOOT: 1, Reply.BATCH_CLASS: self.sizes["K"],
                   Reply.BATCH_DONE: BATCH_DONE_BYTES}
        if header not in lengths:
            raise ProtocolError(f"unknown frame header 0x{header:02x} from the device")
        return lengths[header]

    async def _read_frame(self):
        header = (await self.link.read(1))[0]
        return header, await self.link.read(self._length(header))

    async def _wait_for(self, header: int):
        """Read frames until one with ``header``; others are kept in ``self.frames``."""
        while True:
            h, payload = await self._read_frame()
            if h == header:
                return payload
            self.frames.append((h, payload))

    # ---- commands ----------------------------------------------------------------------------
    async def _send(self, data: bytes) -> None:
        """Send command bytes, with a PING round trip whenever WINDOW bytes are outstanding
        (the device's receive FIFO never overflows, whatever the core's backpressure)."""
        if len(self._pending) + len(data) > WINDOW:
            await self.sync()
        self._pending += data
        await self.link.write(data)

    async def sync(self) -> int:
        """PING: returns the status byte once every command sent before has been executed."""
        await self.link.write(bytes([Opcode.PING]))
        status = (await self._wait_for(Reply.PONG))[0]
        self._pending.clear()
        return status

    async def status(self) -> dict:
        s = await self.sync()
        return {"busy": s & 1, "error": (s >> 1) & 3, "rx_overrun": (s >> 3) & 1,
                "rx_frame_error": (s >> 4) & 1, "protocol_error": (s >> 5) & 1}

    async def info(self) -> dict:
        await self.link.write(bytes([Opcode.INFO]))
        p = await self._wait_for(Reply.INFO)
        info = dict(zip(INFO_FIELDS, p))
        want = {"version": PROTOCOL_VERSION, "idx_w": self.geom.idx_w,
                "v_width": self.geom.v_width, "cfg_addr_w": self.geom.cfg_addr_w,
                "cfg_data_w": self.geom.cfg_data_w, **self.sizes}
        if self.batch_words is not None:
            want["batch"] = batch_log2(self.batch_words)
        else:
            want["batch"] = info["batch"]
        if info != want:
            raise ProtocolError(f"the device's build differs from the host's: {info} != {want}")
        self.batch_words = 1 << info["batch"] if info["batch"] else 0
        return info

    async def boot(self) -> str:
        """BOOT: the flash loader's status, by name (``BootStatus``: LOADING, OK, NO_IMAGE,
        BAD_FORMAT, BAD_KEY, BAD_CHECKSUM, NO_LOADER), once the loader and the image's self-test
        have finished (the command waits in the device meanwhile). The self-test's status goes
        to ``self.self_test``, the records of its inference (frames the device sent before the
        reply) to ``self.self_test_result``."""
        await self.link.write(bytes([Opcode.BOOT]))
        code = (await self._wait_for(Reply.BOOT))[0]
        try:
            status, self.self_test = BootStatus(code & 0xF).name, SelfTestStatus(code >> 4).name
        except ValueError:
            raise ProtocolError(f"unknown boot status {code} from the device") from None
        self.self_test_result = self._stashed_inference()
        return status

    def _stashed_inference(self) -> InferenceResult | None:
        """Take one whole inference (RESULT frames up to a DONE) out of ``self.frames``."""
        ends = [i for i, (h, _) in enumerate(self.frames) if h == Reply.DONE]
        if not ends:
            return None
        taken, self.frames = self.frames[:ends[0] + 1], self.frames[ends[0] + 1:]
        result = InferenceResult()
        for h, payload in taken:
            if h == Reply.RESULT:
                result.records.append(self._record(payload))
            elif h == Reply.DONE:
                result.cycles = int.from_bytes(payload[:4], "little")
                result.error = payload[4]
            else:
                self.frames.append((h, payload))
        return result

    def _record(self, payload: bytes) -> tuple:
        r = self._result_layout.from_bits(int.from_bytes(payload, "little"))
        return int(r.kind), int(r.step), int(r.layer), int(r.index), int(r.value)

    async def self_test_run(self, steps, signature: int) -> tuple[str, InferenceResult]:
        """Run the self-test unit on an inference (docs/board.md): EXPECT ``signature``
        (``bsnn.hdl.selftest.signature`` of the golden records), the inference, then BOOT.
        Returns the self-test's status by name and the inference's records."""
        await self._send(expect_frame(expect_word(signature)))
        result = await self.infer(steps)
        await self.boot()
        return self.self_test, result

    async def configure(self, writes) -> None:
        """Config-port writes ``(target, address, data)`` (see ``bsnn.hdl.generate.config_writes``);
        the core takes them only while idle."""
        for target, address, data in writes:
            await self._send(encode_config(self.geom, target, address, data))
        await self.sync()

    async def load(self, bundle) -> None:
        """Load a bundle of the build's key (weights, bias, thresholds, modes, globals)."""
        from bsnn.hdl.generate import config_writes
        await self.configure(config_writes(bundle, build=self.geom))

    async def infer(self, steps) -> InferenceResult:
        """One inference: ``steps`` is a list (one per time step) of ``(index, polarity)``."""
        frames = inference_frames(self.geom, steps)
        size = 1 + self.sizes["K"]
        await self._send(frames[:1])
        for i in range(1, len(frames), size):
            await self._send(frames[i:i + size])
        result = InferenceResult()
        while True:
            if self.frames:
                h, payload = self.frames.pop(0)
            else:
                h, payload = await self._read_frame()
            if h == Reply.RESULT:
                result.records.append(self._record(payload))
            elif h == Reply.DONE:
                result.cycles = int.from_bytes(payload[:4], "little")
                result.error = payload[4]
                break
            elif h == Reply.PONG:
                continue          # a flow-control PING answered while results were coming
            else:
                raise ProtocolError(f"unexpected frame 0x{h:02x} during an inference")
        self._pending.clear()
        return result

    # ---- batch mode (docs/uart-protocol.md, "Batch mode") -----------------------------------
    async def _require_batch(self) -> None:
        """A build without batch hardware would take the batch commands' bytes for commands
        of their own: refused here (ProtocolError) before anything is sent."""
        if self.batch_words is None:
            await self.info()
        if not self.batch_words:
            raise ProtocolError("batch: this build has no batch memory ([board] "
                                "batch_event_words = 0)")

    async def set_trace(self, on: bool) -> None:
        """The run-time trace (GLOBAL TRACE): SPIKE records on or off (builds with trace)."""
        await self.configure([(ConfigTarget.GLOBAL, GlobalAddress.TRACE, int(bool(on)))])

    async def batch_load(self, images) -> None:
        """BATCH_EVENT commands: the words of ``images`` (each a list, one per time step, of
        ``(index, polarity)``) appended to the batch memory. Not checked against its size: a
        batch that overflows it is refused by the device at BATCH_RUN."""
        await self._require_batch()
        data = batch_frames(self.geom, images)
        size = 1 + self.sizes["K"]
        for i in range(0, len(data), size):
            await self._send(data[i:i + size])

    async def batch_run(self, count: int) -> BatchResult:
        """BATCH_RUN: the loaded words as ``count`` images; waits for BATCH_DONE and returns the
        classes, error flags, status and cycles. The memory is empty afterwards."""
        if not 0 <= count < 1 << (8 * COUNT_BYTES):
            raise ValueError(f"batch: {count} images do not fit the command's count field")
        await self._require_batch()
        await self._send(batch_run_frame(count))
        result = BatchResult()
        while True:
            h, payload = await self._read_frame()
            if h == Reply.BATCH_CLASS:
                word = int.from_bytes(payload, "little")
                result.classes.append(word & ((1 << self.geom.idx_w) - 1))
                result.errors.append(word >> self.geom.idx_w)
            elif h == Reply.BATCH_DONE:
                result.status = payload[0]
                result.count = int.from_bytes(payload[1:1 + COUNT_BYTES], "little")
                result.cycles = int.from_bytes(payload[1 + COUNT_BYTES:], "little")
                break
            elif h != Reply.PONG:
                self.frames.append((h, payload))
        self._pending.clear()
        if len(result.classes) != result.count:
            raise ProtocolError(f"batch: {len(result.classes)} classes for {result.count} images")
        return result

    async def run_batch(self, images, trace_off: bool = True) -> BatchResult:
        """Run ``images`` back to back on the board (the batch unit, hdl/batch.py): load them,
        run them, read the classes and the on-chip cycle count. With ``trace_off`` (for a
        throughput measurement) the run-time trace is turned off for the batch and on again
        after it. Refuses (ValueError) a batch larger than the build's batch memory, and
        (ProtocolError) a build without one."""
        await self._require_batch()
        images = list(images)
        words = batch_words(images)
        if not images or words > self.batch_words:
            raise ValueError(f"batch: {len(images)} images of {words} words; the batch memory "
                             f"holds {self.batch_words}")
        trace = trace_off and self.geom.trace
        if trace:
            await self.set_trace(False)
        await self.batch_load(images)
        result = await self.batch_run(len(images))
        if trace:
            await self.set_trace(True)
        return result


class SerialLink:
    """A real board's UART through pyserial (``pip install pyserial``)."""
    def __init__(self, port: str, baud: int = 3_000_000, timeout: float = 5.0):
        import serial
        self.port = serial.Serial(port, baud, timeout=timeout)

    async def write(self, data: bytes) -> None:
        self.port.write(data)

    async def read(self, n: int) -> bytes:
        data = self.port.read(n)
        if len(data) != n:
            raise TimeoutError(f"serial: {len(data)} of {n} bytes before the timeout")
        return data

    def close(self):
        self.port.close()


def run(coro):
    """Run a BoardHost coroutine from synchronous code (real boards)."""
    return asyncio.run(coro)
