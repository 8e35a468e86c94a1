"""Host-link bound of a board build: UART bytes per inference and the inferences per second the
link allows, next to the UART's error budget.

    python -m bsnn.bench.host_link --model models/mnist --board icebreaker --limit 1000 \
        --json build/bench/host_link-icebreaker-mnist.json

The input events and SPIKE records per image come from the golden model on the first ``--limit``
test images (the core produces exactly these, bit for bit); the bytes are those of
``BoardHost.infer`` (``bsnn.hdl.hostlink.link_bytes``: the compact EVENT frames of
docs/uart-protocol.md, the PINGs of its flow control, the RESULT frames back), with the run-time
trace on (every layer's spikes come back) and off (only the output layer's potentials and the
class). The rate is the board's ``[board] uart_baud`` (its TOML), checked against the board's
USB bridge and core clock (``bsnn.hdl.board.board_uart_divisor``). Line time only: the USB
bridge's latency on each PING round trip comes on top on a real board.
"""
from __future__ import annotations

import argparse
import json
import sys
import tomllib
from pathlib import Path

from bsnn.firmware_export.outputs import previous_json, write_file


def measure(model, board_name: str, dataset: str = "mnist", limit: int = 1000,
            data_root=None) -> dict:
    import numpy as np

    from bsnn.firmware_export.bundle import load_bundle
    from bsnn.firmware_export.golden import run_golden
    from bsnn.firmware_export.paths import source_commit
    from bsnn.hdl.bitstream import board_config_path
    from bsnn.hdl.board import BOARDS, board_pll, board_uart_divisor, plan_build
    from bsnn.hdl.config import HardwareConfig
    from bsnn.hdl.hostlink import frame_sizes, link_bytes
    from bsnn.hdl.uart import BRIDGES, uart_budget
    from bsnn.training.data import load_encoded

    board = BOARDS[board_name]
    toml_path = board_config_path(board_name)
    opts = tomllib.loads(toml_path.read_text())["board"]
    bundle = load_bundle(model)
    _, geom, _ = plan_build(bundle, HardwareConfig.from_toml(toml_path), board,
                            opts.get("weights", "auto"))
    clk = board_pll(board, opts.get("clock_mhz")).f_out
    baud = int(opts["uart_baud"])
    budget = uart_budget(BRIDGES[board.uart_bridge], baud, clk,
                         board_uart_divisor(board, clk, baud))
    data = load_encoded(bundle, dataset, "test", limit, data_root)
    gold = run_golden(bundle, data.on, data.off)
    events = gold.events_per_layer[0].numpy().astype(float)
    records = sum(sp.reshape(sp.shape[0], sp.shape[1], -1).sum(dim=(0, 2))
                  for sp in gold.spikes).numpy().astype(float)
    out = {"model": str(model), "board": board_name, "dataset": dataset, "samples": int(len(events)),
           "source_commit": source_commit(), "uart": budget, "frame_bytes": frame_sizes(geom),
           "input_events_mean": float(events.mean()), "input_events_max": int(events.max()),
           "spike_records_mean": float(records.mean())}
    for name, recs in (("trace_on", records.mean()), ("trace_off", 0.0)):
        b = link_bytes(geom, bundle.time_steps, float(events.mean()), float(recs))
        out[name] = {"bytes_to_device": b["to_device"], "bytes_from_device": b["from_device"],
                     # 10 bits per byte; both directions at once, the busier one sets the rate
                     "inferences_per_second": baud / 10 / max(b["to_device"], b["from_device"])}
    worst = link_bytes(geom, bundle.time_steps, float(events.max()), 0.0)
    out["bytes_to_device_max"] = worst["to_device"]
    out["bytes_per_input_event"] = 1 + frame_sizes(geom)["K"]
    return out


def main(argv=None) -> int:
    from bsnn.hdl.board import BOARDS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="models/mnist", type=Path)
    p.add_argument("--board", default="icebreaker", choices=sorted(BOARDS))
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--limit", type=int, default=1000, help="first N test images (default 1000)")
    p.add_argument("--json", type=Path, default=Path("build/bench/host_link.json"))
    args = p.parse_args(argv)
    r = measure(args.model, args.board, args.dataset, args.limit)
    write_file(args.json, (json.dumps(r, indent=1) + "\n").encode(), replaces=previous_json)
    u, on, off = r["uart"], r["trace_on"], r["trace_off"]
    print(f"{args.board}, {args.model}, {r['samples']} {args.dataset} test images: "
          f"{r['input_events_mean']:.0f} input events ({r['bytes_per_input_event']} bytes each), "
          f"{on['bytes_to_device']:.0f} bytes to the board per inference; at {u['baud']} baud "
          f"({u['bridge']}, divisor {u['divisor']}, {100 * u['mismatch']:.2f} % off, budget "
          f"{100 * u['budget']:.1f} %): {off['inferences_per_second']:.0f} inferences/s with the "
          f"trace off, {on['inferences_per_second']:.0f} with it on ({on['bytes_from_device']:.0f} "
          f"bytes back)")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
