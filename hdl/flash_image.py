"""Flash image of a model: the config-port writes of a bundle, for the board's SPI flash.

The board top's flash loader (``hdl/flash_loader.py``) reads it at power-up, next to the
bitstream at the board's ``flash_offset`` (``hdl/board.py``, ``BOARDS``), into the same config
port the host link writes (docs/board.md). Little-endian throughout.

Header (``HEADER_BYTES`` = 20 bytes)::

    0   magic     4 bytes  b"BSNF"
    4   version   2 bytes  FORMAT_VERSION
    6   reserved  2 bytes  0
    8   key       4 bytes  build-key hash (:func:`key_hash`): the image fits only this build
    12  length    4 bytes  payload bytes after the header
    16  crc       4 bytes  CRC-32 (zlib's, IEEE 802.3) of the payload

Payload: runs of config writes to consecutive addresses (the writes of
:func:`bsnn.hdl.images.config_writes_for`, in their order)::

    target (1 byte), first address (A bytes), count (2 bytes, >= 1), count data words (D bytes each)

``A`` and ``D`` are the host link's field sizes (``frame_sizes``, docs/uart-protocol.md).
"""
from __future__ import annotations

import json
import zlib
from dataclasses import dataclass

from bsnn.firmware_export.errors import InputError

from .config import CoreGeometry
from .hostlink import frame_sizes
from .images import config_writes_for

__all__ = ["MAGIC", "FORMAT_VERSION", "HEADER_BYTES", "COUNT_BYTES", "MAX_RUN", "key_hash",
           "flash_image", "parse_image", "FlashImage", "max_payload_bytes", "ImageError"]

MAGIC = b"BSNF"
FORMAT_VERSION = 1
HEADER_BYTES = 20
#: Bytes of a run's write count; a run holds at most MAX_RUN writes.
COUNT_BYTES = 2
MAX_RUN = (1 << (8 * COUNT_BYTES)) - 1


class ImageError(InputError):
    """A flash image that is not one of this format, or not for this build."""


def key_hash(geom: CoreGeometry) -> int:
    """32-bit hash of the build key: CRC-32 of its JSON (sorted keys, no spaces)."""
    text = json.dumps(geom.key(), sort_keys=True, separators=(",", ":"))
    return zlib.crc32(text.encode())


def _runs(writes):
    """Group ``(target, address, data)`` writes into runs of consecutive addresses."""
    runs = []
    for target, address, data in writes:
        if runs and runs[-1][0] == target and runs[-1][1] + len(runs[-1][2]) == address \
                and len(runs[-1][2]) < MAX_RUN:
            runs[-1][2].append(data)
        else:
            runs.append((target, address, [data]))
    return runs


def _payload(writes, geom: CoreGeometry) -> bytes:
    sz = frame_sizes(geom)
    out = bytearray()
    for target, address, words in _runs(writes):
        out += bytes([target]) + address.to_bytes(sz["A"], "little")
        out += len(words).to_bytes(COUNT_BYTES, "little")
        for w in words:
            out += int(w).to_bytes(sz["D"], "little")
    return bytes(out)


def max_payload_bytes(geom: CoreGeometry) -> int:
    """An upper bound of the payload of any image of this build (the loader refuses a longer
    length field): every weight, bias, threshold, layer-mode and global word in its own run."""
    sz = frame_sizes(geom)
    words = geom.weight_depth + 2 * geom.neuron_total + len(geom.sizes) - 1 + 4
    return words * (1 + sz["A"] + COUNT_BYTES + sz["D"])


def flash_image(bundle, geom: CoreGeometry) -> bytes:
    """The flash image of ``bundle`` for a build of geometry ``geom`` (header + payload)."""
    payload = _payload(config_writes_for(bundle, geom, trace=True), geom)
    header = (MAGIC + FORMAT_VERSION.to_bytes(2, "little") + bytes(2)
              + key_hash(geom).to_bytes(4, "little") + len(payload).to_bytes(4, "little")
              + zlib.crc32(payload).to_bytes(4, "little"))
    assert len(header) == HEADER_BYTES
    return header + payload


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
    crc = int.from_bytes(data[16:20], "little")
    if length > max_payload_bytes(geom) or HEADER_BYTES + length > len(data):
        raise ImageError(f"flash image payload length {length} is out of range")
    payload = data[HEADER_BYTES:HEADER_BYTES + length]
    if zlib.crc32(payload) != crc:
        raise ImageError(f"flash image checksum {zlib.crc32(payload):08x} != header's {crc:08x}")
    sz = frame_sizes(geom)
    writes, i = [], 0
    while i < len(payload):
        target = payload[i]
        address = int.from_bytes(payload[i + 1:i + 1 + sz["A"]], "little")
        i += 1 + sz["A"]
        count = int.from_bytes(payload[i:i + COUNT_BYTES], "little")
        i += COUNT_BYTES
        for k in range(count):
            writes.append((target, address + k, int.from_bytes(payload[i:i + sz["D"]], "little")))
            i += sz["D"]
    return FlashImage(key, crc, writes)

