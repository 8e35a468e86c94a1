"""Tap generator: the events into a layer as accumulator operations (docs/semantics.md 10.3, 10.4)."""
from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from bsnn.firmware_export.spatial import taps_per_position

from .config import LAYER_WIDTH, CoreGeometry, span
from .layouts import SynapseEventLayout
from .slice import RegisterSlice

__all__ = ["TapGenerator", "OpLayout", "OpMode", "reciprocal", "window_table"]


class OpMode:
    """``mode`` of an :class:`OpLayout` operation: what each lane adds to its accumulator."""
    WEIGHTS = 0     # XNOR(polarity, weight bit) ? +1 : -1, one word per chunk
    LANE = 1        # +1 in lane ``lane`` only, one word (a pool2d window)
    NOTHING = 2     # nothing, one cycle (an event that reaches no neuron)


class OpLayout(data.StructLayout):
    """An accumulator operation: ``acc`` the accumulator word and ``row`` the weight word of its
    first chunk; ``single``: one word only (else the layer's ``chunks``); ``flush`` ends the
    layer's events."""
    def __init__(self, geom: CoreGeometry):
        super().__init__({"flush": 1, "polarity": 1, "single": 1, "mode": 2,
                          "lane": range(max(2, geom.lanes)),
                          "row": unsigned(geom.weight_addr_w), "acc": unsigned(geom.acc_addr_w)})


def reciprocal(divisor: int, bound: int) -> tuple[int, int]:
    """``(M, s)`` with ``(x * M) >> s == x // divisor`` for every ``0 <= x < bound`` (checked
    exhaustively): a constant division as a multiplication and a shift."""
    import numpy as np
    x = np.arange(max(bound, 1), dtype=np.int64)
    for s in range(0, 40):
        M = -(-(1 << s) // divisor)
        if int(M) * max(bound, 1) >= 1 << 62:
            break
        if np.array_equal((x * M) >> s, x // divisor):
            return int(M), s
    raise ValueError(f"no reciprocal for {divisor} below {bound}")


def window_table(extent, kernel, stride, padding, out_extent, a_step, w_step) -> list:
    """Per input position ``i`` of one dimension: ``(r, a, w)``: the taps (windows) that reach
    it (``r``, as :func:`taps_per_position`), and for the first of them (the largest kernel
    offset ``k``, the smallest output position ``o``) ``a = o * a_step`` and ``w = k * w_step``.
    The next taps are ``k - stride`` at ``o + 1``."""
    counts = taps_per_position(extent, kernel, stride, padding)
    table = []
    for i in range(extent):
        first = None
        for k in reversed(range(kernel)):
            num = i + padding - k
            if num >= 0 and num % stride == 0 and num // stride < out_extent:
                first = (k, num // stride)
                break
        if first is None:
            table.append((0, 0, 0))
        else:
            table.append((int(counts[i]), first[1] * a_step, first[0] * w_step))
    return table


class TapGenerator(wiring.Component):
    """The events into layer ``layer`` as accumulator operations (one per tap), in a
    convolutional build (``CoreGeometry.is_spatial``).

    * layer 1 with ``input_polarity = "channels"``: event ``(i, p)`` is unit ``p * N_0 + i``
      with polarity 1 (section 10.2);
    * dense: one operation, ``row = base + unit * chunks``, ``acc = 0``, ``chunks`` words;
    * conv2d: unit ``(c, iy, ix)``; one operation per tap ``(ky, kx)`` (section 10.3, clipped
      at the borders): ``row = base + ((c * K_h + ky) * K_w + kx) * chunks`` and
      ``acc = (y * W_out + x) * chunks`` (the output position), ``chunks`` words each;
    * pool2d: one single-word operation per window that holds the unit: ``acc = (y * W_out + x)
      * chunks + c // P``, +1 in lane ``c % P`` (section 10.4; ``P`` a power of two);
    * an event that reaches nothing (an input position no window covers) is one operation that
      adds nothing, one cycle; a flush is passed on.

    The unit is split into channel, row and column by constant multiplications (``reciprocal``);
    the taps of a row and a column come from per-layer tables (``window_table``).

    Ports
    -----
    i_event : In(stream.Signature(SynapseEventLayout))
    o_op : Out(stream.Signature(OpLayout))
        Operations, one per cycle while ready; the first 5 cycles after its event is taken
        (four 2-entry queues and the tap register). Throughput one operation per cycle, no
        cycle lost between events.
    layer : In(LAYER_WIDTH)
        Stable while the layer's events pass.
    """
    def __init__(self, geom: CoreGeometry):
        self._geom = geom
        super().__init__({
            "i_event": In(stream.Signature(SynapseEventLayout(geom.idx_w))),
            "o_op": Out(stream.Signature(OpLayout(geom))),
            "layer": In(LAYER_WIDTH),
        })

    def elaborate(self, platform):
        g = self._geom
        P, L = g.lanes, g.n_layers
        m = Module()
        unit_w = max(g.units_in).bit_length() + 1
        aw, ww = g.acc_addr_w, g.weight_addr_w
        log_p = P.bit_length() - 1
        max_k = max([s[3][0] for s in g.spatial if s is not None] + [1])
        max_kw = max([s[3][1] for s in g.spatial if s is not None] + [1])

        def queue(fields, name):
            q = RegisterSlice(data.StructLayout({"flush": 1, "polarity": 1, **fields}))
            m.submodules[name] = q
            return q

        # ---- stage A: the input unit, its channel (unit // (H * W)), the dense row product ----
        ev = self.i_event.payload
        unit = Signal(unit_w)
        pol = Signal()
        m.d.comb += [unit.eq(ev.index), pol.eq(ev.polarity)]
        if g.input_channels:
            with m.If(self.layer == 0):
                m.d.comb += [unit.eq(ev.index + (ev.polarity * g.sizes[0])), pol.eq(1)]
        q1 = queue({"unit": unit_w, "c": unit_w, "prod": ww}, "q1")
        c = Signal(unit_w)
        prod = Signal(ww)
        with m.Switch(self.layer):
            for l in range(L):
                with m.Case(l):
                    if g.kinds[l] == "dense":
                        m.d.comb += prod.eq(unit * g.chunks[l])
                    else:
                        _, (cin, h, w), *_ = g.spatial[l]
                        M, s = reciprocal(h * w, g.units_in[l])
                        m.d.comb += c.eq((unit * M) >> s)
        m.d.comb += [q1.i.valid.eq(self.i_event.valid), self.i_event.ready.eq(q1.i.ready),
                     q1.i.payload.flush.eq(ev.flush), q1.i.payload.polarity.eq(pol),
                     q1.i.payload.unit.eq(unit), q1.i.payload.c.eq(c), q1.i.payload.prod.eq(prod)]

        # ---- stage B: the position in the channel, the channel's weight rows ----
        a = q1.o.payload
        q2 = queue({"rem": unit_w, "row": ww, "k": aw, "lane": range(max(2, P))}, "q2")
        rem = Signal(unit_w)
        row = Signal(ww)
        with m.Switch(self.layer):
            for l in range(L):
                with m.Case(l):
                    if g.kinds[l] == "dense":
                        m.d.comb += row.eq(g.weight_base[l] + a.prod)
                    else:
                        _, (cin, h, w), _, (kh, kw), _, _ = g.spatial[l]
                        m.d.comb += [rem.eq(a.unit - a.c * (h * w)),
                                     row.eq(g.weight_base[l] + a.c * (kh * kw * g.chunks[l]))]
        m.d.comb += [q2.i.valid.eq(q1.o.valid), q1.o.ready.eq(q2.i.ready),
                     q2.i.payload.flush.eq(a.flush), q2.i.payload.polarity.eq(a.polarity),
                     q2.i.payload.rem.eq(rem), q2.i.payload.row.eq(row),
                     q2.i.payload.k.eq(a.c >> log_p), q2.i.payload.lane.eq(a.c[:max(1, log_p)] if log_p else 0)]

        # ---- stage C: the input row (rem // W) ----
        b = q2.o.payload
        q3 = queue({"rem": unit_w, "iy": unit_w, "row": ww, "k": aw, "lane": range(max(2, P))}, "q3")
        iy = Signal(unit_w)
        with m.Switch(self.layer):
            for l in range(L):
                with m.Case(l):
                    if g.kinds[l] != "dense":
                        _, (cin, h, w), *_ = g.spatial[l]
                        M, s = reciprocal(w, h * w)
                        m.d.comb += iy.eq((b.rem * M) >> s)
        m.d.comb += [q3.i.valid.eq(q2.o.valid), q2.o.ready.eq(q3.i.ready),
                     q3.i.payload.flush.eq(b.flush), q3.i.payload.polarity.eq(b.polarity),
                     q3.i.payload.rem.eq(b.rem), q3.i.payload.iy.eq(iy),
                     q3.i.payload.row.eq(b.row), q3.i.payload.k.eq(b.k), q3.i.payload.lane.eq(b.lane)]

        # ---- stage D: the column; the taps of the row and the column from the tables ----
        cc = q3.o.payload
        q4 = queue({"a": aw, "w": ww, "rh": range(max_k + 1), "rw": range(max_kw + 1),
                    "single": 1, "mode": 2, "lane": range(max(2, P))}, "q4")
        ix = Signal(unit_w)
        rh, rw = Signal(range(max_k + 1)), Signal(range(max_kw + 1))
        ah, aw_, wh, wwd = Signal(aw), Signal(aw), Signal(ww), Signal(ww)
        single, mode = Signal(), Signal(2)
        kadd = Signal(aw)           # a pool2d layer's word of the channel's lane
        m.d.comb += [rh.eq(1), rw.eq(1), mode.eq(OpMode.WEIGHTS)]
        with m.Switch(self.layer):
            for l in range(L):
                with m.Case(l):
                    if g.kinds[l] == "dense":
                        continue
                    kind, (cin, h, w), (cout, ho, wo), (kh, kw), (sh, sw), (ph, pw) = g.spatial[l]
                    ch = g.chunks[l]
                    conv = kind == "conv2d"
                    m.d.comb += ix.eq(cc.rem - cc.iy * w)
                    rows = window_table(h, kh, sh, ph, ho, wo * ch, kw * ch if conv else 0)
                    cols = window_table(w, kw, sw, pw, wo, ch, ch if conv else 0)
                    for sel, table, r_sig, a_sig, w_sig in ((cc.iy, rows, rh, ah, wh),
                                                             (ix, cols, rw, aw_, wwd)):
                        with m.Switch(sel):
                            for i, (r, av, wv) in enumerate(table):
                                with m.Case(i):
                                    m.d.comb += [r_sig.eq(r), a_sig.eq(av), w_sig.eq(wv)]
                    if not conv:
                        m.d.comb += [single.eq(1), mode.eq(OpMode.LANE), kadd.eq(cc.k)]
        empty = (rh == 0) | (rw == 0)
        out = q4.i.payload
        m.d.comb += [q4.i.valid.eq(q3.o.valid), q3.o.ready.eq(q4.i.ready),
                     out.flush.eq(cc.flush), out.polarity.eq(cc.polarity), out.lane.eq(cc.lane),
                     out.rh.eq(rh), out.rw.eq(rw),
                     out.single.eq(single | empty), out.mode.eq(mode),
                     out.a.eq(ah + aw_ + kadd),
                     out.w.eq(cc.row + wh + wwd)]
        with m.If(empty):
            m.d.comb += out.mode.eq(OpMode.NOTHING)
        with m.If(empty | cc.flush):
            m.d.comb += [out.rh.eq(1), out.rw.eq(1)]

        # ---- the tap iterator: the event's taps, row by row, one operation per cycle ----
        d = q4.o.payload
        have = Signal()
        cur = Signal(OpLayout(g))
        a_row, w_row = Signal(aw), Signal(ww)
        i_left, j_left = Signal(range(max_k + 1)), Signal(range(max_kw + 1))
        rw_r = Signal(range(max_kw + 1))
        col_da, col_dw = Signal(aw), Signal(ww)
        row_da, row_dw = Signal(aw), Signal(ww)
        with m.Switch(self.layer):
            for l in range(L):
                with m.Case(l):
                    if g.kinds[l] != "dense":
                        kind, _, (cout, ho, wo), (kh, kw), (sh, sw), _ = g.spatial[l]
                        ch = g.chunks[l]
                        conv = kind == "conv2d"
                        m.d.comb += [col_da.eq(ch), col_dw.eq(sw * ch if conv else 0),
                                     row_da.eq(wo * ch), row_dw.eq(sh * kw * ch if conv else 0)]
        o = self.o_op
        m.d.comb += [o.valid.eq(have), o.payload.eq(cur)]
        transfer = o.valid & o.ready
        done = (i_left == 0) & (j_left == 0)
        take = ~have | (transfer & done)
        m.d.comb += q4.o.ready.eq(take)
        with m.If(transfer):
            with m.If(j_left != 0):
                m.d.sync += [j_left.eq(j_left - 1), cur.acc.eq(cur.acc + col_da),
                             cur.row.eq(cur.row - col_dw)]
            with m.Elif(i_left != 0):
                m.d.sync += [i_left.eq(i_left - 1), j_left.eq(rw_r - 1),
                             a_row.eq(a_row + row_da), w_row.eq(w_row - row_dw),
                             cur.acc.eq(a_row + row_da), cur.row.eq(w_row - row_dw)]
            with m.Else():
                m.d.sync += have.eq(0)
        with m.If(take & q4.o.valid):
            m.d.sync += [have.eq(1), cur.flush.eq(d.flush), cur.polarity.eq(d.polarity),
                         cur.single.eq(d.single), cur.mode.eq(d.mode), cur.lane.eq(d.lane),
                         cur.acc.eq(d.a), cur.row.eq(d.w), a_row.eq(d.a), w_row.eq(d.w),
                         i_left.eq(d.rh - 1), j_left.eq(d.rw - 1), rw_r.eq(d.rw)]
        return m
