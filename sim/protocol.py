"""Packing and unpacking the core's stream payloads, from the layouts in ``bsnn.hdl.layouts``."""
from __future__ import annotations

from bsnn.hdl.config import CoreGeometry
from bsnn.hdl.layouts import ConfigWriteLayout, InputEventLayout, ResultLayout


class Protocol:
    """The payload encodings of one build (given by its build key)."""

    def __init__(self, geom: CoreGeometry):
        self.geom = geom
        self.event_layout = InputEventLayout(geom.idx_w)
        self.result_layout = ResultLayout(geom.idx_w, geom.v_width)
        self.config_layout = ConfigWriteLayout(geom.cfg_addr_w, geom.cfg_data_w)

    @classmethod
    def from_key(cls, key: dict) -> "Protocol":
        return cls(CoreGeometry.from_key(key))

    def pack_event(self, index: int, polarity: int, end_of_step: bool) -> int:
        return self.event_layout.const({"index": index, "polarity": polarity,
                                        "end_of_step": int(end_of_step)}).as_bits()

    def pack_config(self, target: int, address: int, data: int) -> int:
        return self.config_layout.const({"target": target, "address": address, "data": data}).as_bits()

    def unpack_result(self, word: int) -> tuple[int, int, int, int, int]:
        """(kind, step, layer, index, value) of a result record."""
        r = self.result_layout.from_bits(word)
        return int(r.kind), int(r.step), int(r.layer), int(r.index), int(r.value)
