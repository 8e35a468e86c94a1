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
load sends over the UART, without its PINGs.

Trailer (``CRC_BYTES`` = 4 bytes): the payload's CRC-32 (zlib's, IEEE 802.3). The loader runs
the CRC over payload and trailer: a correct image leaves its register at ``CRC_RESIDUE``.
"""
from __future__ import annotations

import json
import zlib
from dataclasses import dataclass

from bsnn.firmware_export.errors import InputError

from .config import CoreGeometry
from .hostlink import Opcode, config_frame, frame_sizes
from .images import config_writes_for
from .layouts import GlobalAddress

__all__ = ["MAGIC", "FORMAT_VERSION", "HEADER_BYTES", "key_hash", "flash_image", "parse_image",
           "FlashImage", "max_payload_bytes", "length_bits", "ImageError", "CRC_BYTES",
           "CRC_RESIDUE"]

MAGIC = b"BSNF"
FORMAT_VERSION = 2
HEADER_BYTES = 16
CRC_BYTES = 4
#: The CRC-32 register (reflected, initial value all ones, not inverted) after a payload and
#: its zlib CRC-32, little-endian: the same for every payload.
CRC_RESIDUE = 0xDEBB20E3


class ImageError(InputError):
    """A flash image that is not one of this format, or not for this build."""


def key_hash(geom: CoreGeometry) -> int:
    """32-bit hash of the build key: CRC-32 of its JSON (sorted keys, no spaces)."""
    text = json.dumps(geom.key(), sort_keys=True, separators=(",", ":"))
    return zlib.crc32(text.encode())


def length_bits(geom: CoreGeometry) -> int:
    """Bits of the loader's length counter: enough for a CONFIG command per weight, bias,
    threshold, layer-mode and global word of the build."""
    sz = frame_sizes(geom)
    globals_ = sum(1 for name in vars(GlobalAddress) if name.isupper())
    words = geom.weight_depth + 2 * geom.neuron_total + len(geom.sizes) - 1 + globals_
    return (words * (2 + sz["A"] + sz["D"])).bit_length()


def max_payload_bytes(geom: CoreGeometry) -> int:
    """The longest payload the loader of this build reads (a longer length field is refused)."""
    return (1 << length_bits(geom)) - 1


def flash_image(bundle, geom: CoreGeometry) -> bytes:
    """The flash image of ``bundle`` for a build of geometry ``geom`` (header + payload)."""
    payload = b"".join(config_frame(geom, *w)
                       for w in config_writes_for(bundle, geom, trace=True))
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
    writes = []
    for i in range(0, len(payload), step):
        frame = payload[i:i + step]
        if len(frame) != step or frame[0] != Opcode.CONFIG:
            raise ImageError(f"flash image payload byte {i}: not a CONFIG command")
        writes.append((frame[1], int.from_bytes(frame[2:2 + sz["A"]], "little"),
                       int.from_bytes(frame[2 + sz["A"]:], "little")))
    return FlashImage(key, crc, writes)
