"""Lowest-lane-first selection over a mask of ``U`` lanes, shallow enough for wide neuron groups."""
from amaranth.hdl import Cat, Signal, Value

__all__ = ["LaneSelect", "one_hot_mux"]


class LaneSelect:
    """The lowest set lane of ``mask`` (``U`` bits), as combinational signals of ``m``:

    * ``onehot``: that lane's bit alone (0 when ``mask`` is 0): ``mask & -mask``, one carry
      chain, where a priority chain ``if mask[0] .. elif mask[1] ..`` is ``U`` levels deep
      (about 20 LUT levels in front of the spike queue at ``U = 16``);
    * ``index``: its number, an OR tree per bit of ``onehot`` (0 when ``mask`` is 0);
    * ``last``: no other lane is set (true when ``mask`` is 0);
    * ``any``: some lane is set.

    Not a component (no state, no handshake): the replay and the emitter each build one on
    their own mask.
    """
    def __init__(self, m, mask: Value, name: str):
        U = len(mask)
        self.onehot = Signal(U, name=f"{name}_onehot")
        self.index = Signal(range(max(2, U)), name=f"{name}_index")
        self.last = Signal(name=f"{name}_last")
        self.any = Signal(name=f"{name}_any")
        m.d.comb += [
            self.onehot.eq(mask & (~mask + 1)[:U]),
            self.last.eq((mask ^ self.onehot) == 0),
            self.any.eq(mask != 0),
        ]
        for b in range(len(self.index)):
            m.d.comb += self.index[b].eq(Cat(*[self.onehot[u] for u in range(U) if (u >> b) & 1]).any()
                                         if U > 1 << b else 0)


def one_hot_mux(onehot: Value, items) -> Value:
    """``items[u]`` for the set bit ``u`` of ``onehot`` (0 when none), as an AND-OR: no encoder
    and no binary multiplexer tree on the path."""
    width = max(len(Value.cast(item)) for item in items)
    out = Value.cast(0)
    for u, item in enumerate(items):
        out = out | (Value.cast(item).as_unsigned() & onehot[u].replicate(width))
    return out[:width] if len(out) >= width else out
