"""The ``bsnn`` command: one subcommand per stage of the flow (each also a Makefile target)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from bsnn.firmware_export.bundle import MAX_NEURONS, MAX_TIME_STEPS
from bsnn.firmware_export.encoding import ENCODINGS
from bsnn.firmware_export.errors import BSNNError, InputError, report_error
from bsnn.firmware_export.validate import (OneLineParser, checkpoint_file, existing_dir,
                                           existing_file, int_in, non_negative_int, output_dir,
                                           output_file, positive_int)
from bsnn.hdl.config import MAX_LANES


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"sizes must be comma-separated integers, got {text!r}") from None
    if len(sizes) < 2 or min(sizes) < 1 or max(sizes) > MAX_NEURONS:
        raise argparse.ArgumentTypeError(f"sizes need an input size and at least one layer, all in "
                                         f"[1, {MAX_NEURONS}], got {text!r}")
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


# What `bsnn verilog` writes; an older output folder without the marker is recognised by these.
_VERILOG_NAMES = ("bsnn_core.v", "hardware.json", "model.h", "golden_vectors.jsonl")


def _is_previous_verilog_folder(path: Path) -> bool:
    """A Verilog folder written before outputs carried the marker: its hardware manifest and only
    files of the names `bsnn verilog` writes."""
    import json

    from bsnn.firmware_export.outputs import read_regular_file

    try:
        manifest = json.loads(read_regular_file(path / "hardware.json", 16 << 20))
    except (OSError, ValueError, RecursionError):
        return False
    if not isinstance(manifest, dict) or manifest.get("format") != "bsnn-hardware":
        return False
    return all((p.name in _VERILOG_NAMES or p.suffix in (".hex", ".bin")) and (p.is_symlink() or not p.is_dir())
               for p in path.iterdir())


def cmd_verilog(args) -> int:
    from bsnn.firmware_export.bundle import load_bundle
    from bsnn.firmware_export.firmware import c_header, golden_vectors
    from bsnn.firmware_export.outputs import output_folder, write_staged
    from bsnn.hdl.config import HardwareConfig
    from bsnn.hdl.generate import generate

    bundle = load_bundle(args.model)
    hw = HardwareConfig.from_toml(args.hw_config) if args.hw_config else HardwareConfig()
    if args.lanes is not None:
        try:
            hw = hw.replace(lanes=args.lanes)
        except ValueError as exc:   # e.g. neuron_lanes of --hw-config does not divide --lanes
            raise InputError(f"--lanes {args.lanes}: {exc}") from None
    out = Path(args.out)
    # Everything is built in a fresh staging folder and swapped in when every step succeeded: a
    # failing run leaves the previous output as it was, and nothing planted in it is followed.
    with output_folder(out, "verilog", recognise=_is_previous_verilog_folder,
                       inputs=[args.model, args.hw_config]) as staging:
        names = list(generate(bundle, hw, staging) or {})
        for hex_path in sorted(staging.glob("*.hex")):   # raw binary twins of the $readmemh images
            words = hex_path.read_text().split()
            n_bytes = max(1, -(-4 * len(words[0]) // 8)) if words else 1
            blob = b"".join(int(w, 16).to_bytes(n_bytes, "little") for w in words)
            names.append(write_staged(staging, hex_path.with_suffix(".bin").name, blob).name)
        if bundle.is_dense:     # (the C header does not describe convolutional networks yet)
            names.append(write_staged(staging, "model.h", c_header(bundle).encode()).name)
        if args.vectors:
            from bsnn.training.data import load_encoded
            data = load_encoded(bundle, args.dataset, "test", args.vectors, args.data_root)
            text = golden_vectors(bundle, data.on, data.off, data.labels.tolist())
            names.append(write_staged(staging, "golden_vectors.jsonl", text.encode()).name)
    print(f"wrote Verilog, memory images, C header and manifest for {args.model} to {args.out}")
    for name in names:
        print(f"  {name}: {out / name}")
    return 0


def flash_commands(board, image_path) -> list[str]:
    """The commands that write a flash image at the board's offset (docs/board.md)."""
    off = board.flash_offset
    if board.family == "ice40":
        return [f"iceprog -o {off:#x} {image_path}"]
    return [f"openFPGALoader -b ulx3s -f -o {off:#x} {image_path}",
            f"fujprog -j flash -f {off:#x} {image_path}"]


def cmd_flash_image(args) -> int:
    from bsnn.board import load_build
    from bsnn.firmware_export.bundle import load_bundle, write_atomic
    from bsnn.hdl.bitstream import board_image
    from bsnn.hdl.flash_image import HEADER_BYTES, key_hash

    bundle = load_bundle(args.model)
    build = load_build(args.build) if args.build else None
    from bsnn.board import golden_vector
    vector, described = (None, None) if args.no_self_test else golden_vector(
        bundle, args.self_test_dataset, args.self_test_sample, args.data_root)
    board, geom, image = board_image(args.board, bundle, args.hw_config, args.weights, build,
                                     vector)
    out = args.out or Path("build") / "flash" / f"{args.board}-{Path(args.model).name}.bin"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, image)
    print(f"wrote the flash image of {args.model} for {args.board} to {out}: "
          f"{len(image)} bytes ({HEADER_BYTES}-byte header, build key {key_hash(geom):08x}), "
          f"for flash offset {board.flash_offset:#x}")
    if vector is None:
        print("no self-test in the image")
    else:
        print(f"self-test at boot: {described}, {sum(map(len, vector.steps))} input events; the "
              f"golden model's class {vector.prediction}, signature {vector.signature:#06x}")
    print("write it next to the bitstream with:")
    for line in flash_commands(board, out):
        print(f"  {line}")
    return 0


def cmd_eval(args) -> int:
    from bsnn.firmware_export.bundle import load_bundle
    from bsnn.evaluate import check_report_path, evaluate, summary_lines, write_report

    if args.json:
        check_report_path(args.json, args.model)
    bundle = load_bundle(args.model)
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

    from bsnn.sim.regression import (BUILDS, DEFAULT_CASES, SIMULATORS, VERILATOR_ONLY,
                                     bundles_per_build, run_build)
    from bsnn.sim.toolchain import SimulatorUnavailable, availability

    simulators = [args.simulator] if args.simulator else list(SIMULATORS)
    for simulator in simulators:
        reason = availability(simulator)
        if reason:
            raise SimulatorUnavailable(reason)
    if args.build is not None and args.build >= len(BUILDS):
        raise InputError(f"--build {args.build}: the regression has builds 0 to {len(BUILDS) - 1}")
    builds = range(len(BUILDS)) if args.build is None else [args.build]
    n_bundles = bundles_per_build(args.cases or DEFAULT_CASES)
    failures = []
    jobs = [(s, b) for s in simulators for b in builds if s == "verilator" or b not in VERILATOR_ONLY]
    for simulator, build_index in tqdm(jobs, desc="builds", unit="build"):
        failures += run_build(simulator, build_index, n_bundles, args.seed or 0)
    for line in failures[:20]:
        print(line)
    which = "" if args.build is None else f" (build {args.build} only)"
    counts = ", ".join(f"{n_bundles * sum(s == sim for s, _ in jobs) * 2} on {sim}" for sim in simulators)
    print(f"random cases: {counts}{which}: "
          + ("all match the golden model" if not failures else f"{len(failures)} MISMATCHES"))
    return 1 if failures else 0


def cmd_lint(args) -> int:
    from bsnn.sim.lint import lint

    if not args.verilog.exists():
        raise InputError(f"{args.verilog}: no such file or folder (run 'bsnn verilog' first)")

    target = args.verilog / "bsnn_core.v" if args.verilog.is_dir() else args.verilog
    code, out = lint(target)
    print(out if code else f"verilator --lint-only -Wall: {target} is clean")
    return code


def cmd_export(args) -> int:
    from bsnn.training.export import export_checkpoint

    meta = export_checkpoint(args.checkpoint, args.out, golden_eval=not args.no_eval,
                             eval_limit=args.limit,
                             data_root=str(args.data_root) if args.data_root else None,
                             fit_widths=args.fit_widths, time_steps=args.time_steps)
    if "time_steps_trained" in meta:
        print(f"time steps: trained with {meta['time_steps_trained']}, exported with {args.time_steps}")
    if "widths_fitted" in meta:
        print(f"widths chosen from the training data: {meta['widths_fitted']['from']} -> "
              f"{meta['widths_fitted']['to']}")
    acc = meta.get("test_acc_hardware_exact")
    print(f"exported {args.checkpoint} to {args.out}"
          + (f": hardware-exact test accuracy {100 * acc:.2f} %" if acc is not None else ""))
    return 0


def cmd_compact(args) -> int:
    from bsnn.training.export import write_compact_checkpoint

    info = write_compact_checkpoint(args.checkpoint, args.out)
    print(f"wrote {args.out}: {info['bytes_in'] / 1e6:.2f} MB -> {info['bytes_out'] / 1e6:.2f} MB, "
          f"{info['binary_weights']:,} binary weights as sign bits, no optimizer state; "
          "checked: the same integer parameters, so the same bundle")
    return 0


def cmd_sweep(args) -> int:
    from bsnn.sweep import run_sweep
    return int(run_sweep(args) or 0)


def _passthrough(module: str):
    def run(args) -> int:
        return _run_passthrough(module, args.args)
    return run


def cmd_train(args) -> int:
    from bsnn.training.train import run_train
    return int(run_train(args) or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="bsnn",
        description="Binary spiking neural networks on FPGAs: train, export, generate Verilog, "
                    "and verify the RTL spike for spike against the golden model.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("random-model", help="write a random (untrained) bundle, for trying the flow")
    p.add_argument("--out", required=True, type=output_dir, help="bundle directory to write")
    p.add_argument("--sizes", type=_sizes, default=[784, 64, 10], help="N0,N1,...,NL (default 784,64,10)")
    p.add_argument("--time-steps", type=int_in(1, MAX_TIME_STEPS), default=4, help="time steps T (default 4)")
    p.add_argument("--leak", type=int_in(0, 15), default=2,
                   help="leak shift of hidden layers, 0 = none, below the 16-bit state width (default 2)")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.set_defaults(func=cmd_random_model)

    p = sub.add_parser("verilog", help="generate the core's Verilog, memory images and manifest")
    p.add_argument("--model", required=True, type=Path, help="bundle directory")
    p.add_argument("--out", required=True, type=output_dir, help="output directory (e.g. build/verilog)")
    p.add_argument("--hw-config", type=existing_file, help="hardware configuration (TOML)")
    p.add_argument("--lanes", type=int_in(1, MAX_LANES),
                   help=f"synapse lanes P, 1..{MAX_LANES} (overrides the config)")
    p.add_argument("--vectors", type=non_negative_int, default=0,
                   help="also write golden vectors (input events and expected outputs) for the "
                        "first N test samples of --dataset")
    p.add_argument("--dataset", default="mnist", choices=["mnist", "fashion-mnist", "nmnist"])
    p.add_argument("--data-root", type=existing_dir, help="datasets folder (default ../shared/datasets)")
    p.set_defaults(func=cmd_verilog)

    p = sub.add_parser("eval", help="evaluate a bundle on a dataset (golden model or RTL)")
    p.add_argument("--model", required=True, type=Path, help="bundle directory")
    p.add_argument("--dataset", required=True, choices=["mnist", "fashion-mnist", "nmnist"])
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--limit", type=positive_int, help="first N samples only")
    p.add_argument("--engine", default="golden", choices=["golden", "rtl"])
    p.add_argument("--simulator", default="verilator", choices=["verilator", "icarus"],
                   help="RTL simulator for --engine rtl (default verilator)")
    p.add_argument("--encoding", choices=ENCODINGS,
                   help="override the input encoding recorded in the bundle")
    p.add_argument("--hw-config", type=existing_file,
                   help="hardware configuration for --engine rtl (TOML, e.g. hdl/boards/ulx3s-85f.toml)")
    p.add_argument("--data-root", type=existing_dir, help="datasets folder (default ../shared/datasets)")
    p.add_argument("--json", type=output_file, help="write the report as JSON here")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("flash-image", help="the model image for the board's SPI flash (loaded at power-up)")
    p.add_argument("--board", required=True,
                   help="icebreaker, ulx3s-85f, ulx3s-45f or ulx3s-25f (hdl/board.py BOARDS)")
    p.add_argument("--model", required=True, type=Path, help="bundle directory")
    p.add_argument("--build", type=Path,
                   help="the bitstream's build folder or hardware.json (default: the build "
                        "'bsnn bitstream --board BOARD --model MODEL' makes)")
    p.add_argument("--hw-config", type=existing_file, help="hardware configuration (TOML; default the board's)")
    p.add_argument("--weights", choices=["auto", "bram", "spram"], help="weight memory (default the board's)")
    p.add_argument("--out", type=output_file, help="image file (default build/flash/BOARD-MODEL.bin)")
    p.add_argument("--self-test-dataset", choices=["mnist", "fashion-mnist", "nmnist"],
                   help="the golden vector run at boot comes from this dataset's test split "
                        "(default: the model's training dataset; random input for a model "
                        "without one)")
    p.add_argument("--self-test-sample", type=non_negative_int, default=0,
                   help="which test sample is the golden vector (default 0)")
    p.add_argument("--no-self-test", action="store_true", help="no golden vector in the image")
    p.add_argument("--data-root", type=existing_dir, help="datasets folder (default ../shared/datasets)")
    p.set_defaults(func=cmd_flash_image)

    p = sub.add_parser("sim", help="cocotb regression: RTL vs golden model on random bundles")
    p.add_argument("--cases", type=positive_int, help="random cases per simulator (default: the suite's, "
                   "bsnn.sim.regression.DEFAULT_CASES; more for soak runs)")
    p.add_argument("--simulator", choices=["verilator", "icarus"], help="only this simulator")
    p.add_argument("--seed", type=non_negative_int, help="seed of the random cases (printed by a failing run)")
    p.add_argument("--build", type=non_negative_int,
                   help="only this build geometry of bsnn.sim.regression.BUILDS (from 0; the same "
                        "bundles as in the full run; VERILATOR_ONLY builds skip Icarus)")
    p.set_defaults(func=cmd_sim)

    p = sub.add_parser("lint", help="verilator --lint-only -Wall on generated Verilog")
    p.add_argument("verilog", type=Path, nargs="?", default=Path("build/verilog"),
                   help="a directory from 'bsnn verilog' or a .v file (default build/verilog)")
    p.set_defaults(func=cmd_lint)

    p = sub.add_parser("export", help="export a training checkpoint to a model bundle")
    p.add_argument("--checkpoint", required=True, type=checkpoint_file, help="checkpoint written by bsnn train")
    p.add_argument("--out", required=True, type=output_dir, help="bundle directory to write (atomically)")
    p.add_argument("--no-eval", action="store_true", help="skip the golden-model test-set evaluation")
    p.add_argument("--fit-widths", action="store_true",
                   help="choose state and bias widths from the training data (narrowest that never saturate there)")
    p.add_argument("--limit", type=positive_int, help="evaluate on the first N test samples only")
    p.add_argument("--time-steps", type=int_in(1, MAX_TIME_STEPS),
                   help="run the network for T steps instead of the T it was trained with (more "
                        "steps: more cycles per inference, a finer rate code)")
    p.add_argument("--data-root", type=existing_dir, help="datasets folder (default ../shared/datasets)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("compact", help="a checkpoint small enough to commit: sign bits, no optimizer state",
                       description="Write the export-only form of a training checkpoint: each binary "
                                   "weight tensor as its sign bits and mean magnitude, the rest of the "
                                   "model state as it is, no optimizer state. It exports to the same "
                                   "bundle (checked before writing) and can start a fine-tuning run "
                                   "(init_from), but not resume one.")
    p.add_argument("--checkpoint", required=True, type=checkpoint_file, help="checkpoint written by bsnn train")
    p.add_argument("--out", required=True, type=output_file,
                   help="file to write (atomically; an existing file is replaced only if it is a compact checkpoint)")
    p.set_defaults(func=cmd_compact)

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
    from bsnn.training.train import add_train_arguments
    add_train_arguments(p)
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


def _prog(argv: list[str]) -> str:
    """``bsnn <command> [<nir subcommand>]``: the prefix of this run's one-line errors."""
    words = ["bsnn"]
    if argv and not argv[0].startswith("-"):
        words.append(argv[0])
        if argv[0] == "nir" and len(argv) > 1 and argv[1] in ("export", "import"):
            words.append(argv[1])
    return " ".join(words)


def main(argv=None) -> int:
    """Run one command. Bad input of any command (a ``BSNNError``, or an ``OSError`` on a path)
    is one line ``bsnn <command>: error: <message>`` on stderr and exit status 2; argument
    errors are one line too (``OneLineParser``). Any other exception is a defect: traceback."""
    argv = sys.argv[1:] if argv is None else list(argv)
    prog = _prog(argv)
    try:
        if argv and argv[0] in PASSTHROUGH:   # their own parsers, --help included
            return _run_passthrough(argv[0], argv[1:])
        args = build_parser().parse_args(argv)
        return args.func(args)
    except (BSNNError, OSError) as exc:
        return report_error(prog, exc)
    except KeyboardInterrupt:
        print("bsnn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
