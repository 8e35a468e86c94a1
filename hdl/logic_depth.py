"""``python -m bsnn.hdl.logic_depth NETLIST.json``: the deepest register-to-register paths of a
synthesized design, counted in LUTs (iCE40 ``SB_LUT4`` / ECP5 ``LUT4``; carry cells count a
fraction, as they are fast), grouped by source and destination register.

A place-and-route run takes minutes and reports one critical path; this lists every path of
at least ``--min-depth`` levels in Yosys' JSON netlist in a second (``bsnn_top.json`` in a
``bsnn bitstream`` build directory), which is how the timing work of docs/fpga.md found what
to cut. Routing, not logic, is most of the delay on the iCE40, so depth is a guide, not a
timing number.
"""
import argparse
import json
import re
import sys
from collections import defaultdict

__all__ = ["deep_paths", "main"]

# Levels per cell type on a path (carry chains are fast: a fraction per cell).
CELL_LEVELS = {"SB_LUT4": 1.0, "LUT4": 1.0, "SB_CARRY": 0.08, "CCU2C": 0.3,
               "PFUMX": 0.3, "L6MUX21": 0.3}
CLOCK_PINS = {"C", "CLK", "RCLK", "WCLK", "CLOCK", "CLKA", "CLKB", "CLKR", "CLKW"}


def _register_name(cell: str) -> str:
    """The design register a mapped cell's name comes from (Yosys/nextpnr suffixes dropped)."""
    return re.sub(r"_SB_.*|_TRELLIS.*|\$.*|_LUT4.*|_CCU2.*", "", cell)


def deep_paths(netlist: dict, min_depth: float = 6.0) -> list:
    """``[(depth, source register, destination register)]``, deepest first, one entry per
    register pair, for every path from a sequential cell's output to a sequential cell's
    input of at least ``min_depth`` levels."""
    modules = netlist["modules"]
    top = next((m for m in modules.values() if m.get("attributes", {}).get("top")),
               next(iter(modules.values())))
    cells = top["cells"]
    driver = {}
    for name, cell in cells.items():
        for port, direction in cell["port_directions"].items():
            if direction == "output":
                for bit in cell["connections"][port]:
                    if isinstance(bit, int):
                        driver[bit] = name

    arrival = {}     # bit -> (levels, source cell)
    visiting = set()

    def inputs_of(name):
        cell = cells[name]
        return [i for p, d in cell["port_directions"].items() if d == "input"
                for i in cell["connections"][p] if isinstance(i, int)]

    def arrive(bit):
        # Iterative post-order walk (deep netlists; a combinational loop counts as a start).
        stack = [(bit, False)]
        while stack:
            b, expanded = stack.pop()
            if b in arrival:
                continue
            name = driver.get(b)
            if name is None or cells[name]["type"] not in CELL_LEVELS:
                arrival[b] = (0.0, name)
                continue
            if not expanded:
                visiting.add(b)
                stack.append((b, True))
                stack.extend((i, False) for i in inputs_of(name)
                             if i not in arrival and i not in visiting)
                continue
            visiting.discard(b)
            best = max((arrival.get(i, (0.0, None)) for i in inputs_of(name)),
                       default=(0.0, None), key=lambda a: a[0])
            arrival[b] = (best[0] + CELL_LEVELS[cells[name]["type"]], best[1])
        return arrival[bit]

    worst = defaultdict(float)
    for name, cell in cells.items():
        if cell["type"] in CELL_LEVELS:
            continue
        for port, direction in cell["port_directions"].items():
            if direction != "input" or port in CLOCK_PINS:
                continue
            for bit in cell["connections"][port]:
                if not isinstance(bit, int):
                    continue
                depth, source = arrive(bit)
                if depth >= min_depth and source is not None:
                    key = (_register_name(source), _register_name(name))
                    worst[key] = max(worst[key], depth)
    return sorted(((d, s, t) for (s, t), d in worst.items()), key=lambda x: (-x[0], x[1], x[2]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bsnn.hdl.logic_depth", description=__doc__.split("\n\n")[0])
    p.add_argument("netlist", help="Yosys JSON netlist (bsnn_top.json of a bitstream build)")
    p.add_argument("--min-depth", type=float, default=6.0, help="list paths of at least this many levels")
    p.add_argument("--limit", type=int, default=40, help="register pairs to list")
    args = p.parse_args(argv)
    try:
        with open(args.netlist) as f:
            netlist = json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        print(f"logic_depth: cannot read {args.netlist}: {exc}", file=sys.stderr)
        return 2
    paths = deep_paths(netlist, args.min_depth)
    for depth, source, dest in paths[:args.limit]:
        print(f"{depth:5.2f}  {source}  ->  {dest}")
    if not paths:
        print(f"no register-to-register path of {args.min_depth} levels or more")
    return 0


if __name__ == "__main__":
    sys.exit(main())
