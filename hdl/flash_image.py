"""Flash image of a model: the config-port writes of a bundle, for the board's SPI flash.

The board top's flash loader (``hdl/flash_loader.py``) reads it at power-up, next to the
bitstream at the board's ``flash_offset`` (``hdl/board.py``, ``BOARDS``), and feeds its payload
into the host link's command decoder (docs/board.md). Little-endian throughout.

Header (``HEADER_BYTES`` = 16 bytes)::

    0   magic     4 bytes  b"BSNF"
    4   version   2 bytes  FORMAT_VERSION
    6   reserved  2 bytes  0
    8   key       4 bytes  build-key hash (:func:`key_hash`): the image fits only this build
    12  length    4 bytes  payload bytes after the header (1 to :func:`max_payload_bytes`)

Payload: the CONFIG commands of the host link (docs/uart-protocol.md; ``config_frame``), one
per write of :func:`bsnn.hdl.images.config_writes_for`, in their order: the very bytes a host
load sends over the UART, without its PINGs. Optionally followed by a self-test (a golden
vector, :class:`SelfTestVector`): EXPECT with the golden model's signature of its result
records (hdl/selftest.py), then START and the EVENT commands of the inference, which the board
runs as soon as the model is in (at most ``SELF_TEST_MAX_BYTES``).

Trailer (``CRC_BYTES`` = 4 bytes): the payload's CRC-32 (zlib's, IEEE 802.3). The loader runs
the CRC over payload and trailer: a correct image leaves its register at ``CRC_RESIDUE``.
"""
from __future__ import annotations

import json
import zlib
from dataclasses import dataclass

from bsnn.firmware_export.errors import InputError

from .config import CoreGeometry
from .hostlink import (EXPECT_BYTES, Opcode, config_frame, expect_frame, frame_sizes,
                       inference_frames)
from .images import config_writes_for
from .layouts import GlobalAddress, ResultKind
from .selftest import expect_word, signature

__all__ = ["MAGIC", "FORMAT_VERSION", "HEADER_BYTES", "key_hash", "flash_image", "parse_image",
           "FlashImage", "max_payload_bytes", "length_bits", "ImageError", "CRC_BYTES",
           "CRC_RESIDUE", "SelfTestVector", "self_test_vector", "SELF_TEST_MAX_BYTES"]

MAGIC = b"BSNF"
FORMAT_VERSION = 3
HEADER_BYTES = 16
CRC_BYTES = 4
#: The CRC-32 register (reflected, initial value all ones, not inverted) after a payload and
#: its zlib CRC-32, little-endian: the same for every payload.
CRC_RESIDUE = 0xDEBB20E3
#: Room for a self-test in the payload (the loader's length counter counts it in): an MNIST
#: image at T = 4 takes about 1.2 kB.
SELF_TEST_MAX_BYTES = 16384


class ImageError(InputError):
    """A flash image that is not one of this format, or not for this build."""


def key_hash(geom: CoreGeometry) -> int:
    """32-bit hash of the build key: CRC-32 of its JSON (sorted keys, no spaces)."""
    text = json.dumps(geom.key(), sort_keys=True, separators=(",", ":"))
    return zlib.crc32(text.encode())


def length_bits(geom: CoreGeometry) -> int:
    """Bits of the loader's length counter: enough for a CONFIG command per weight, bias,
    threshold, layer-mode and global word of the build, and a self-test."""
    sz = frame_sizes(geom)
    globals_ = sum(1 for name in vars(GlobalAddress) if name.isupper())
    words = geom.weight_depth + 2 * geom.neuron_total + len(geom.sizes) - 1 + globals_
    return (words * (2 + sz["A"] + sz["D"]) + SELF_TEST_MAX_BYTES).bit_length()


def max_payload_bytes(geom: CoreGeometry) -> int:
    """The longest payload the loader of this build reads (a longer length field is refused)."""
    return (1 << length_bits(geom)) - 1


@dataclass
class SelfTestVector:
    """A golden vector: one inference's input events and the records the golden model says
    the core emits for it (POTENTIAL per output neuron, then CLASS)."""
    steps: list          # per time step: (index, polarity) events
    records: list        # (kind, step, layer, index, value)

    @property
    def signature(self) -> int:
        return signature(self.records)

    @property
    def prediction(self) -> int:
        return self.records[-1][3]

    def commands(self, geom: CoreGeometry) -> bytes:
        """EXPECT, then the inference (hdl/hostlink.py), as the payload carries them."""
        out = expect_frame(expect_word(self.signature)) + inference_frames(geom, self.steps)
        if len(out) > SELF_TEST_MAX_BYTES:
            raise ImageError(f"the self-test vector takes {len(out)} bytes of commands, more than "
                             f"the {SELF_TEST_MAX_BYTES} a flash image holds: pick another sample")
        return out


def self_test_vector(bundle, on, off=None, sample: int = 0) -> SelfTestVector:
    """Sample ``sample`` of the input counts ``on``/``off`` ([T, B, N]) as a golden vector of
    ``bundle`` (an input over the bundle's event limit is refused by the golden model)."""
    from bsnn.firmware_export.events import events_from_counts
    from bsnn.firmware_export.golden import run_golden

    on = on[:, sample:sample + 1]
    off = None if off is None else off[:, sample:sample + 1]
    res = run_golden(bundle, on, off)
    layer = len(bundle.layers)
    records = [(ResultKind.POTENTIAL, 0, layer, j, int(v))
               for j, v in enumerate(res.v[-1][0].tolist())]
    records.append((ResultKind.CLASS, 0, 0, int(res.prediction[0]), 0))
    return SelfTestVector(events_from_counts(on, off, 0), records)


def flash_image(bundle, geom: CoreGeometry, self_test: SelfTestVector | None = None) -> bytes:
    """The flash image of ``bundle`` for a build of geometry ``geom`` (header + payload), with
    the golden vector ``self_test`` at its end if given."""
    payload = b"".join(config_frame(geom, *w)
                       for w in config_writes_for(bundle, geom, trace=True))
    if self_test is not None:
        payload += self_test.commands(geom)
    assert len(payload) <= max_payload_bytes(geom)
    header = (MAGIC + FORMAT_VERSION.to_bytes(2, "little") + bytes(2)
              + key_hash(geom).to_bytes(4, "little") + len(payload).to_bytes(4, "little"))
    assert len(header) == HEADER_BYTES
    return header + payload + zlib.crc32(payload).to_bytes(CRC_BYTES, "little")


@dataclass
class FlashImage:
    key: int
    crc: int
    writes: list          # (target, address, data)
    expect: int | None = None    # the self-test's EXPECT word, if the image has one
    steps: list | None = None    # and its inference's events per time step


def parse_image(data: bytes, geom: CoreGeometry) -> FlashImage:
    """Decode an image as the loader does, checking magic, version, build key, length and CRC
    (raises :class:`ImageError` naming the first problem)."""
    if len(data) < HEADER_BYTES or data[:4] != MAGIC:
        raise ImageError("not a bsnn flash image (magic)")
    version = int.from_bytes(data[4:6], "little")
    if version != FORMAT_VERSION or data[6:8] != bytes(2):
        raise ImageError(f"flash image format version {version}, this build reads {FORMAT_VERSION}")
    key = int.from_bytes(data[8:12], "little")
    if key != key_hash(geom):
        raise ImageError(f"flash image build key {key:08x} != this build's {key_hash(geom):08x}")
    length = int.from_bytes(data[12:16], "little")
    if not 0 < length <= max_payload_bytes(geom) or HEADER_BYTES + length + CRC_BYTES > len(data):
        raise ImageError(f"flash image payload length {length} is out of range")
    payload = data[HEADER_BYTES:HEADER_BYTES + length]
    crc = int.from_bytes(data[HEADER_BYTES + length:HEADER_BYTES + length + CRC_BYTES], "little")
    if zlib.crc32(payload) != crc:
        raise ImageError(f"flash image checksum {zlib.crc32(payload):08x} != the image's "
                         f"{crc:08x}")
    sz = frame_sizes(geom)
    step = 2 + sz["A"] + sz["D"]
    writes, i = [], 0
    while i < len(payload) and payload[i] == Opcode.CONFIG:
        frame = payload[i:i + step]
        if len(frame) != step:
            raise ImageError(f"flash image payload byte {i}: a CONFIG command cut short")
        writes.append((frame[1], int.from_bytes(frame[2:2 + sz["A"]], "little"),
                       int.from_bytes(frame[2 + sz["A"]:], "little")))
        i += step
    image = FlashImage(key, crc, writes)
    if i < len(payload):
        image.expect, image.steps = _parse_self_test(payload, i, sz["K"], geom)
    return image


def _parse_self_test(payload: bytes, i: int, k: int, geom: CoreGeometry):
    """The self-test after the CONFIG commands: EXPECT, START, then EVENTs to the payload's end."""
    from .layouts import InputEventLayout

    if payload[i] != Opcode.EXPECT or len(payload) < i + 1 + EXPECT_BYTES + 1 \
            or payload[i + 1 + EXPECT_BYTES] != Opcode.START:
        raise ImageError(f"flash image payload byte {i}: neither a CONFIG command nor a "
                         "self-test (EXPECT, START)")
    expect = int.from_bytes(payload[i + 1:i + 1 + EXPECT_BYTES], "little")
    layout = InputEventLayout(geom.idx_w)
    steps, step = [], []
    for j in range(i + 2 + EXPECT_BYTES, len(payload), 1 + k):
        frame = payload[j:j + 1 + k]
        if len(frame) != 1 + k or frame[0] != Opcode.EVENT:
            raise ImageError(f"flash image payload byte {j}: not an EVENT command of the self-test")
        event = layout.from_bits(int.from_bytes(frame[1:], "little"))
        if int(event.end_of_step):
            steps.append(step)
            step = []
        else:
            step.append((int(event.index), int(event.polarity)))
    if step:
        raise ImageError("flash image self-test: events after the last end of step")
    return expect, steps
