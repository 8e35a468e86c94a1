"""``bsnn nir export|import``: argument parsing and commands, for bsnn/cli.py to register.

Wiring (in ``bsnn/cli.py``, where the subparsers are built)::

    from bsnn.nir_cli import add_nir_parser
    add_nir_parser(sub)

Both commands set ``func``; their errors are ``BSNNError`` subclasses (``NIRImportError``,
``BundleError``, ``InputError``), which ``bsnn``'s ``main`` reports as one line with exit code 2;
the arguments are checked by their argparse types.
"""
from __future__ import annotations

import json

from bsnn.firmware_export.bundle import (INPUT_POLARITIES, MAX_INPUT_EVENTS, MAX_TIME_STEPS, MAX_WIDTH,
                                        MIN_WIDTH)
from bsnn.firmware_export.encoding import ENCODINGS
from bsnn.firmware_export.errors import InputError
from bsnn.firmware_export.validate import (existing_dir, existing_file, int_in, non_negative_int,
                                           output_dir, output_file, positive_float)


def cmd_nir_export(args) -> int:
    from bsnn.firmware_export.bundle import load_bundle

    from .nir_interop.export import write_nir

    bundle = load_bundle(args.model)
    path = write_nir(bundle, args.out, dt=args.dt)
    print(f"wrote NIR graph of {args.model} ({'-'.join(map(str, bundle.sizes))}, dt={args.dt} s) to {path}")
    return 0


def cmd_nir_import(args) -> int:
    from bsnn.firmware_export.bundle import save_bundle

    from .nir_interop.importer import import_nir

    options = dict(v_width=args.v_width, c_width=args.c_width, bias_width=args.bias_width,
                   time_steps=args.time_steps, readout=args.readout,
                   max_input_events=args.max_input_events, use_metadata=not args.recompile)
    options["input_polarity"] = args.input_polarity
    foreign = dict(dt=args.dt, reset=args.reset, discretization=args.discretization,
                   encoding={"kind": args.encoding} if args.encoding else None)
    if (args.nir_file is None) == (args.nir is None):
        raise InputError("give the NIR file once, as FILE.nir or --nir FILE")
    args.nir = args.nir or args.nir_file
    bundle = import_nir(args.nir, **options, **foreign)
    compiled = "nir_import" in bundle.metadata
    if compiled and args.calibrate:
        from bsnn.training.data import load_encoded

        data = load_encoded(bundle, args.dataset, "train", args.calibrate, args.data_root)
        bundle = import_nir(args.nir, **options, **foreign, calibration=(data.on, data.off))
    save_bundle(bundle, args.out, inputs=[args.nir])   # never over the NIR file it was made from
    how = "compiled from a foreign graph" if compiled else "bit-exact from its bsnn metadata"
    print(f"wrote bundle {'-'.join(map(str, bundle.sizes))}, T={bundle.time_steps} to {args.out} ({how})")
    if compiled:
        keys = ("neuron", "type", "kind", "leak_v", "beta_abs_error_max", "weight_binarization_rel_error",
                "threshold_clipped", "bias_clipped", "folded_pools", "pool", "kernel", "stride", "padding")
        for layer in bundle.metadata["nir_import"]["layers"]:
            print("  " + json.dumps({k: layer[k] for k in keys if k in layer}))
    return 0


def add_nir_parser(sub) -> None:
    """Add ``nir`` with its ``export`` and ``import`` subcommands to an argparse subparsers object."""
    nir_p = sub.add_parser("nir", help="NIR interchange: export bundles, import (compile) NIR graphs")
    nsub = nir_p.add_subparsers(dest="nir_command", required=True)
    width = int_in(MIN_WIDTH, MAX_WIDTH)

    p = nsub.add_parser("export", help="write a bundle as a NIR graph (HDF5), exact semantics in metadata")
    p.add_argument("--model", required=True, help="bundle directory")
    p.add_argument("--out", required=True, type=output_file, help="NIR file to write (.nir)")
    p.add_argument("--dt", type=positive_float, default=1e-3,
                   help="seconds per time step stated in the graph (finite, > 0)")
    p.set_defaults(func=cmd_nir_export)

    p = nsub.add_parser("import", help="compile a NIR graph (snnTorch, Norse, ... or our own) to a bundle")
    p.add_argument("nir_file", nargs="?", type=existing_file, metavar="FILE.nir", help="NIR file")
    p.add_argument("--nir", type=existing_file, help="NIR file (same as the positional argument)")
    p.add_argument("--out", required=True, type=output_dir, help="bundle directory to write")
    p.add_argument("--time-steps", type=int_in(1, MAX_TIME_STEPS), default=None,
                   help="T (required for foreign graphs)")
    p.add_argument("--v-width", type=width, default=None)
    p.add_argument("--c-width", type=width, default=None)
    p.add_argument("--bias-width", type=width, default=None)
    p.add_argument("--readout", choices=("spike_count", "potential", "first_spike"), default=None)
    p.add_argument("--max-input-events", type=int_in(1, MAX_INPUT_EVENTS), default=None)
    p.add_argument("--dt", type=positive_float, default=None,
                   help="seconds per step (default: graph metadata, else 1e-4 as snnTorch assumes)")
    p.add_argument("--reset", choices=("auto", "zero", "subtract", "none"), default="auto")
    p.add_argument("--discretization", choices=("euler", "exp"), default="euler")
    p.add_argument("--input-polarity", choices=INPUT_POLARITIES, default=None,
                   help="layer 1 reads events by the XNOR rule (default) or as two channels OFF, ON "
                        "(a graph whose input is [2, H, W] event frames)")
    p.add_argument("--encoding", choices=ENCODINGS, default=None,
                   help="input encoding recorded in metadata (default rate)")
    p.add_argument("--recompile", action="store_true",
                   help="ignore bsnn metadata of an own export and compile from the NIR fields")
    p.add_argument("--calibrate", type=non_negative_int, default=0, metavar="N",
                   help="scale thresholds per layer on N training samples of --dataset")
    p.add_argument("--dataset", default="mnist", choices=["mnist", "fashion-mnist", "nmnist"])
    p.add_argument("--data-root", type=existing_dir, default=None)
    p.set_defaults(func=cmd_nir_import)
