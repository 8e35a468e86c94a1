"""The ``bsnn`` command: one subcommand per stage of the flow (each also a Makefile target)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"sizes must be comma-separated integers, got {text!r}") from None
    if len(sizes) < 2 or min(sizes) < 1:
        raise argparse.ArgumentTypeError("sizes need an input size and at least one layer, all >= 1")
    return sizes


def cmd_random_model(args) -> int:
    from bsnn.firmware_export.bundle import LayerSpec, random_bundle, save_bundle

    rng = np.random.default_rng(args.seed)
    sizes = args.sizes
    layers = [LayerSpec(size=n, leak_v=args.leak, reset="subtract") for n in sizes[1:-1]]
    layers.append(LayerSpec(size=sizes[-1], reset="none"))
    bundle = random_bundle(rng, sizes=sizes, layers=layers, time_steps=args.time_steps, v_width=16,
                           c_width=16, bias_width=8, readout="potential", max_input_events=sizes[0])
    # Thresholds near the typical input magnitude so that hidden layers actually spike.
    for k, n_in in enumerate(sizes[:-1]):
        bundle.threshold[k] = rng.integers(max(1, n_in // 16), max(2, n_in // 6) + 1,
                                           sizes[k + 1]).astype(np.int64)
    bundle.metadata = {"origin": f"bsnn random-model --seed {args.seed}", "trained": False}
    save_bundle(bundle, args.out)
    print(f"wrote random bundle {'-'.join(map(str, sizes))}, T={args.time_steps} to {args.out}")
    return 0


def cmd_verilog(args) -> int:
    from bsnn.firmware_export.bundle import load_bundle
    from bsnn.hdl.config import HardwareConfig
    from bsnn.hdl.generate import generate

    bundle = load_bundle(args.model).require_dense("bsnn verilog")
    hw = HardwareConfig.from_toml(args.hw_config) if args.hw_config else HardwareConfig()
    if args.lanes:
        hw = hw.replace(lanes=args.lanes) if hasattr(hw, "replace") else HardwareConfig(lanes=args.lanes)
    paths = dict(generate(bundle, hw, args.out) or {})
    from bsnn.firmware_export.bundle import write_atomic
    from bsnn.firmware_export.firmware import c_header, golden_vectors

    out = Path(args.out)
    for hex_path in sorted(out.glob("*.hex")):   # raw binary twins of the $readmemh images
        words = hex_path.read_text().split()
        n_bytes = max(1, -(-4 * len(words[0]) // 8)) if words else 1
        blob = b"".join(int(w, 16).to_bytes(n_bytes, "little") for w in words)
        write_atomic(hex_path.with_suffix(".bin"), blob)
        paths[hex_path.with_suffix(".bin").name] = hex_path.with_suffix(".bin")
    write_atomic(out / "model.h", c_header(bundle).encode())
    paths["model.h"] = out / "model.h"
    if args.vectors:
        from bsnn.training.data import load_encoded
        data = load_encoded(bundle, args.dataset, "test", args.vectors, args.data_root)
        text = golden_vectors(bundle, data.on, data.off, data.labels.tolist())
        write_atomic(out / "golden_vectors.jsonl", text.encode())
        paths["golden_vectors.jsonl"] = out / "golden_vectors.jsonl"
    print(f"wrote Verilog, memory images, C header and manifest for {args.model} to {args.out}")
    for name, p in paths.items():
        print(f"  {name}: {p}")
    return 0


def cmd_eval(args) -> int:
    from bsnn.firmware_export.bundle import load_bundle
    from bsnn.evaluate import evaluate, summary_lines, write_report

    bundle = load_bundle(args.model)
    if args.engine == "rtl":   # before the golden pass over the dataset
        bundle.require_dense("bsnn eval --engine rtl")
    hw = None
    if args.hw_config:
        from bsnn.hdl.config import HardwareConfig
        hw = HardwareConfig.from_toml(args.hw_config)
    report = evaluate(bundle, args.dataset, args.split, args.limit, args.engine, args.simulator,
                      args.data_root, args.encoding, progress=not args.quiet, model_path=str(args.model),
                      hw=hw)
    for line in summary_lines(report):
        print(line)
    if args.json:
        write_report(report, args.json)
        print(f"report written to {args.json}")
    if args.engine == "rtl" and not report["bit_exact"]:
        return 1
    return 0


def cmd_sim(args) -> int:
    """The randomized RTL regression (bsnn.sim.regression) on one or both simulators."""
    from tqdm import tqdm

    from bsnn.sim.regression import BUILDS, DEFAULT_CASES, SIMULATORS, bundles_per_build, run_build
    from bsnn.sim.toolchain import availability

    simulators = [args.simulator] if args.simulator else list(SIMULATORS)
    for simulator in simulators:
        reason = availability(simulator)
        if reason:
            raise SystemExit(f"bsnn sim: {reason}")
    n_bundles = bundles_per_build(args.cases or DEFAULT_CASES)
    failures = []
    jobs = [(s, b) for s in simulators for b in range(len(BUILDS))]
    for simulator, build_index in tqdm(jobs, desc="builds", unit="build"):
        failures += run_build(simulator, build_index, n_bundles, args.seed or 0)
    cases = n_bundles * len(BUILDS) * 2
    for line in failures[:20]:
        print(line)
    print(f"{cases} random cases per simulator on {', '.join(simulators)}: "
          + ("all match the golden model" if not failures else f"{len(failures)} MISMATCHES"))
    return 1 if failures else 0


def cmd_lint(args) -> int:
    from bsnn.sim.lint import lint

    target = args.verilog / "bsnn_core.v" if args.verilog.is_dir() else args.verilog
    code, out = lint(target)
    print(out if code else f"verilator --lint-only -Wall: {target} is clean")
    return code


def cmd_export(args) -> int:
    from bsnn.training.export import export_checkpoint

    meta = export_checkpoint(args.checkpoint, args.out, golden_eval=not args.no_eval,
                             eval_limit=args.limit, data_root=args.data_root,
                             fit_widths=args.fit_widths)
    if "widths_fitted" in meta:
        print(f"widths chosen from the training data: {meta['widths_fitted']['from']} -> "
              f"{meta['widths_fitted']['to']}")
    acc = meta.get("test_acc_hardware_exact")
    print(f"exported {args.checkpoint} to {args.out}"
          + (f": hardware-exact test accuracy {100 * acc:.2f} %" if acc is not None else ""))
    return 0


def cmd_sweep(args) -> int:
    from bsnn.sweep import run_sweep
    return int(run_sweep(args) or 0)


def _passthrough(module: str):
    def run(args) -> int:
        return _run_passthrough(module, args.args)
    return run


def cmd_train(args) -> int:
    try:
        from bsnn.training.train import run_train
    except ImportError as exc:  # pragma: no cover - training is part of the package
        raise SystemExit(f"bsnn: error: training is unavailable ({exc})")
    return int(run_train(args) or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bsnn",
        description="Binary spiking neural networks on FPGAs: train, export, generate Verilog, "
                    "and verify the RTL spike for spike against the golden model.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("random-model", help="write a random (untrained) bundle, for trying the flow")
    p.add_argument("--out", required=True, type=Path, help="bundle directory to write")
    p.add_argument("--sizes", type=_sizes, default=[784, 64, 10], help="N0,N1,...,NL (default 784,64,10)")
    p.add_argument("--time-steps", type=int, default=4, help="time steps T (default 4)")
    p.add_argument("--leak", type=int, default=2, help="leak shift of hidden layers, 0 = none (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_random_model)

    p = sub.add_parser("verilog", help="generate the core's Verilog, memory images and manifest")
    p.add_argument("--model", required=True, type=Path, help="bundle directory")
    p.add_argument("--out", required=True, type=Path, help="output directory (e.g. build/verilog)")
    p.add_argument("--hw-config", type=Path, help="hardware configuration (TOML)")
    p.add_argument("--lanes", type=int, help="synapse lanes P (overrides the config)")
    p.add_argument("--vectors", type=int, default=0,
                   help="also write golden vectors (input events and expected outputs) for the "
                        "first N test samples of --dataset")
    p.add_argument("--dataset", default="mnist", choices=["mnist", "fashion-mnist", "nmnist"])
    p.add_argument("--data-root", type=Path, help="datasets folder (default ../shared/datasets)")
    p.set_defaults(func=cmd_verilog)

    p = sub.add_parser("eval", help="evaluate a bundle on a dataset (golden model or RTL)")
    p.add_argument("--model", required=True, type=Path, help="bundle directory")
    p.add_argument("--dataset", required=True, choices=["mnist", "fashion-mnist", "nmnist"])
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--limit", type=int, help="first N samples only")
    p.add_argument("--engine", default="golden", choices=["golden", "rtl"])
    p.add_argument("--simulator", default="verilator", choices=["verilator", "icarus"],
                   help="RTL simulator for --engine rtl (default verilator)")
    p.add_argument("--encoding", help="override the input encoding recorded in the bundle")
    p.add_argument("--hw-config", type=Path,
                   help="hardware configuration for --engine rtl (TOML, e.g. hdl/boards/ulx3s-85f.toml)")
    p.add_argument("--data-root", type=Path, help="datasets folder (default ../shared/datasets)")
    p.add_argument("--json", type=Path, help="write the report as JSON here")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("sim", help="cocotb regression: RTL vs golden model on random bundles")
    p.add_argument("--cases", type=int, help="random cases per simulator (default 216; more for soak runs)")
    p.add_argument("--simulator", choices=["verilator", "icarus"], help="only this simulator")
    p.add_argument("--seed", type=int, help="seed of the random cases (printed by a failing run)")
    p.set_defaults(func=cmd_sim)

    p = sub.add_parser("lint", help="verilator --lint-only -Wall on generated Verilog")
    p.add_argument("verilog", type=Path, nargs="?", default=Path("build/verilog"),
                   help="a directory from 'bsnn verilog' or a .v file (default build/verilog)")
    p.set_defaults(func=cmd_lint)

    p = sub.add_parser("export", help="export a training checkpoint to a model bundle")
    p.add_argument("--checkpoint", required=True, type=Path, help="checkpoint written by bsnn train")
    p.add_argument("--out", required=True, type=Path, help="bundle directory to write (atomically)")
    p.add_argument("--no-eval", action="store_true", help="skip the golden-model test-set evaluation")
    p.add_argument("--fit-widths", action="store_true",
                   help="choose state and bias widths from the training data (narrowest that never saturate there)")
    p.add_argument("--limit", type=int, help="evaluate on the first N test samples only")
    p.add_argument("--data-root", help="datasets folder (default ../shared/datasets)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("sweep", help="sparse-firing regularization sweep: accuracy vs firing and cycles")
    from bsnn.sweep import add_sweep_arguments
    add_sweep_arguments(p)
    p.set_defaults(func=cmd_sweep)

    for name, module, text in (("bitstream", "bsnn.hdl.bitstream", "place and route a board top (YoWASP): bitstream + utilisation/Fmax report"),
                               ("weights", "bsnn.hdl.weights_patch", "put another model into an existing bitstream (icebram/ecpbram)"),
                               ("board", "bsnn.board", "run a dataset on a real board over UART, checked against the golden model")):
        p = sub.add_parser(name, help=text, add_help=False,
                           description=f"{text}. Arguments go to 'python -m {module}'; "
                                       f"'bsnn {name} --help' lists them.")
        p.add_argument("args", nargs=argparse.REMAINDER)
        p.set_defaults(func=_passthrough(name))

    from bsnn.nir_cli import add_nir_parser
    add_nir_parser(sub)   # bsnn nir export | import

    p = sub.add_parser("train", help="train a BSNN from a TOML config")
    try:
        from bsnn.training.train import add_train_arguments
        add_train_arguments(p)
    except ImportError:
        p.add_argument("--config", type=Path, required=True)
    p.set_defaults(func=cmd_train)
    return parser


PASSTHROUGH = {"bitstream": "bsnn.hdl.bitstream", "weights": "bsnn.hdl.weights_patch", "board": "bsnn.board"}


def _run_passthrough(name: str, argv: list[str]) -> int:
    import importlib

    sys.argv[0] = f"bsnn {name}"
    module = importlib.import_module(PASSTHROUGH[name])
    if name == "bitstream":   # the throughput figures are measured in RTL simulation
        from bsnn.bench.core_speed import measure
        return int(module.main(argv, measure=measure) or 0)
    return int(module.main(argv) or 0)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    from bsnn.firmware_export.bundle import BundleError
    if argv and argv[0] in PASSTHROUGH:   # their own parsers, --help included
        try:
            return _run_passthrough(argv[0], argv[1:])
        except BundleError as exc:        # an invalid bundle, or one the core cannot run
            print(f"bsnn: error: {exc}", file=sys.stderr)
            return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    from bsnn.firmware_export.golden import EventError
    from bsnn.evaluate import EvalError

    expected = (BundleError, EventError, EvalError, FileNotFoundError, ValueError)
    try:
        return args.func(args)
    except expected as exc:
        print(f"bsnn: error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bsnn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
