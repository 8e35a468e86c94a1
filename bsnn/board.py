"""``bsnn board``: run a dataset on a real board over its UART and check every sample against
the golden model. The protocol code is ``bsnn.sim.board_host.BoardHost``, the same that the board-top
simulation tests (tests/sim/test_board_uart.py) drive through the UART pins."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

from bsnn.firmware_export.bundle import load_bundle, write_atomic
from bsnn.firmware_export.errors import BSNNError, DeviceError, InputError, one_line, report_error
from bsnn.firmware_export.events import events_from_counts
from bsnn.firmware_export.golden import run_golden
from bsnn.firmware_export.validate import (OneLineParser, existing_dir, output_file, positive_int,
                                           read_json)
from bsnn.sim.board_host import BoardHost
from bsnn.sim.check import compare_sample


def golden_vector(bundle, dataset: str | None = None, sample: int = 0, data_root=None):
    """``(vector, description)``: the self-test vector of a flash image (hdl/flash_image.py):
    test sample ``sample`` of ``dataset`` (default: the dataset the model was trained on,
    ``metadata.dataset``), encoded as the model expects; for a model without a dataset, random
    input counts (seed 0, each input active in a tenth of the steps)."""
    from bsnn.hdl.flash_image import self_test_vector

    dataset = dataset or (bundle.metadata or {}).get("dataset")
    if dataset is None:
        import numpy as np
        from bsnn.firmware_export.events import random_counts
        on, off = random_counts(bundle, 1, np.random.default_rng(0), density=0.1)
        return self_test_vector(bundle, on, off), "random input counts (seed 0, density 0.1)"
    from bsnn.training.data import load_encoded
    data = load_encoded(bundle, dataset, "test", sample + 1, data_root)
    if len(data.labels) <= sample:
        raise InputError(f"self-test sample {sample}: the {dataset} test split has "
                         f"{len(data.labels)} samples")
    return (self_test_vector(bundle, data.on, data.off, sample),
            f"{dataset} test sample {sample} (label {int(data.labels[sample])})")


async def check_samples(host: BoardHost, bundle, on, off, labels=None, progress=None) -> dict:
    """Every sample through ``host``; returns accuracy, cycles and mismatches vs the golden model."""
    import time
    golden = run_golden(bundle, on, off)
    from bsnn.hdl.generate import cycle_estimate, unit_counts
    mismatches, cycles, core_cycles, correct = [], [], [], 0
    t0 = time.perf_counter()
    for b in range(on.shape[1]):
        res = await host.infer(events_from_counts(on, off, sample=b))
        problem = compare_sample(bundle, golden, b, {"records": [list(r) for r in res.records],
                                                     "cycles": res.cycles, "error": res.error})
        if problem:
            mismatches.append(f"sample {b}: {problem}")
        cycles.append(res.cycles)
        core_cycles.append(cycle_estimate(host.geom, bundle.time_steps, [], [x[:, b].numpy() for x in golden.spikes],
                                          counts=unit_counts(bundle, on, off, golden.spikes, b)))
        if labels is not None and res.records and res.prediction == int(labels[b]):
            correct += 1
        if progress:
            progress(1)
    n = int(on.shape[1])
    seconds = time.perf_counter() - t0
    return {"samples": n, "seconds": seconds, "inferences_per_s": n / seconds if seconds > 0 else None, "bit_exact": not mismatches, "mismatches": mismatches[:20],
            "mismatch_count": len(mismatches), "accuracy": correct / n if labels is not None and n else None,
            "cycles_per_inference": sum(cycles) / n if n else None,
            # the core's own cycles with events at full speed (docs/architecture.md formula)
            "core_cycles_per_inference": sum(core_cycles) / n if n else None}


async def measure_batches(host, bundle, on, off, words: int) -> dict:
    """The samples through the board's batch mode (docs/uart-protocol.md, "Batch mode"), in
    batches that fit its ``words``-word batch memory: every class against the golden model's and
    the on-chip cycles of the batches, from which the core's own rate at its clock follows."""
    from bsnn.sim.board_host import batch_words
    golden = run_golden(bundle, on, off)
    images = [events_from_counts(on, off, sample=b) for b in range(on.shape[1])]
    batches, cur = [], []
    for b, img in enumerate(images):
        if batch_words([img]) > words:
            raise InputError(f"--batch: sample {b} needs {batch_words([img])} words; the board's "
                             f"batch memory holds {words}")
        if batch_words(cur + [img]) > words:
            batches.append(cur)
            cur = []
        cur.append(img)
    batches.append(cur)
    classes, cycles, flags = [], 0, set()
    for batch in batches:
        r = await host.run_batch(batch)
        classes += r.classes
        cycles += r.cycles
        flags |= set(r.flags)
    want = golden.prediction.tolist()
    return {"batch_images": len(images), "batches": len(batches), "batch_cycles": cycles,
            "batch_cycles_per_inference": cycles / len(images) if images else None,
            "batch_classes_exact": classes == want,
            "batch_class_mismatches": sum(a != b for a, b in zip(classes, want))
            + abs(len(classes) - len(want)),
            "batch_status": sorted(flags)}


def load_build(path: Path) -> dict:
    """The hardware manifest of the bitstream on the board: ``path`` is the build folder or its
    ``hardware.json``; an unusable one is a one-line error naming it."""
    from bsnn.hdl.config import CoreGeometry

    manifest_path = path / "hardware.json" if path.is_dir() else path
    if not manifest_path.is_file():
        raise InputError(f"{manifest_path}: no hardware manifest (build the bitstream first: bsnn bitstream)")
    manifest = read_json(manifest_path, "hardware manifest")
    try:
        CoreGeometry.from_key(manifest["build_key"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"{manifest_path}: build_key: missing or malformed "
                         f"({type(exc).__name__}: {one_line(exc)})") from None
    return manifest


def main(argv=None) -> int:
    p = OneLineParser(prog="bsnn board", description=__doc__.split("\n")[0])
    p.add_argument("--port", required=True, help="serial port of the board (e.g. /dev/ttyUSB1)")
    p.add_argument("--baud", type=positive_int,
                   help="the UART rate (default: the build's, uart_baud in its hardware.json)")
    p.add_argument("--build", required=True, type=Path,
                   help="the bitstream's build folder or its hardware.json (build/bitstream/<board>-<model>/)")
    p.add_argument("--model", required=True, type=Path, help="bundle to check against")
    p.add_argument("--load", action="store_true", help="load the bundle into the board first (config port)")
    p.add_argument("--dataset", default="mnist", choices=["mnist", "fashion-mnist", "nmnist"])
    p.add_argument("--limit", type=positive_int, default=100)
    p.add_argument("--data-root", type=existing_dir)
    p.add_argument("--json", type=output_file, help="write the report here")
    p.add_argument("--batch", type=positive_int, metavar="N",
                   help="also run the first N samples in the board's batch mode (builds with "
                        "[board] batch_event_words) and report the core's measured rate")
    args = p.parse_args(argv)
    try:
        return _check_on_board(args)
    except (BSNNError, OSError) as exc:   # pyserial's SerialException is an OSError
        return report_error("bsnn board", exc)


def _check_on_board(args) -> int:
    from tqdm import tqdm

    from bsnn.hdl.config import check_fits
    from bsnn.training.data import load_encoded

    build = load_build(args.build)
    bundle = load_bundle(args.model)
    check_fits(bundle, build)      # before the dataset and the port: BuildMismatch lists every difference
    if not build.get("flash_loader", True) and build.get("weights_in") == "spram" and not args.load:
        raise InputError(f"{args.build}: this bitstream has no flash loader and its weights live in "
                         "SPRAM, which starts empty: add --load to send the model over the UART")
    if args.batch and not build.get("batch_event_words"):
        raise InputError(f"--batch: the build {args.build} has no batch memory ([board] "
                         f"batch_event_words = 0 or a build from before batch mode)")
    data = load_encoded(bundle, args.dataset, "test", max(args.limit, args.batch or 0),
                        args.data_root)
    args.baud = args.baud or int(build.get("uart_baud", 115200))   # builds before 3 Mbaud: 115200
    try:
        from bsnn.sim.board_host import SerialLink
        link = SerialLink(str(args.port), args.baud)
    except ImportError:
        raise DeviceError("talking to a board needs pyserial (pip install pyserial)") from None
    host = BoardHost(link, build)

    async def session():
        await host.sync()                 # answered once the flash loader has finished
        boot = await host.boot()
        print(f"boot: {boot}" + ("" if boot == "OK" else
                                 " (model not from the flash; docs/board.md section 5)"))
        seen = host.self_test_result
        print(f"self-test of the flash image: {host.self_test}"
              + (f" (class {seen.prediction})" if seen and seen.records else "")
              + (" (docs/board.md section 7)" if host.self_test == "FAILED" else ""))
        if args.load:
            await host.load(bundle)
        n = args.limit
        with tqdm(total=n, desc="board", unit="sample") as bar:
            report = await check_samples(host, bundle, data.on[:, :n], data.off[:, :n]
                                         if data.off is not None else None, data.labels[:n],
                                         bar.update)
        if args.batch:
            await host.info()
            b = args.batch
            report.update(await measure_batches(host, bundle, data.on[:, :b], data.off[:, :b]
                                                if data.off is not None else None,
                                                host.batch_words))
        return {**report, "boot": boot, "self_test": host.self_test,
                "loaded_over_uart": bool(args.load)}

    try:
        report = asyncio.run(session())
    finally:
        link.close()
    verdict = "bit-exact" if report["bit_exact"] else f"{report['mismatch_count']} MISMATCHING samples"
    print(f"{report['samples']} samples on the board: {verdict}, accuracy {100 * report['accuracy']:.2f} %, "
          f"{report['cycles_per_inference']:.0f} cycles per inference")
    clock = build.get("core_clock_hz")
    if clock and report["core_cycles_per_inference"]:
        # The reported cycles include the core's waits for events from the UART; its own rate
        # is that of its busy cycles with events at full speed.
        report["core_clock_hz"] = clock
        report["core_inferences_per_s"] = clock / report["core_cycles_per_inference"]
        print(f"end to end {report['inferences_per_s']:.1f} inferences/s over the UART at "
              f"{args.baud} baud; the core alone at {clock / 1e6:.1f} MHz: "
              f"{report['core_inferences_per_s']:.0f} inferences/s")
    if args.batch and clock and report["batch_cycles"]:
        report["batch_core_inferences_per_s"] = report["batch_images"] * clock / report["batch_cycles"]
        print(f"batch mode: {report['batch_images']} samples in {report['batches']} batches, "
              f"classes {'exact' if report['batch_classes_exact'] else 'MISMATCHING'}, "
              f"{report['batch_cycles_per_inference']:.0f} cycles per inference on the chip: "
              f"{report['batch_core_inferences_per_s']:.0f} inferences/s at {clock / 1e6:.1f} MHz "
              f"(the UART link: {report['inferences_per_s']:.1f} inferences/s)"
              + (f"; status {', '.join(report['batch_status'])}" if report["batch_status"] else ""))
    if args.json:
        write_atomic(args.json, (json.dumps(report, indent=2) + "\n").encode())
    return 0 if report["bit_exact"] and report.get("batch_classes_exact", True) else 1


if __name__ == "__main__":
    raise SystemExit(main())
