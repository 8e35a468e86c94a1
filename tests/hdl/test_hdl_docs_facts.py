"""The numbers docs/architecture.md and docs/uart-protocol.md state about the hardware (field
widths and order, codes, bit positions, latencies, FIFO sizes) are the ones in the code.

Each check first finds the statement (a reworded doc fails here loudly rather than going
unchecked), then compares every number in it with the layouts, enumerations and geometry."""
import re
from pathlib import Path

import pytest
from amaranth.hdl import Shape

from bsnn.hdl.config import CYCLES_WIDTH, STEP_WIDTH, CoreGeometry
from bsnn.hdl.hostlink import PROTOCOL_VERSION, RX_FIFO_DEPTH, Opcode, Reply
from bsnn.hdl.layouts import (ConfigTarget, ConfigWriteLayout, ErrorBit, GlobalAddress,
                              InputEventLayout, LayerModeLayout, NeuronStateLayout,
                              OutputStatsLayout, ReadoutRule, ResetMode, ResultKind, ResultLayout)
from bsnn.sim.board_host import WINDOW

DOCS = Path(__file__).resolve().parents[2] / "docs"
ARCH = (DOCS / "architecture.md").read_text()
UART = (DOCS / "uart-protocol.md").read_text()

# Distinct values for the symbolic widths the docs write, so that a symbol standing for the
# wrong field cannot pass.
SYMBOLS = {"idx_w": 7, "v_width": 11, "c_width": 5, "cfg_addr_w": 17, "cfg_data_w": 19}


def _row(text, first_cell):
    """The cells of the table row whose first cell is ``first_cell``."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    pytest.fail(f"no table row starting with {first_cell!r}")


def _width(text):
    """A width as the docs write it: a number, a symbol, ``signed(symbol)``."""
    text = re.sub(r"^signed\((.*)\)$", r"\1", text.strip())
    return int(text) if text.isdigit() else SYMBOLS[text]


def _struct_statement(text):
    """``[(field, width or None)]`` of backticked ``name: width`` / ``name`` items, in order."""
    return [(name, _width(w) if w else None)
            for name, w in re.findall(r"`([a-z_]+)(?:: ([^`]+))?`", text)]


def _layout_fields(layout):
    return [(name, field.width) for name, field in layout]


@pytest.mark.parametrize("port,layout", [
    ("i_events", InputEventLayout(SYMBOLS["idx_w"])),
    ("o_results", ResultLayout(SYMBOLS["idx_w"], SYMBOLS["v_width"])),
    ("i_config", ConfigWriteLayout(SYMBOLS["cfg_addr_w"], SYMBOLS["cfg_data_w"])),
])
def test_port_payload_fields_in_order_with_their_widths(port, layout):
    stated = _struct_statement(_row(ARCH, f"`{port}`")[2].split(":", 1)[1])
    assert [name for name, _ in stated] == [name for name, _ in layout], port
    widths = dict(_layout_fields(layout))
    for name, width in stated:
        if width is not None:
            assert width == widths[name], (port, name)


def test_scalar_ports_and_error_bits():
    assert int(_row(ARCH, "`cycles`")[2]) == CYCLES_WIDTH
    assert int(_row(ARCH, "`error`")[2]) == ErrorBit.WIDTH
    bits = dict(re.findall(r"bit (\d+) `([A-Z]+)`", _row(ARCH, "`error`")[3]))
    assert bits == {str(ErrorBit.INDEX): "INDEX", str(ErrorBit.OVERFLOW): "OVERFLOW"}


def test_result_kinds_config_targets_and_global_addresses():
    kinds = dict(re.findall(r"^\| (\d) (SPIKE|POTENTIAL|CLASS) \|", ARCH, re.M))
    assert {name: int(code) for code, name in kinds.items()} == {
        "SPIKE": ResultKind.SPIKE, "POTENTIAL": ResultKind.POTENTIAL, "CLASS": ResultKind.CLASS}
    targets = re.findall(r"^\| (\d) (WEIGHTS|BIAS|THRESHOLD|LAYER_MODE|GLOBAL) \|", ARCH, re.M)
    assert {name: int(code) for code, name in targets} == {
        name: getattr(ConfigTarget, name)
        for name in ("WEIGHTS", "BIAS", "THRESHOLD", "LAYER_MODE", "GLOBAL")}
    glob = _row(ARCH, f"{ConfigTarget.GLOBAL} GLOBAL")[1]
    steps = re.search(r"(\d): `T` \((\d+) bits\)", glob)
    assert (int(steps[1]), int(steps[2])) == (GlobalAddress.TIME_STEPS, STEP_WIDTH)
    rules = re.search(r"(\d): readout rule \(([^;]*);", glob)
    assert int(rules[1]) == GlobalAddress.READOUT
    assert {name: int(code) for code, name in re.findall(r"(\d) (\w+)", rules[2])} == ReadoutRule.NAMES
    assert int(re.search(r"(\d): `max_input_events`", glob)[1]) == GlobalAddress.MAX_INPUT_EVENTS
    assert int(re.search(r"(\d): trace enable", glob)[1]) == GlobalAddress.TRACE


def test_layer_mode_bits():
    rows = re.findall(r"^\| (\d+)(?::(\d+))? \| `(\w+)`(.*)\|$", ARCH, re.M)
    stated = {name: [int(lo or hi), int(hi) - int(lo or hi) + 1] for hi, lo, name, _ in rows}
    layout = LayerModeLayout()
    assert stated == {name: [f.offset, f.width] for name, f in layout}
    reset = next(rest for _, _, name, rest in rows if name == "reset")
    assert {name: int(code) for code, name in re.findall(r"(\d) (subtract|zero|none)", reset)} \
        == ResetMode.NAMES
    assert int(re.search(r"`LayerModeLayout`, low (\d+) bits of `data`", ARCH)[1]) == layout.size


def _memory_word(memory):
    """``[(field, width)]`` of a memory map row's word, written ``{name: width, ...}``."""
    word = re.fullmatch(r"`\{(.*)\}`", _row(ARCH, memory)[2])[1]
    return [(name, _width(w)) for name, w in (item.split(":") for item in word.split(", "))]


def test_memory_words():
    assert _memory_word("neuron state") == _layout_fields(
        NeuronStateLayout(SYMBOLS["v_width"], SYMBOLS["c_width"]))
    assert _memory_word("output stats") == _layout_fields(OutputStatsLayout())


@pytest.mark.parametrize("sizes,lanes,neuron_lanes", [
    ((5, 9, 4, 3), 4, 1), ((5, 9, 4, 3), 8, 4), ((5, 1, 3), 1, 1), ((5, 3), 1, 1)])
def test_spike_queue_depth_rule(sizes, lanes, neuron_lanes):
    assert "most groups of a hidden layer + 1 (at least 3)" in _row(ARCH, "spike queue")[1]
    g = CoreGeometry(sizes=sizes, v_width=8, c_width=8, bias_width=4, lanes=lanes, trace=True,
                     max_input_events=8, neuron_lanes=neuron_lanes)
    hidden = [-(-n // neuron_lanes) for n in sizes[1:-1]]
    assert g.spike_queue_depth == (max(3, max(hidden) + 1) if hidden else 0)


def test_pipeline_latencies():
    short, long = (CoreGeometry(sizes=(2, 2), v_width=8, c_width=8, bias_width=4, lanes=1,
                                trace=True, max_input_events=2, neuron_pipeline=p)
                   for p in ("short", "long"))
    stages = re.search(r"(\d+)-stage pipeline, or (\d+) with `neuron_pipeline = \"long\"`",
                       _row(ARCH, "`hdl/neuron.py`")[2])
    assert (int(stages[1]), int(stages[2])) == (short.neuron_latency, long.neuron_latency)
    d = re.search(r"`D = (\d+)` \(short neuron pipeline\) or `(\d+)` \(long\)", ARCH)
    assert (int(d[1]), int(d[2])) == (short.layer_latency, long.layer_latency)
    # t: one address queue fewer when every layer is one weight word (P >= N_l)
    one_word = CoreGeometry(sizes=(2, 2), v_width=8, c_width=8, bias_width=4, lanes=2, trace=True,
                            max_input_events=2, neuron_pipeline="long")
    t = re.search(r"`t` \(`extra_queues`\).*?`(-?\d+)`; `(-?\d+)` in a\s+dense build", ARCH, re.S)
    assert (int(t[1]), int(t[2])) == (long.extra_queues, one_word.extra_queues)
    assert one_word.layer_latency == long.layer_latency + one_word.extra_queues


def test_uart_protocol_numbers():
    fixed_k = int(re.search(r"`ceil\(\(idx_w \+ (\d+)\) / 8\)`", _row(UART, "`K`")[1])[1])
    assert fixed_k == InputEventLayout(SYMBOLS["idx_w"]).size - SYMBOLS["idx_w"]
    fixed_r = int(re.search(r"`ceil\(\((\d+) \+ idx_w \+ v_width\) / 8\)`", _row(UART, "`R`")[1])[1])
    assert fixed_r == ResultLayout(SYMBOLS["idx_w"], SYMBOLS["v_width"]).size \
        - SYMBOLS["idx_w"] - SYMBOLS["v_width"]
    codes = re.findall(r"^\| `0x([0-9A-Fa-f]{2})` \| (\w+) \|", UART, re.M)
    assert {(int(c, 16), name) for c, name in codes} == {
        (getattr(Opcode, n), n) for n in ("CONFIG", "EVENT", "START", "PING", "INFO", "BOOT",
                                           "EXPECT", "BATCH_EVENT", "BATCH_RUN")} | {
        (getattr(Reply, n), n) for n in ("RESULT", "DONE", "PONG", "INFO", "BOOT",
                                         "BATCH_CLASS", "BATCH_DONE")}
    assert {n for _, n in codes} >= {s.name for s in Opcode}
    assert int(re.search(r"`cycles` \((\d+) bytes\)", _row(UART, "`0xA2`")[2])[1]) * 8 == CYCLES_WIDTH
    assert int(re.search(r"protocol version (\d+)", UART)[1]) == PROTOCOL_VERSION
    # Batch mode: the count field, the BATCH_DONE payload, the per-image overhead, the status bits.
    from bsnn.hdl.batch import COUNT_BYTES, IMAGE_OVERHEAD, BatchDoneLayout, BatchStatus
    assert int(re.search(r"image count `N` \((\d+) bytes\)", UART)[1]) == COUNT_BYTES
    done = re.search(r"status \(1 byte\), images run \((\d+) bytes\), cycles \((\d+) bytes\)",
                     _row(UART, "`0xA8`")[2])
    assert 8 * (1 + int(done[1]) + int(done[2])) == BatchDoneLayout().size
    assert int(re.search(r"cycles_k \+ (\d+)\)", UART)[1]) == IMAGE_OVERHEAD
    bits = re.findall(r"^\| (\d) \| ([A-Z_]+) \|", UART, re.M)
    assert {(1 << int(b), n) for b, n in bits} == {(int(f), f.name) for f in BatchStatus}
    fifo = {int(n) for n in re.findall(r"(\d+)-byte receive FIFO", UART)}
    assert fifo == {RX_FIFO_DEPTH}
    assert int(re.search(r"at most (\d+) command bytes outstanding", UART)[1]) == WINDOW
    # The value signed in R, as ResultLayout has it.
    assert "`value` (signed)" in _row(UART, "`R`")[2]
    assert Shape.cast(ResultLayout(8, 8)["value"].shape).signed
