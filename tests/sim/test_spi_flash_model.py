"""The Verilog SPI flash model of the board-top simulations (sim/spi_flash_model.v) behaves bit
for bit like the Python one (sim/spi_flash.py), which the Amaranth tests of the flash loader use:
the same random transactions on both simulators (sim/cocotb_spi_flash.py)."""
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

from bsnn.firmware_export.paths import build_root
from bsnn.sim.spi_flash import VERILOG_MODEL, flash_model_verilog, flash_plusargs, read_flash_log
from bsnn.sim.toolchain import prepare_environment
from tests.sim.simulators import require_simulator

TOP = "bsnn_flash_alone"


@pytest.mark.rtl
@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_verilog_flash_model_matches_python_model(simulator):
    require_simulator(simulator)
    rng = np.random.default_rng(5)
    image, offset = rng.integers(0, 256, 300, dtype=np.uint8).tobytes(), 0x1000
    job = {"seed": 11, "image": image.hex(), "offset": offset, "transactions": 300}
    prepare_environment(simulator)
    from cocotb_tools.runner import get_runner
    runner = get_runner(simulator)
    with tempfile.TemporaryDirectory(prefix="flash-model-", dir=build_root().resolve()) as tmp:
        tmp = Path(tmp)
        (tmp / f"{TOP}.v").write_text(flash_model_verilog(TOP))
        args = ["-Wno-fatal", "-Wno-lint", "-Wno-style"] if simulator == "verilator" else []
        runner.build(sources=[tmp / f"{TOP}.v", VERILOG_MODEL], hdl_toplevel=TOP, build_dir=tmp,
                     build_args=args, timescale=("1ns", "1ps"), always=True,
                     log_file=tmp / "build.log")
        (tmp / "job.json").write_text(json.dumps(job))
        env = {"BSNN_FLASH_JOB": str(tmp / "job.json"), "BSNN_FLASH_RESULT": str(tmp / "r.json")}
        try:
            runner.test(hdl_toplevel=TOP, hdl_toplevel_lang="verilog", test_module="bsnn.sim.cocotb_spi_flash",
                        build_dir=tmp, test_dir=tmp, extra_env=env, plusargs=flash_plusargs(image, offset, tmp),
                        results_xml=str(tmp / "results.xml"), log_file=tmp / "sim.log")
        except SystemExit:
            pass
        assert (tmp / "r.json").exists(), (tmp / "sim.log").read_text()[-3000:]
        py = json.loads((tmp / "r.json").read_text())
        vlog = read_flash_log(tmp / "flash.log")
    assert py["mismatches"] == []
    # The script exercised what it is meant to: reads of data, and timing violations.
    assert py["bytes_read"] > 200 and len(py["violations"]) > 5
    assert vlog["bytes_read"] == py["bytes_read"]
    assert [(round(t), op, a) for t, op, a in vlog["commands"]] == \
           [(round(t), op, a) for t, op, a in py["commands"]]
    assert [v.split(" ns:")[0] for v in vlog["violations"]] == \
           [f"{float(v.split(' ns:')[0]):.0f}" for v in py["violations"]]
