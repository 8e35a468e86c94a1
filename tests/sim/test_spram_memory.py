"""The iCE40UP5K SPRAM weight memory (bsnn.hdl.weights.SPRAMWeightMemory) with Yosys' own
SB_SPRAM256KA model: packed words (two 8-bit or four 4-bit words per 16-bit SPRAM word, nibble
write masks) and bank selection, crossing banks with a small network (bank_words = 8)."""
import json
import os
import tempfile
from pathlib import Path

import pytest
from amaranth.back import verilog

from bsnn.hdl.config import CoreGeometry
from bsnn.hdl.layouts import ConfigTarget, ConfigWriteLayout
from bsnn.hdl.weights import SPRAMWeightMemory
from bsnn.sim.runner import icarus_time_zero_fix
from bsnn.firmware_export.paths import build_root
from bsnn.sim.toolchain import availability, prepare_environment

REPO = Path(__file__).resolve().parents[2]
from tests.sim.test_board_uart import spram_model

TOP = "bsnn_spram"


@pytest.mark.rtl
@pytest.mark.parametrize("lanes,sizes", [(8, (12, 9, 5)), (4, (12, 9, 5)), (12, (12, 20))])
def test_spram_weights_packed_across_banks(lanes, sizes):
    reason = availability("icarus")
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"icarus is required in CI: {reason}")
        pytest.skip(reason)
    geom = CoreGeometry(sizes=sizes, v_width=8, c_width=8, bias_width=4, lanes=lanes,
                        trace=False, max_input_events=sizes[0])
    mem = SPRAMWeightMemory(geom, bank_words=8)
    assert mem.banks >= 2                         # the test must cross a bank boundary
    text = verilog.convert(mem, name=TOP, emit_src=False, strip_internal_attrs=True)
    text = icarus_time_zero_fix(text + "\n" + spram_model())
    layout = ConfigWriteLayout(geom.cfg_addr_w, geom.cfg_data_w)
    job = {"depth": geom.weight_depth, "lanes": lanes, "seed": lanes, "latency": 3,
           "target_weights": int(ConfigTarget.WEIGHTS) << layout["target"].offset,
           "addr_lsb": layout["address"].offset, "data_lsb": layout["data"].offset}
    prepare_environment("icarus")
    from cocotb_tools.runner import get_runner
    runner = get_runner("icarus")
    with tempfile.TemporaryDirectory(prefix="spram-", dir=build_root().resolve()) as tmp:
        tmp = Path(tmp)
        src = tmp / f"{TOP}.v"
        src.write_text(text)
        runner.build(sources=[src], hdl_toplevel=TOP, build_dir=tmp, timescale=("1ns", "1ps"),
                     always=True, log_file=tmp / "build.log")
        (tmp / "job.json").write_text(json.dumps(job))
        env = {"BSNN_SPRAM_JOB": str(tmp / "job.json"), "BSNN_SPRAM_RESULT": str(tmp / "r.json")}
        try:
            runner.test(hdl_toplevel=TOP, hdl_toplevel_lang="verilog", test_module="bsnn.sim.cocotb_spram",
                        build_dir=tmp, test_dir=tmp, extra_env=env,
                        results_xml=str(tmp / "results.xml"), log_file=tmp / "sim.log")
        except SystemExit:
            pass
        assert (tmp / "r.json").exists(), (tmp / "sim.log").read_text()[-3000:]
        result = json.loads((tmp / "r.json").read_text())
    assert result["reads"] == 3 * geom.weight_depth
    assert result["n_errors"] == 0, result["errors"]
