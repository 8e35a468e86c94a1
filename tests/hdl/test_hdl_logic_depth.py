"""bsnn.hdl.logic_depth: register-to-register depth in a Yosys JSON netlist."""
import json

from bsnn.hdl.logic_depth import deep_paths, main


def _netlist(chain, loop=False):
    """ff_a -> chain of LUT4 / CARRY cells -> ff_b (bit numbers from 10 up); optionally a
    LUT that feeds itself on the side."""
    cells = {"ff_a": {"type": "SB_DFF", "port_directions": {"C": "input", "D": "input", "Q": "output"},
                      "connections": {"C": [1], "D": [2], "Q": [10]}}}
    bit = 10
    for k, kind in enumerate(chain):
        cells[f"c{k}"] = {"type": kind, "port_directions": {"I0": "input", "I1": "input", "O": "output"},
                          "connections": {"I0": [bit], "I1": [3], "O": [bit + 1]}}
        bit += 1
    cells["ff_b"] = {"type": "SB_DFF", "port_directions": {"C": "input", "D": "input", "Q": "output"},
                     "connections": {"C": [1], "D": [bit], "Q": [2]}}
    if loop:
        cells["lp"] = {"type": "SB_LUT4", "port_directions": {"I0": "input", "O": "output"},
                       "connections": {"I0": [99], "O": [99]}}
        cells["ff_c"] = {"type": "SB_DFF", "port_directions": {"C": "input", "D": "input", "Q": "output"},
                         "connections": {"C": [1], "D": [99], "Q": [98]}}
    return {"modules": {"top": {"attributes": {"top": 1}, "cells": cells}}}


def test_depth_counts_luts_and_a_fraction_per_carry():
    net = _netlist(["SB_LUT4", "SB_CARRY", "SB_LUT4", "SB_LUT4"])
    paths = deep_paths(net, min_depth=3)
    assert len(paths) == 1 and paths[0][1:] == ("ff_a", "ff_b")
    assert abs(paths[0][0] - 3.08) < 1e-9
    assert deep_paths(net, min_depth=3.1) == []


def test_combinational_loop_does_not_hang(tmp_path, capsys):
    net = _netlist(["SB_LUT4"] * 7, loop=True)
    assert deep_paths(net, min_depth=7)[0][1:] == ("ff_a", "ff_b")
    path = tmp_path / "n.json"
    path.write_text(json.dumps(net))
    assert main([str(path), "--min-depth", "7"]) == 0
    assert "ff_a  ->  ff_b" in capsys.readouterr().out
    assert main([str(tmp_path / "missing.json")]) == 2
