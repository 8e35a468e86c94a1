"""Board clock: PLL settings from the datasheet relations, the lock reset, the platform top."""
import pytest

from bsnn.hdl.pll import LockReset, PLLError, ecp5_pll, ice40_pll

from hdl_testutil import run_sim


def test_ice40_pll_matches_the_known_setting_and_limits():
    # 12 MHz -> 30 MHz: DIVR 0, DIVF 79, DIVQ 5, filter range 1 (Lattice's icepll gives the same).
    p = ice40_pll(12e6, 30e6)
    assert (p.divr, p.divf, p.divq, p.filter_range, p.f_out) == (0, 79, 5, 1, 30e6)
    for target in (18e6, 20e6, 33.3e6, 42e6, 50e6, 100e6):
        p = ice40_pll(12e6, target)
        assert p.f_out <= target and p.f_out == p.f_vco / 2 ** p.divq
        assert 10e6 <= p.f_pfd <= 133e6 and 533e6 <= p.f_vco <= 1066e6
        assert p.f_out > 0.97 * target
    with pytest.raises(PLLError, match="16..275 MHz"):
        ice40_pll(12e6, 10e6)


def test_ecp5_pll_matches_the_limits():
    p = ecp5_pll(25e6, 90e6)
    assert (p.clki_div, p.clkfb_div, p.f_out) == (5, 18, 90e6)
    assert 400e6 <= p.f_vco <= 800e6 and p.f_pfd >= 3.125e6
    for target in (25e6, 48e6, 100e6, 110e6, 133.3e6):
        p = ecp5_pll(25e6, target)
        assert p.f_out <= target and abs(p.f_out - p.f_pfd * p.clkfb_div) < 1
        assert 400e6 <= p.f_vco <= 800e6 and p.f_out > 0.97 * target
    with pytest.raises(PLLError):
        ecp5_pll(25e6, 1e6)


@pytest.mark.parametrize("por", [0, 5])
def test_lock_reset_waits_for_lock_and_the_delay(por):
    dut = LockReset(por)
    trace = []

    async def bench(ctx):
        for cycle in range(40):
            # lock rises at cycle 3, drops at cycle 25 (a loss of lock), rises again at 30
            ctx.set(dut.lock, 3 <= cycle < 25 or cycle >= 30)
            await ctx.tick()
            trace.append(ctx.get(dut.ready))

    run_sim(dut, bench, deadline_cycles=100)
    # ready after the tick of cycle c reflects lock at cycle c - 2 - por - 1 or earlier.
    rise = trace.index(1)
    assert rise == 3 + 2 + por
    fall = trace.index(0, rise)
    assert fall == 25 + 2 and all(trace[rise:fall])
    assert trace.index(1, fall) == 30 + 2 + por


def test_lock_reset_refuses_negative_delay():
    with pytest.raises(ValueError, match="por_cycles"):
        LockReset(-1)


@pytest.mark.parametrize("board,expect,constraint", [
    ("icebreaker", ["SB_PLL40_PAD", "DIVF 7'1010111", "DIVQ 3'101"],        # 33 MHz
     ("t.pcf", "set_frequency clk12_0__io 15.27")),            # 42 MHz * 12 / 33
    ("ulx3s-85f", ["EHXPLLL", "CLKI_DIV 5", "CLKFB_DIV 18", "CLKOP_DIV 8", "DCCA"],
     ("t.lpf", 'FREQUENCY PORT "clk25_0__io" 30555555.5')),     # 110 MHz * 25 / 90
])
def test_platform_top_runs_the_core_from_the_pll(board, expect, constraint):
    """The board top instantiates the PLL with the searched settings (and on the ECP5 puts the
    reset on a global network), and the oscillator's constraint is scaled so that nextpnr times
    the PLL's output against the target."""
    import numpy as np
    from bsnn.firmware_export.bundle import random_bundle
    from bsnn.hdl.board import BOARDS, platform_top
    from bsnn.hdl.config import HardwareConfig
    bundle = random_bundle(np.random.default_rng(1), sizes=[10, 6, 3])
    platform, top, *_ = platform_top(bundle, HardwareConfig(lanes=4), BOARDS[board])
    plan = platform.prepare(top, name="t")
    il = plan.files["t.il"]
    for text in expect:
        assert text in il, text
    name, line = constraint
    assert line in plan.files[name]


def test_seed_lists():
    import argparse
    from bsnn.hdl.bitstream import parse_seeds
    assert parse_seeds("1-4") == [1, 2, 3, 4] and parse_seeds("2,5,9") == [2, 5, 9]
    for bad in ("", "x", "1,1", "3-1"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_seeds(bad)


def test_seed_sweep_keeps_the_fastest_placement(tmp_path, monkeypatch):
    """--seeds builds each seed in its own directory, then reports the fastest one's build
    (reused, not placed again) and lists every seed's Fmax."""
    import json
    import bsnn.hdl.bitstream as bitstream
    fmax = {1: 38.0, 2: 41.5, 3: 40.2}
    calls = []

    def fake_build(board, model, hw_path=None, out_dir=None, seed=None, reuse=False,
                   throughput_images=100, **kw):
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "placed-with-seed").write_text(str(seed))
        calls.append((seed, reuse, out_dir.name))
        return {"board": board, "device": "iCE40UP5K", "model": str(model), "sizes": [4, 2],
                "time_steps": 1, "command": f"make bitstream BOARD={board} MODEL={model}",
                "build_seconds": 0.0 if reuse else 100.0, "source_commit": None, "nextpnr_seed": seed,
                "hardware": {"lanes": 8, "neuron_lanes": 1, "trace": True}, "weights_in": "bram",
                "utilization": {"logic_cells": {"used": 1, "available": 2}},
                "bitstream": "x.bin",
                "clock": {"fmax_mhz": fmax[seed], "constraint_mhz": 42.0, "core_clock_mhz": 33.0,
                          "board_oscillator_mhz": 12.0, "pll": {},
                          "timing_met_at_core_clock": True}}

    monkeypatch.setattr(bitstream, "build", fake_build)
    out = tmp_path / "build"
    assert bitstream.main(["--board", "icebreaker", "--model", "models/default", "--out", str(out),
                           "--seeds", "1-3", "--throughput-images", "0"]) == 0
    assert [(s, r) for s, r, _ in calls] == [(1, False), (2, False), (3, False), (2, True)]
    assert (out / "placed-with-seed").read_text() == "2"     # the fastest build became the build
    report = json.loads((out / "report-summary.json").read_text())
    assert report["seed_sweep_fmax_mhz"] == {"1": 38.0, "2": 41.5, "3": 40.2}
    assert report["command"].endswith("SEEDS=1,2,3")
    # the build time is the three placements', not the reuse's (which the report called "reused")
    assert report["build_seconds"] == 300.0
    assert "300 s here" in (out / "report.md").read_text()
