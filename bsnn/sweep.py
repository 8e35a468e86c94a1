"""``bsnn sweep``: accuracy against firing (and core cycles) over the SSR strength (docs/ssr.md).

Every sweep point fine-tunes one checkpoint (``[train] init_from`` of the config, or
``--init-from``) with one regularizer and strength, exports the integer bundle, and evaluates the
bundle **as saved** with the golden model (``bsnn.firmware_export.golden.run_golden``):

* accuracy, spikes per hidden neuron per inference (per hidden layer and over all hidden neurons),
  events into each layer, synaptic operations (SOPs);
* core cycles per inference from the cycle model ``bsnn.hdl.generate.cycle_estimate`` (geometry from
  ``bsnn.hdl.config.CoreGeometry.from_bundle(bundle, HardwareConfig())``), per sample, then averaged;
* optionally (``--rtl-samples N``) the cycles measured on the Verilator RTL for the first N test
  samples (``bsnn.sim.rtl_eval.rtl_evaluate``), with the RTL's bit-exactness.

Points: ``reference`` (the initial checkpoint, not fine-tuned), ``none`` (fine-tuned the same way
with gamma 0, the fair unregularized reference), ``mssr``/``fssr`` for each gamma, ``mem`` for
each (v_hat, gamma). Results are appended to ``<out>.json`` after every point (a rerun skips the
points already there, so a sweep can be stopped and continued); plots ``<out>_firing.png`` (the
paper's figure: accuracy against spikes per neuron, per hidden layer and averaged) and
``<out>_cycles.png`` (accuracy against cycles and SOPs per inference).

    python -m bsnn.sweep --config configs/ssr_mnist.toml --out docs/ssr_mnist
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bsnn.firmware_export.errors import BSNNError, InputError, report_error
from bsnn.firmware_export.validate import (OneLineParser, check_checkpoint, checkpoint_file,
                                           existing_dir, existing_file, non_negative_float,
                                           non_negative_int, output_dir, output_file,
                                           positive_int, read_json)

__all__ = ["add_sweep_arguments", "run_sweep", "evaluate_bundle", "sweep_points", "plot_sweep",
           "select_best", "markdown_table", "main"]



def _numbers(lo: float, strict: bool = False):
    """An argparse type: comma-separated finite numbers ``>= lo`` (``> lo`` if ``strict``)."""
    def parse(text: str) -> list[float]:
        try:
            values = [float(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
        if not values or any(not math.isfinite(v) or v < lo or (strict and v == lo) for v in values):
            raise argparse.ArgumentTypeError(f"expected comma-separated finite numbers "
                                             f"{'>' if strict else '>='} {lo:g}, got {text!r}")
        return values
    return parse


METHODS = ("mssr", "fssr", "mem")


def _methods(text: str) -> list[str]:
    words = [x.strip() for x in text.split(",") if x.strip()]
    unknown = [w for w in words if w not in METHODS]
    if not words or unknown:
        raise argparse.ArgumentTypeError(f"expected comma-separated regularizers of {', '.join(METHODS)}, "
                                         f"got {text!r}")
    return words


def _out_prefix(text: str) -> str:
    """An argparse type: the output prefix; ``<out>.json`` must be a file name to write."""
    output_file(text + ".json")
    return text


def add_sweep_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--config", required=True, type=existing_file,
                        help="base TOML config (its [train] init_from is the checkpoint every point "
                        "fine-tunes)")
    parser.add_argument("--out", required=True, type=_out_prefix,
                        help="output prefix: <out>.json, <out>_firing.png, <out>_cycles.png")
    parser.add_argument("--methods", type=_methods, default=list(METHODS),
                        help="regularizers to sweep (mssr,fssr,mem; default all three)")
    parser.add_argument("--gammas", type=_numbers(0), help="strengths for mssr and fssr (default: [sweep] gammas)")
    parser.add_argument("--fssr-gammas", type=_numbers(0), help="strengths for fssr (default: [sweep] "
                        "fssr_gammas, else --gammas)")
    parser.add_argument("--mem-gammas", type=_numbers(0), help="strengths for the mem baseline "
                        "(default: [sweep] mem_gammas, else --gammas)")
    parser.add_argument("--v-hats", type=_numbers(0, strict=True), help="reference voltages of the mem "
                        "baseline as fractions of the threshold (default: [sweep] v_hats)")
    parser.add_argument("--init-from", type=checkpoint_file,
                        help="checkpoint to fine-tune (overrides [train] init_from)")
    parser.add_argument("--epochs", type=positive_int, help="fine-tuning epochs per point")
    parser.add_argument("--train-limit", type=positive_int, help="first N training samples only")
    parser.add_argument("--test-limit", type=positive_int, help="first N test samples only")
    parser.add_argument("--runs-dir", type=output_dir,
                        help="checkpoints of the points (default runs/sweep_<name>)")
    parser.add_argument("--bundles-dir", type=output_dir,
                        help="keep every point's bundle here (default: in runs-dir)")
    parser.add_argument("--data-root", type=existing_dir, help="datasets folder")
    parser.add_argument("--threads", type=positive_int, help="torch CPU threads")
    parser.add_argument("--rtl-samples", type=non_negative_int, default=0,
                        help="measure RTL cycles (Verilator) on the first N test samples of each point")
    parser.add_argument("--no-reference", action="store_true",
                        help="skip the reference points (initial checkpoint, gamma-0 fine-tune)")
    parser.add_argument("--no-finetuned-reference", action="store_true",
                        help="keep the initial-checkpoint reference but skip the gamma-0 fine-tune")
    parser.add_argument("--redo", action="store_true", help="recompute points already in <out>.json")
    parser.add_argument("--reeval", action="store_true",
                        help="re-evaluate every point of <out>.json from its saved bundle (no training), "
                        "e.g. after a change of the core's cycle model")
    parser.add_argument("--plot-only", action="store_true",
                        help="only redraw the plots from <out>.json and print the table")
    parser.add_argument("--ship", type=output_dir,
                        help="copy the best point that meets the target to this bundle folder")
    parser.add_argument("--target-spikes", type=non_negative_float, default=0.2,
                        help="target spikes per hidden neuron per inference (default 0.2)")
    parser.add_argument("--max-drop", type=non_negative_float, default=0.5,
                        help="largest accuracy drop in percentage points against the reference (default 0.5)")
    parser.add_argument("--no-progress", action="store_true")
    return parser


# ------------------------------------------------------------------ evaluation
@torch.no_grad()
def evaluate_bundle(bundle, data, limit: int | None = None, batch_size: int = 500, hw=None,
                    rtl_samples: int = 0) -> dict:
    """Golden-model accuracy, firing, SOPs and cycle-model cycles of ``bundle`` on ``data``."""
    from bsnn.firmware_export.golden import run_golden
    from bsnn.hdl.config import CoreGeometry, HardwareConfig
    from bsnn.hdl.generate import cycle_estimate

    hw = hw or HardwareConfig()
    geom = CoreGeometry.from_bundle(bundle, hw)
    n = len(data) if limit is None else min(limit, len(data))
    L = len(bundle.layers)
    hidden = list(range(L - 1)) or [L - 1]
    correct = 0
    spikes = np.zeros(L)
    events = np.zeros(L)
    sops, cycles, cyc_list = 0.0, 0.0, []
    for start in range(0, n, batch_size):
        idx = torch.arange(start, min(start + batch_size, n))
        on, off, y = data.batch(idx)
        res = run_golden(bundle, on, off)
        correct += int((res.prediction == y).sum())
        for k in range(L):
            spikes[k] += float(res.spikes[k].sum())
        epl = res.events_per_layer
        events += epl.sum(dim=1).double().numpy()
        sops += float(res.sops.sum())
        spk = None
        if geom.neuron_lanes > 1 and geom.trace:
            spk = [[s[:, b].numpy() for s in res.spikes] for b in range(len(y))]
        for b in range(len(y)):
            c = cycle_estimate(geom, bundle.time_steps, epl[:, b].tolist(),
                               spk[b] if spk is not None else None)
            cycles += c
            cyc_list.append(c)
    sizes = [l.size for l in bundle.layers]
    per_layer = [float(spikes[k] / n / sizes[k]) for k in range(L)]
    out = {
        "acc": correct / max(1, n), "n": n,
        "spikes_per_neuron": float(sum(spikes[k] for k in hidden) / n / sum(sizes[k] for k in hidden)),
        "spikes_per_neuron_layers": per_layer[:-1] if L > 1 else per_layer,
        "output_spikes_per_neuron": per_layer[-1],
        "events_per_layer": [float(e / n) for e in events],
        "sops_per_inference": sops / n,
        "cycles_per_inference": cycles / n,
        "cycles_max": int(max(cyc_list)) if cyc_list else 0,
        "cycle_model": {"lanes": hw.lanes, "neuron_lanes": hw.neuron_lanes,
                        "source": "bsnn.hdl.generate.cycle_estimate"},
    }
    if rtl_samples:
        from bsnn.sim.rtl_eval import rtl_evaluate

        m = min(rtl_samples, n)
        on, off, y = data.batch(torch.arange(m))
        off = torch.zeros_like(on) if off is None else off
        r = rtl_evaluate(bundle, on, off, progress=False, hw=hw)
        est = np.mean(cyc_list[:m])
        out["rtl"] = {"samples": m, "bit_exact": bool(r["bit_exact"]),
                      "cycles_per_inference": float(np.mean(r["cycles"])),
                      "cycle_model_same_samples": float(est),
                      "accuracy": float((torch.as_tensor(r["predictions"]) == y).double().mean())}
    return out


# ------------------------------------------------------------------ points
def sweep_points(methods, gammas, mem_gammas, v_hats, reference: bool, fssr_gammas=None) -> list[dict]:
    pts = []
    if reference:
        pts.append({"key": "reference", "method": "reference", "gamma": 0.0, "v_hat": None})
        pts.append({"key": "none", "method": "none", "gamma": 0.0, "v_hat": None})
    for m in methods:
        if m in ("mssr", "fssr"):
            for g in (fssr_gammas or gammas) if m == "fssr" else gammas:
                pts.append({"key": f"{m}_g{g:g}", "method": m, "gamma": float(g), "v_hat": None})
        elif m == "mem":
            for vh in v_hats:
                for g in mem_gammas:
                    pts.append({"key": f"mem_v{vh:g}_g{g:g}", "method": "mem", "gamma": float(g),
                                "v_hat": float(vh)})
        else:
            raise ValueError(f"unknown sweep method {m!r} (mssr, fssr, mem)")
    return pts


def _load(path: Path) -> dict:
    """The results of earlier runs of this sweep (``<out>.json``), or none."""
    if not path.exists():
        return {"points": []}
    doc = read_json(path, "sweep results")
    points = doc.get("points") if isinstance(doc, dict) else None
    if not isinstance(points, list) or not all(isinstance(p, dict) and isinstance(p.get("key"), str)
                                               for p in points):
        raise InputError(f"{path}: sweep results: expected an object with a list of points "
                         "(each with a \"key\")")
    return doc


def _rel(x):
    """Paths under the current directory (the repository root, as the Makefile runs it) are stored
    relative to it (the JSON goes into docs/)."""
    if isinstance(x, dict):
        return {k: _rel(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_rel(v) for v in x]
    here = str(Path.cwd())
    if isinstance(x, str) and x.startswith(here + "/"):
        return x[len(here) + 1:]
    return x


def _abs(path) -> Path:
    p = Path(path)
    return p if p.is_absolute() else Path.cwd() / p


def _save(doc: dict, path: Path):
    from bsnn.firmware_export.outputs import previous_json, write_file

    write_file(path, json.dumps(_rel(doc), indent=1).encode(), replaces=previous_json)


def select_best(points: list[dict], target_spikes: float, max_drop_pp: float):
    """The reference accuracy (gamma-0 fine-tune if present, else the initial checkpoint) and the
    most accurate regularized point with ``spikes_per_neuron <= target`` (fewest spikes on ties);
    ``None`` if no point qualifies."""
    ref = next((p for p in points if p["method"] == "none"), None) or \
        next((p for p in points if p["method"] == "reference"), None)
    cands = [p for p in points if p["method"] in ("mssr", "fssr", "mem")
             and p["eval"]["spikes_per_neuron"] <= target_spikes]
    best = max(cands, key=lambda p: (p["eval"]["acc"], -p["eval"]["spikes_per_neuron"]), default=None)
    meets = None
    if best is not None and ref is not None:
        meets = 100 * (ref["eval"]["acc"] - best["eval"]["acc"]) <= max_drop_pp + 1e-9
    return ref, best, meets


# ------------------------------------------------------------------ plots
_STYLE = {"mssr": ("C3", "o", "M-SSR"), "fssr": ("C0", "s", "F-SSR"), "none": ("k", "*", "no SSR"),
          "reference": ("k", "P", "initial model")}


def _series(points):
    """Curves: one per method (mem: one per v_hat), points sorted by gamma."""
    groups = {}
    for p in points:
        if p["method"] == "mem":
            key = f"mem v_hat={p['v_hat']:g}"
        else:
            key = p["method"]
        groups.setdefault(key, []).append(p)
    for k in groups:
        groups[k].sort(key=lambda p: p["gamma"])
    return groups


def _style(key, i):
    if key in _STYLE:
        return _STYLE[key]
    greens = ["C2", "C8", "C4", "C5", "C1", "C6"]
    return greens[i % len(greens)], "^", f"membrane potential, {key.split(' ', 1)[1]}"


def plot_sweep(doc: dict, prefix: str | Path, title: str = ""):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [p for p in doc.get("points", []) if "eval" in p]
    if not pts:
        return []
    groups = _series(pts)
    nh = len(pts[0]["eval"]["spikes_per_neuron_layers"])
    fig, axes = plt.subplots(1, nh + 1, figsize=(4.2 * (nh + 1), 4), sharey=True)
    axes = np.atleast_1d(axes)
    for i, (key, ps) in enumerate(groups.items()):
        col, mk, lab = _style(key, i)
        ls = "none" if key in ("none", "reference") else "-"
        for j in range(nh):
            axes[j].plot([p["eval"]["spikes_per_neuron_layers"][j] for p in ps],
                         [100 * p["eval"]["acc"] for p in ps], marker=mk, color=col, ls=ls, label=lab,
                         ms=9 if ls == "none" else 5)
        axes[nh].plot([p["eval"]["spikes_per_neuron"] for p in ps], [100 * p["eval"]["acc"] for p in ps],
                      marker=mk, color=col, ls=ls, label=lab, ms=9 if ls == "none" else 5)
    for j in range(nh):
        axes[j].set_title(f"hidden layer {j + 1}")
    axes[nh].set_title("all hidden layers")
    for a in axes:
        a.set_xlabel("spikes per neuron per inference")
        a.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (%), hardware-exact")
    axes[nh].legend(fontsize=7)
    f1 = _save_figure(plt, fig, title, Path(f"{prefix}_firing.png"))

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for i, (key, ps) in enumerate(groups.items()):
        col, mk, lab = _style(key, i)
        ls = "none" if key in ("none", "reference") else "-"
        axes[0].plot([p["eval"]["cycles_per_inference"] for p in ps], [100 * p["eval"]["acc"] for p in ps],
                     marker=mk, color=col, ls=ls, label=lab, ms=9 if ls == "none" else 5)
        axes[1].plot([p["eval"]["sops_per_inference"] for p in ps], [100 * p["eval"]["acc"] for p in ps],
                     marker=mk, color=col, ls=ls, label=lab, ms=9 if ls == "none" else 5)
        rtl = [p for p in ps if "rtl" in p["eval"]]
        if rtl:
            axes[0].plot([p["eval"]["rtl"]["cycles_per_inference"] for p in rtl],
                         [100 * p["eval"]["acc"] for p in rtl], marker="x", color=col, ls="none")
    cm = pts[0]["eval"]["cycle_model"]
    axes[0].set_xlabel(f"core cycles per inference (cycle model, P={cm['lanes']}, U={cm['neuron_lanes']})")
    axes[1].set_xlabel("synaptic operations per inference")
    axes[0].set_ylabel("test accuracy (%), hardware-exact")
    for a in axes:
        a.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    f2 = _save_figure(plt, fig, title, Path(f"{prefix}_cycles.png"))
    return [f1, f2]


def _save_figure(plt, fig, title, path: Path) -> Path:
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def markdown_table(doc: dict) -> str:
    """The sweep as a Markdown table (accuracy, firing per layer, SOPs, cycles)."""
    pts = [p for p in doc.get("points", []) if "eval" in p]
    if not pts:
        return ""
    nh = len(pts[0]["eval"]["spikes_per_neuron_layers"])
    head = ["point", "method", "gamma", "v_hat", "accuracy (%)", "spikes/neuron"] + \
        [f"layer {j + 1}" for j in range(nh)] + ["SOPs/inference", "cycles/inference"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in pts:
        e = p["eval"]
        rows.append("| " + " | ".join([p["key"], p["method"], f"{p['gamma']:g}",
                                        "" if p.get("v_hat") is None else f"{p['v_hat']:g}",
                                        f"{100 * e['acc']:.2f}", f"{e['spikes_per_neuron']:.3f}"] +
                                       [f"{x:.3f}" for x in e["spikes_per_neuron_layers"]] +
                                       [f"{e['sops_per_inference']:.0f}", f"{e['cycles_per_inference']:.0f}"]) + " |")
    return "\n".join(rows)


# ------------------------------------------------------------------ the sweep
def _invocation() -> str:
    """The command line that ran this sweep (``bsnn sweep ...`` or ``python -m bsnn.sweep ...``)."""
    args = sys.argv[1:]
    if Path(sys.argv[0]).name == "bsnn" and args[:1] == ["sweep"]:
        return "bsnn " + " ".join(args)
    return "python -m bsnn.sweep " + " ".join(args)


def run_sweep(args: argparse.Namespace) -> int:
    from bsnn.firmware_export.bundle import load_bundle, save_bundle

    from .training.export import export_checkpoint
    from .training.train import build_data, load_config, train

    out_json = Path(f"{args.out}.json")
    doc = _load(out_json)
    base = load_config(args.config)
    if args.ship:   # refused now rather than after hours of training
        from bsnn.firmware_export.bundle import check_bundle_output
        check_bundle_output(args.ship, inputs=[args.config, args.init_from])
    if args.plot_only:
        plot_sweep(doc, args.out, doc.get("title", ""))
        print(markdown_table(doc))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    sw = base.get("sweep", {})
    gammas = args.gammas or sw.get("gammas") or [0.01, 0.1]
    mem_gammas = args.mem_gammas or sw.get("mem_gammas") or gammas
    fssr_gammas = args.fssr_gammas or sw.get("fssr_gammas") or gammas
    v_hats = args.v_hats or sw.get("v_hats") or [0.5, 1.0]
    init_from = args.init_from or base["train"].get("init_from")
    if init_from:
        check_checkpoint(init_from, "--init-from" if args.init_from else "train.init_from")
    over = {"train": {}, "data": {}, "export": {"dir": None}}
    if args.epochs is not None:
        over["train"]["epochs"] = args.epochs
    if args.train_limit is not None:
        over["data"]["train_limit"] = args.train_limit
    if args.test_limit is not None:
        over["data"]["test_limit"] = args.test_limit
    if args.data_root:
        over["data"]["root"] = str(args.data_root)
    if args.threads:
        over["train"]["threads"] = args.threads
    base = load_config(args.config, over)
    name = base["name"]
    runs = Path(args.runs_dir or Path("runs") / f"sweep_{name}")
    bundles = Path(args.bundles_dir) if args.bundles_dir else runs / "bundles"
    points = sweep_points(args.methods, gammas, mem_gammas, v_hats,
                          reference=not args.no_reference and bool(init_from), fssr_gammas=fssr_gammas)
    if not args.no_reference and not init_from:
        points.insert(0, {"key": "none", "method": "none", "gamma": 0.0, "v_hat": None})
    if args.no_finetuned_reference:
        points = [p for p in points if p["method"] != "none"]
    doc.update({"config": str(args.config), "init_from": init_from, "title": doc.get("title") or
                f"{name}: {base['data']['dataset']}, {'-'.join(map(str, [784] + list(base['model']['hidden']) + [base['model']['num_classes']]))}, "
                f"T={base['encoding']['time_steps']}, binary weights, golden model",
                "epochs_per_point": base["train"]["epochs"],
                "command": doc.get("command") or _invocation()})
    done = {p["key"]: p for p in doc["points"]}
    _, test = build_data(base)
    if args.reeval:
        for p in doc["points"]:
            p["eval"] = evaluate_bundle(load_bundle(_abs(p["bundle"])), test, rtl_samples=args.rtl_samples)
            print(f"[sweep] {p['key']}: re-evaluated, {p['eval']['cycles_per_inference']:.0f} cycles", flush=True)
        _save(doc, out_json)
        points = []
    for pt in points:
        if pt["key"] in done and not args.redo:
            print(f"[sweep] {pt['key']}: done already", flush=True)
            continue
        t0 = time.time()
        bdir = bundles / pt["key"]
        if pt["method"] == "reference":
            ckpt = Path(init_from)
            hist = []
        else:
            cfg = load_config(None, base)
            cfg["name"] = f"{name}_{pt['key']}"
            cfg["ssr"] = {"method": pt["method"], "gamma": pt["gamma"],
                          "v_hat": pt["v_hat"] if pt["v_hat"] is not None else 1.0,
                          "horizon": base.get("ssr", {}).get("horizon", 0),
                          "layers": base.get("ssr", {}).get("layers", "hidden")}
            cfg["train"]["out_dir"] = str(runs / pt["key"])
            if init_from:
                cfg["train"]["init_from"] = init_from
            summary = train(cfg, progress=not args.no_progress)
            ckpt = Path(summary["out_dir"]) / "last.pt"
            hist = json.loads((Path(summary["out_dir"]) / "diagnostics.json").read_text())
        meta = export_checkpoint(ckpt, bdir, golden_eval=False)
        bundle = load_bundle(bdir)
        ev = evaluate_bundle(bundle, test, hw=None, rtl_samples=args.rtl_samples)
        meta.update({"test_acc_hardware_exact": ev["acc"], "test_samples": ev["n"],
                     "spikes_per_neuron_hidden": ev["spikes_per_neuron"],
                     "spikes_per_neuron_layers": ev["spikes_per_neuron_layers"],
                     "sops_per_inference": ev["sops_per_inference"],
                     "cycles_per_inference_model": ev["cycles_per_inference"],
                     "evaluated_with": "bsnn.firmware_export.golden.run_golden on the saved bundle",
                     "ssr": {k: pt[k] for k in ("method", "gamma", "v_hat")}})
        bundle.metadata = meta
        save_bundle(bundle, bdir)
        rec = dict(pt, eval=ev, bundle=str(bdir), checkpoint=str(ckpt), seconds=round(time.time() - t0, 1),
                   train_test_acc=hist[-1]["test_acc"] if hist else None)
        doc["points"] = [p for p in doc["points"] if p["key"] != pt["key"]] + [rec]
        _save(doc, out_json)
        plot_sweep(doc, args.out, doc["title"])
        print(f"[sweep] {pt['key']}: acc {100 * ev['acc']:.2f} %, spikes/neuron {ev['spikes_per_neuron']:.3f} "
              f"{[round(x, 3) for x in ev['spikes_per_neuron_layers']]}, {ev['cycles_per_inference']:.0f} cycles, "
              f"{ev['sops_per_inference']:.0f} SOPs ({rec['seconds']} s)", flush=True)
    ref, best, meets = select_best(doc["points"], args.target_spikes, args.max_drop)
    doc["selection"] = {"target_spikes": args.target_spikes, "max_drop_pp": args.max_drop,
                        "reference": ref["key"] if ref else None,
                        "reference_acc": ref["eval"]["acc"] if ref else None,
                        "best": best["key"] if best else None,
                        "best_acc": best["eval"]["acc"] if best else None,
                        "best_spikes_per_neuron": best["eval"]["spikes_per_neuron"] if best else None,
                        "meets_target": meets}
    _save(doc, out_json)
    plot_sweep(doc, args.out, doc["title"])
    print(json.dumps(doc["selection"], indent=1))
    if args.ship and best is not None:
        ship = Path(args.ship)
        b = load_bundle(_abs(best["bundle"]))
        b.metadata = dict(b.metadata, sweep=str(out_json), sweep_point=best["key"],
                          reference_model={"point": ref["key"], "checkpoint": ref["checkpoint"],
                                           "test_acc_hardware_exact": ref["eval"]["acc"],
                                           "spikes_per_neuron_hidden": ref["eval"]["spikes_per_neuron"]}
                          if ref else None,
                          accuracy_drop_pp=100 * (ref["eval"]["acc"] - best["eval"]["acc"]) if ref else None,
                          meets_target=meets)
        # An earlier shipped bundle is replaced; any other folder there is refused, never deleted.
        save_bundle(b, ship, inputs=[_abs(best["bundle"]), args.config, init_from])
        print(f"[sweep] shipped {best['key']} to {ship}")
    return 0


def main(argv=None) -> int:
    p = add_sweep_arguments(OneLineParser(prog="bsnn sweep", description=__doc__,
                                          formatter_class=argparse.RawDescriptionHelpFormatter))
    args = p.parse_args(argv)
    try:
        return run_sweep(args)
    except (BSNNError, OSError) as exc:
        return report_error("bsnn sweep", exc)


if __name__ == "__main__":
    raise SystemExit(main())
