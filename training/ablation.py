"""Compare training runs (AGMM on/off): overlay plot, markdown table and JSON from their diagnostics.json.

One run per label (the MLP ablation of docs/agmm.md)::

    python -m bsnn.training.ablation runs/mnist runs/mnist_noagmm --labels "AGMM" "no AGMM" \\
        --out docs/agmm_ablation --target 0.97

Several runs (seeds) per arm, reported as mean and spread (std, min, max) across the runs, and as
paired differences against a reference arm (runs of the same seed share the initial weights and
the order of the batches, so the difference isolates the arm)::

    python -m bsnn.training.ablation --arm "AGMM" runs/a_s0 runs/a_s1 --arm "no AGMM" runs/n_s0 runs/n_s1 \\
        --reference "no AGMM" --out docs/x --target 0.95

Train the three arms of :data:`ARMS` for several seeds from one config, then report as above
(``make agmm-conv-ablation``; runs that already hold every epoch are reused, unfinished ones resumed)::

    python -m bsnn.training.ablation --config configs/agmm_conv.toml --seeds 0 1 2 \\
        --runs-dir runs/agmm_conv --out docs/agmm_conv_ablation --target 0.95 --threads 1
"""

from __future__ import annotations

import argparse
import io
import json
import math
from pathlib import Path

from ..firmware_export.errors import BSNNError, InputError, report_error
from ..firmware_export.outputs import previous_json, previous_text, read_regular_file, write_file
from ..firmware_export.validate import (OneLineParser, existing_dir, existing_file, non_negative_int,
                                        output_dir, positive_int)

__all__ = ["ARMS", "summarize", "describe", "group_summary", "paired_differences", "load_run",
           "layer_names", "train_arms", "main"]

# The arms of the ablation: directory key -> (label, [agmm] table it sets over the config's).
ARMS = {
    "gradient": ("AGMM gradient (hardware-exact)", {"enabled": True, "mode": "gradient"}),
    "none": ("no AGMM", {"enabled": False}),
    "forward": ("AGMM forward (float reference)", {"enabled": True, "mode": "forward"}),
}
REFERENCE_ARM = "none"

# Scalar metrics of :func:`summarize` aggregated across the runs of an arm (and paired).
SCALARS = ("final_test_acc", "best_test_acc", "epochs_to_target", "final_train_acc", "final_loss",
           "flip_rate_epoch1", "mean_flip_rate_first5", "mean_flip_rate_all", "iter_flip_rate_epoch1",
           "mean_iter_flip_rate_all", "final_spikes_per_neuron_hidden")
# Per-layer metrics, aggregated layer by layer.
LAYERED = ("final_firing_rate_layers", "mean_flip_rate_layers_all", "mean_iter_flip_rate_layers_all")

_RUN_LIMIT = 64 << 20


def _mean(xs):
    return sum(xs) / len(xs)


def summarize(history: list[dict], target: float) -> dict:
    """One run's numbers from its per-epoch diagnostics (training/train.py writes them)."""
    reach = next((h["epoch"] for h in history if h["test_acc"] >= target), None)
    last = history[-1]
    n = len(history)
    out = {
        "epochs": n,
        "epochs_to_target": reach,
        "final_test_acc": last["test_acc"],
        "best_test_acc": max(h["test_acc"] for h in history),
        "final_train_acc": last["train_acc"],
        "final_loss": last["loss"],
        "flip_rate_epoch1": history[0]["flip_rate"],
        "mean_flip_rate_first5": _mean([h["flip_rate"] for h in history[:5]]),
        "mean_flip_rate_all": _mean([h["flip_rate"] for h in history]),
        "iter_flip_rate_epoch1": history[0]["iter_flip_rate"],
        "mean_iter_flip_rate_all": _mean([h["iter_flip_rate"] for h in history]),
        "final_firing_rate_layers": last["firing_rate_layers"],
        "final_spikes_per_neuron_hidden": last["spikes_per_neuron_hidden"],
    }
    for key, src in (("mean_flip_rate_layers_all", "flip_rate_layers"),
                     ("mean_iter_flip_rate_layers_all", "iter_flip_rate_layers")):
        if all(src in h for h in history):
            out[key] = [_mean(col) for col in zip(*(h[src] for h in history))]
    if last.get("alpha"):
        out["final_alpha"] = last["alpha"]
    return out


def describe(values) -> dict:
    """Mean, sample standard deviation (n - 1; 0 for one value), min and max of the values that
    are not None; ``n`` counts those, ``missing`` the None ones (a target never reached)."""
    values = list(values)
    vals = [float(v) for v in values if v is not None]
    missing = len(values) - len(vals)
    if not vals:
        return {"n": 0, "missing": missing, "mean": None, "std": None, "min": None, "max": None}
    m = _mean(vals)
    std = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return {"n": len(vals), "missing": missing, "mean": m, "std": std, "min": min(vals), "max": max(vals)}


def group_summary(summaries: list[dict]) -> dict:
    """Across the runs of one arm: :func:`describe` of every scalar metric, and of every layer of
    the per-layer metrics (the runs must have the same layers)."""
    out = {key: describe([s.get(key) for s in summaries]) for key in SCALARS}
    for key in LAYERED:
        if all(key in s for s in summaries):
            layers = {len(s[key]) for s in summaries}
            if len(layers) != 1:
                raise InputError(f"{key}: the runs of one arm have different numbers of layers {sorted(layers)}")
            out[key] = [describe(col) for col in zip(*(s[key] for s in summaries))]
    return out


def paired_differences(arm: dict, reference: dict) -> dict:
    """``arm - reference`` for every scalar metric over the seeds both hold (``{seed: summary}``
    each), with :func:`describe` of the differences; a seed where either value is None (target
    not reached) gives no difference."""
    seeds = sorted(set(arm) & set(reference))
    out = {"seeds": seeds}
    for key in SCALARS:
        diffs = [None if arm[s].get(key) is None or reference[s].get(key) is None
                 else arm[s][key] - reference[s][key] for s in seeds]
        out[key] = describe(diffs)
    return out


def load_run(path, epochs: int | None = None) -> tuple[list[dict], dict]:
    """A run folder's per-epoch history (the first ``epochs`` if given) and its config (``{}`` if
    the folder has no config.json); a missing or unusable file is a one-line :class:`InputError`."""
    path = Path(path)
    try:
        history = json.loads(read_regular_file(path / "diagnostics.json", _RUN_LIMIT))
    except ValueError as exc:
        raise InputError(f"{path / 'diagnostics.json'}: not a JSON history ({exc})") from None
    if not isinstance(history, list) or not history or not all(isinstance(h, dict) for h in history):
        raise InputError(f"{path / 'diagnostics.json'}: holds no epochs")
    need = ("epoch", "test_acc", "train_acc", "loss", "flip_rate", "iter_flip_rate",
            "firing_rate_layers", "spikes_per_neuron_hidden")
    for h in history:
        miss = [k for k in need if k not in h]
        if miss:
            raise InputError(f"{path / 'diagnostics.json'}: epoch {h.get('epoch', '?')} lacks {', '.join(miss)}")
    config = {}
    if (path / "config.json").exists():
        try:
            config = json.loads(read_regular_file(path / "config.json", _RUN_LIMIT))
        except ValueError as exc:
            raise InputError(f"{path / 'config.json'}: not JSON ({exc})") from None
    if epochs is not None:
        if len(history) < epochs:
            raise InputError(f"{path}: has {len(history)} epochs, fewer than --epochs {epochs}")
        history = history[:epochs]
    return history, config


def layer_names(config: dict) -> list[str] | None:
    """The layers of a run, as named in its config: feature specs, hidden sizes, ``out``."""
    model = config.get("model") if isinstance(config, dict) else None
    if not isinstance(model, dict):
        return None
    return [str(f) for f in model.get("features", [])] + [str(h) for h in model.get("hidden", [])] + ["out"]


# ------------------------------------------------------------------ what the gate does
def gate_statistics(model, on, off=None) -> list[dict]:
    """What the AGMM gates of ``model`` do on one batch: per neuron layer, its ``alpha[t]``, and
    over the steps t and samples b of the batch the gate ``g[t, b] = alpha[t] * sigmoid(m[t, b])``
    (docs/agmm.md 1): mean, std, min, max, and the relative spread std / |mean| of ``g`` and of
    the adaptive factor ``sigmoid(m)`` alone. Under Adam only the variation of ``g`` across
    samples and steps can change the training (a constant factor is normalised away), so the
    relative spreads say how much there is to modulate. ``[]`` without AGMM."""
    import torch

    if not getattr(model, "agmm_enabled", False):
        return []
    seen = {}
    hooks = [gate.register_forward_hook(lambda mod, args, out, k=k: seen.__setitem__(k, args[0].detach()))
             for k, gate in enumerate(model.gates)]
    try:
        with torch.no_grad():
            model(on, off)
    finally:
        for h in hooks:
            h.remove()

    def stats(x):
        m = float(x.mean())
        return {"mean": m, "std": float(x.std()), "min": float(x.min()), "max": float(x.max()),
                "rel_spread": float(x.std()) / abs(m) if m else None}

    out = []
    for k in sorted(seen):
        gate, x = model.gates[k], seen[k]
        with torch.no_grad():
            g = gate.gate(x).squeeze(-1)                                        # [T, B]
            sig = torch.sigmoid(x.mean(dim=-1) / gate.norm)                     # [T, B]
            within = float(sig.std(dim=1).mean() / sig.mean()) if sig.shape[1] > 1 else 0.0
        out.append({"layer": k, "alpha": gate.alpha.detach().tolist(), "gate": stats(g),
                    "sigmoid": stats(sig), "sigmoid_rel_spread_within_step": within})
    return out


def _run_gates(path: Path, samples: int) -> list[dict]:
    """:func:`gate_statistics` of a run's last checkpoint on its first ``samples`` test inputs."""
    from .builders import build_data
    from .export import load_checkpoint_model

    model, ck = load_checkpoint_model(path / "last.pt")
    _, test = build_data(ck["config"])
    import torch

    on, off, _ = test.batch(torch.arange(min(samples, len(test))))
    return gate_statistics(model, on, off)


# ------------------------------------------------------------------ training the arms
def run_dir(runs_dir, arm: str, seed: int) -> Path:
    return Path(runs_dir) / f"{arm}_s{seed}"


def arm_config(config_path, arm: str, seed: int, runs_dir, threads=None, epochs=None, data_root=None) -> dict:
    """The checked training config of one run of the ablation: the file, the arm's ``[agmm]``,
    the seed, its run folder, no export (the forward arm cannot be exported)."""
    from .train import load_config

    label, agmm = ARMS[arm]
    base = load_config(config_path)
    over = {"agmm": {**base["agmm"], **agmm},
            "train": {"seed": seed, "out_dir": str(run_dir(runs_dir, arm, seed))},
            "export": {"dir": None}, "name": f"{base['name']}_{arm}_s{seed}"}
    if threads is not None:
        over["train"]["threads"] = threads
    if epochs is not None:
        over["train"]["epochs"] = epochs
    if data_root is not None:
        over["data"] = {"root": str(data_root)}
    return load_config(config_path, over)


def train_arms(config_path, arms, seeds, runs_dir, threads=None, epochs=None, data_root=None,
               progress=False) -> dict:
    """Train every (arm, seed) one after the other, seed-major (so that a stopped ablation has
    whole seeds); a run whose diagnostics already hold every epoch is kept, an unfinished one is
    resumed from its last.pt. Returns ``{arm: [run folder per seed]}``."""
    from .train import check_runnable, train

    cfgs = {(a, s): arm_config(config_path, a, s, runs_dir, threads, epochs, data_root)
            for s in seeds for a in arms}
    for cfg in cfgs.values():
        check_runnable(cfg, str(config_path))
    for (arm, seed), cfg in cfgs.items():
        out = Path(cfg["train"]["out_dir"])
        diag = out / "diagnostics.json"
        if diag.exists():
            done = len(json.loads(read_regular_file(diag, _RUN_LIMIT)))
            if done >= cfg["train"]["epochs"]:
                print(f"ablation: {out} holds {done} epochs, kept", flush=True)
                continue
        print(f"ablation: training arm {arm!r} seed {seed} into {out}", flush=True)
        train(cfg, resume=str(out / "last.pt") if (out / "last.pt").exists() else None, progress=progress)
    return {a: [run_dir(runs_dir, a, s) for s in seeds] for a in arms}


# ------------------------------------------------------------------ report
def _pct(d, key="mean"):
    return "-" if d[key] is None else f"{100 * d[key]:.2f}"


def _spread_pct(d) -> str:
    if d["mean"] is None:
        return "not reached"
    return f"{100 * d['mean']:.2f} ± {100 * d['std']:.2f} [{100 * d['min']:.2f}, {100 * d['max']:.2f}]"


def _spread(d, fmt) -> str:
    if d["mean"] is None:
        return "not reached" if d["missing"] else "-"
    text = f"{fmt(d['mean'])} ± {fmt(d['std']).lstrip('+')} [{fmt(d['min'])}, {fmt(d['max'])}]"
    return text + (f" ({d['n']}/{d['n'] + d['missing']} reached)" if d["missing"] else "")


def _single_table(sums: dict, target: float) -> list[str]:
    rows = ["| run | epochs | epochs to {:.0%} | final test acc | best test acc | final train acc | "
            "mean flip rate/epoch (first 5, all) | mean flip rate/iteration | hidden firing rate "
            "(spikes/neuron/step, per layer) | hidden spikes/neuron/inference |".format(target),
            "|---|---|---|---|---|---|---|---|---|---|"]
    for lab, s in sums.items():
        rows.append(
            f"| {lab} | {s['epochs']} | {s['epochs_to_target']} | {100 * s['final_test_acc']:.2f} % | "
            f"{100 * s['best_test_acc']:.2f} % | {100 * s['final_train_acc']:.2f} % | "
            f"{s['mean_flip_rate_first5']:.4f}, {s['mean_flip_rate_all']:.4f} | "
            f"{s['mean_iter_flip_rate_all']:.2e} | "
            f"{', '.join(f'{x:.3f}' for x in s['final_firing_rate_layers'][:-1])} | "
            f"{s['final_spikes_per_neuron_hidden']:.3f} |")
    return rows


def _grouped_tables(doc: dict) -> list[str]:
    target, arms = doc["target"], doc["arms"]
    f4 = lambda v: f"{v:.4f}"
    e2 = lambda v: f"{v:.2e}"
    f3 = lambda v: f"{v:.3f}"
    f1 = lambda v: f"{v:.1f}"
    rows = [f"Mean ± sample std [min, max] over the runs of each arm (seeds {doc['seeds_text']}).", "",
            f"| arm | runs | final test acc (%) | best test acc (%) | epochs to {target:.0%} | "
            "final train acc (%) |",
            "|---|---|---|---|---|---|"]
    for lab, a in arms.items():
        s = a["stats"]
        rows.append(f"| {lab} | {len(a['runs'])} | {_spread_pct(s['final_test_acc'])} | "
                    f"{_spread_pct(s['best_test_acc'])} | {_spread(s['epochs_to_target'], f1)} | "
                    f"{_spread_pct(s['final_train_acc'])} |")
    rows += ["", "| arm | flip rate, epoch 1 | mean flip rate/epoch (all epochs) | "
             "flip rate/iteration, epoch 1 | mean flip rate/iteration (all) | hidden spikes/neuron/inference |",
             "|---|---|---|---|---|---|"]
    for lab, a in arms.items():
        s = a["stats"]
        rows.append(f"| {lab} | {_spread(s['flip_rate_epoch1'], f4)} | {_spread(s['mean_flip_rate_all'], f4)} | "
                    f"{_spread(s['iter_flip_rate_epoch1'], e2)} | {_spread(s['mean_iter_flip_rate_all'], e2)} | "
                    f"{_spread(s['final_spikes_per_neuron_hidden'], f3)} |")
    names = doc.get("layers")
    for key, title, fmt in (("final_firing_rate_layers", "final firing rate (spikes/neuron/step)", f3),
                            ("mean_flip_rate_layers_all", "mean flip rate/epoch", f4),
                            ("mean_iter_flip_rate_layers_all", "mean flip rate/iteration", e2)):
        if not all(key in a["stats"] for a in arms.values()):
            continue
        n = len(next(iter(arms.values()))["stats"][key])
        cols = names if names and len(names) == n else [f"layer {k}" for k in range(n)]
        # firing: every layer but the output (potential readout, never fires); flips: layers with weights
        keep = [k for k in range(n) if (k < n - 1 if key == "final_firing_rate_layers"
                                        else not cols[k].startswith("pool"))]
        rows += ["", f"| {title}, mean ± std | {' | '.join(cols[k] for k in keep)} |",
                 "|---|" + "---|" * len(keep)]
        for lab, a in arms.items():
            d = a["stats"][key]
            rows.append(f"| {lab} | " + " | ".join(f"{fmt(d[k]['mean'])} ± {fmt(d[k]['std'])}" for k in keep) + " |")
    gated = {lab: [e["gates"] for e in a["runs"] if e.get("gates")] for lab, a in arms.items()}
    if any(gated.values()):
        rows += ["", "AGMM gates on test inputs at the end of training (docs/agmm.md 6), mean over the runs: "
                 "alpha[t] over the steps; the gate g = alpha[t] * sigmoid(m[t, b]) over steps and samples "
                 "(mean, relative spread std/|mean|); the relative spread of sigmoid(m) across the samples of "
                 "one step (the per-sample adaptivity).", "",
                 "| arm | layer | alpha[t], t = 0.. | gate g: mean | g: std/mean | sigmoid(m): std/mean within a step |",
                 "|---|---|---|---|---|---|"]
        for lab, runs in gated.items():
            for i, first in enumerate(runs[0] if runs else []):
                k = first["layer"]
                name = names[k] if names and k < len(names) else f"layer {k}"
                per = [r[i] for r in runs]
                alpha = [_mean(col) for col in zip(*(p["alpha"] for p in per))]
                rel = [p["gate"]["rel_spread"] for p in per if p["gate"]["rel_spread"] is not None]
                rows.append(f"| {lab} | {name} | {', '.join(f'{x:.2f}' for x in alpha)} | "
                            f"{_mean([p['gate']['mean'] for p in per]):.3f} | "
                            f"{(_mean(rel) if rel else float('nan')):.3f} | "
                            f"{_mean([p['sigmoid_rel_spread_within_step'] for p in per]):.4f} |")
    if doc.get("paired"):
        ref = doc["reference"]
        rows += ["", f"Paired differences, arm minus {ref!r}, per seed (same initial weights and batch order): "
                 "mean ± std [min, max].", "",
                 "| arm | seeds | final test acc (pp) | best test acc (pp) | epochs to target | "
                 "mean flip rate/epoch | mean flip rate/iteration | hidden spikes/neuron/inference |",
                 "|---|---|---|---|---|---|---|---|"]
        pp = lambda v: f"{100 * v:+.2f}"
        sf4 = lambda v: f"{v:+.4f}"
        se2 = lambda v: f"{v:+.2e}"
        sf3 = lambda v: f"{v:+.3f}"
        sf1 = lambda v: f"{v:+.1f}"
        for lab, p in doc["paired"].items():
            rows.append(f"| {lab} | {len(p['seeds'])} | {_spread(p['final_test_acc'], pp)} | "
                        f"{_spread(p['best_test_acc'], pp)} | {_spread(p['epochs_to_target'], sf1)} | "
                        f"{_spread(p['mean_flip_rate_all'], sf4)} | {_spread(p['mean_iter_flip_rate_all'], se2)} | "
                        f"{_spread(p['final_spikes_per_neuron_hidden'], sf3)} |")
    return rows


def _previous_png(path: Path) -> bool:
    try:
        return read_regular_file(path, _RUN_LIMIT)[:8] == b"\x89PNG\r\n\x1a\n"
    except (OSError, ValueError):
        return False


def _plot(curves: dict, target: float, path: Path) -> None:
    """Four panels against epoch: flip rate per epoch, per iteration, test accuracy, hidden spikes.
    ``curves``: label -> list of histories; one history is drawn as a line, several as their mean
    with the min-max band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("flip_rate", "sign-flip rate vs previous epoch", 1, True),
              ("iter_flip_rate", "mean sign-flip rate per iteration", 1, True),
              ("test_acc", "test accuracy (%)", 100, False),
              ("spikes_per_neuron_hidden", "hidden spikes per neuron per inference", 1, False)]
    fig, ax = plt.subplots(1, 4, figsize=(17, 4))
    accs = [100 * r["test_acc"] for hists in curves.values() for h in hists for r in h]
    for lab, hists in curves.items():
        n = min(len(h) for h in hists)
        ep = [r["epoch"] for r in hists[0][:n]]
        for x, (key, _, scale, _) in zip(ax, panels):
            ys = [[scale * h[i][key] for h in hists] for i in range(n)]
            mean = [_mean(y) for y in ys]
            label = lab if len(hists) == 1 else f"{lab} (n={len(hists)})"
            line, = x.plot(ep, mean, "o-", ms=3, label=label)
            if len(hists) > 1:
                x.fill_between(ep, [min(y) for y in ys], [max(y) for y in ys], color=line.get_color(), alpha=0.2)
    for x, (key, title, _, log) in zip(ax, panels):
        x.set_title(title)
        if log:
            x.set_yscale("log")
        x.set_xlabel("epoch")
        x.grid(alpha=0.3)
        x.legend(fontsize=8)
    ax[2].axhline(100 * target, color="gray", ls=":")
    ax[2].set_ylim(min(90.0, 5 * math.floor(min(accs) / 5)), 100)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    write_file(path, buf.getvalue(), replaces=_previous_png)


def report(arms: dict, target: float, out, epochs: int | None = None, reference: str | None = None,
           grouped: bool = True, gates: int = 0) -> dict:
    """Read every run (``{label: [run folders]}``), write ``out``.json/.md/.png, return the JSON
    document. ``grouped=False`` (one run per label): the single-run table and JSON of the MLP
    ablation. ``gates > 0``: also :func:`gate_statistics` of every AGMM run's last checkpoint on
    its first ``gates`` test inputs."""
    out = Path(out)
    if reference is not None and reference not in arms:
        raise InputError(f"--reference {reference!r} is none of the arms {', '.join(map(repr, arms))}")
    runs = {lab: [(Path(r), *load_run(r, epochs)) for r in folders] for lab, folders in arms.items()}
    curves = {lab: [h for _, h, _ in rs] for lab, rs in runs.items()}
    if not grouped:
        sums = {lab: summarize(rs[0][1], target) for lab, rs in runs.items()}
        doc = sums
        rows = _single_table(sums, target)
    else:
        doc = {"target": target, "epochs": epochs, "reference": reference, "arms": {}}
        per_seed = {}
        seeds_all = set()
        names = None
        for lab, rs in runs.items():
            entries, by_seed = [], {}
            for k, (path, hist, cfg) in enumerate(rs):
                seed = cfg.get("train", {}).get("seed") if isinstance(cfg.get("train"), dict) else None
                s = summarize(hist, target)
                entries.append({"run": str(path), "seed": seed, **s})
                if gates and cfg.get("agmm", {}).get("enabled"):
                    entries[-1]["gates"] = _run_gates(path, gates)
                if seed is not None:
                    if seed in by_seed:
                        raise InputError(f"{path}: seed {seed} appears twice in arm {lab!r}")
                    by_seed[seed] = s
                    seeds_all.add(seed)
                names = names or layer_names(cfg)
            doc["arms"][lab] = {"runs": entries, "stats": group_summary([e for e in entries])}
            per_seed[lab] = by_seed
        doc["layers"] = names
        doc["seeds_text"] = ", ".join(str(s) for s in sorted(seeds_all)) or "unknown"
        if reference is not None:
            doc["paired"] = {lab: paired_differences(per_seed[lab], per_seed[reference])
                             for lab in arms if lab != reference}
        rows = _grouped_tables(doc)
    _plot(curves, target, out.with_suffix(".png"))
    write_file(out.with_suffix(".json"), (json.dumps(doc, indent=1) + "\n").encode(), replaces=previous_json)
    write_file(out.with_suffix(".md"), ("\n".join(rows) + "\n").encode(), replaces=previous_text)
    print("\n".join(rows))
    return doc


def main(argv=None) -> int:
    p = OneLineParser(prog="python -m bsnn.training.ablation", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="*", type=existing_dir, help="run folders holding diagnostics.json, one per label")
    p.add_argument("--labels", nargs="+", help="labels of the positional runs (default: folder names)")
    p.add_argument("--arm", nargs="+", action="append", metavar=("LABEL", "RUN"),
                   help="an arm: its label, then its run folders (one per seed); repeat per arm")
    p.add_argument("--config", type=existing_file,
                   help="train the arms (%s) from this config first" % ", ".join(ARMS))
    p.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS), help="with --config: which arms")
    p.add_argument("--seeds", nargs="+", type=non_negative_int, help="with --config: the seeds")
    p.add_argument("--runs-dir", type=output_dir, help="with --config: run folders go to <runs-dir>/<arm>_s<seed>")
    p.add_argument("--threads", type=positive_int, help="with --config: torch CPU threads per run")
    p.add_argument("--data-root", type=existing_dir, help="with --config: datasets folder")
    p.add_argument("--reference", help="label of the arm the others are compared with, seed by seed "
                                       f"(with --config: default {ARMS[REFERENCE_ARM][0]!r})")
    p.add_argument("--gates", type=non_negative_int, default=0, metavar="N",
                   help="with --arm/--config: also measure the AGMM gates of every AGMM run's last.pt on "
                        "its first N test inputs")
    p.add_argument("--out", required=True, help="output prefix (writes .png, .json, .md)")
    p.add_argument("--target", type=float, default=0.97)
    p.add_argument("--epochs", type=positive_int, help="compare only the first N epochs of every run "
                   "(with --config: also the number of epochs trained)")
    a = p.parse_args(argv)
    modes = sum([bool(a.runs), bool(a.arm), a.config is not None])
    if modes != 1:
        p.error("give run folders, or --arm groups, or --config (exactly one of them)")
    if a.config is not None and (a.seeds is None or a.runs_dir is None):
        p.error("--config needs --seeds and --runs-dir")
    if a.labels is not None and len(a.labels) != len(a.runs):
        p.error(f"--labels: {len(a.labels)} labels for {len(a.runs)} runs")
    try:
        if a.runs:
            labels = a.labels or [r.name for r in a.runs]
            if len(set(labels)) != len(labels):
                raise InputError("--labels: a label appears twice (use --arm to group runs)")
            report({lab: [r] for lab, r in zip(labels, a.runs)}, a.target, a.out, a.epochs,
                   a.reference, grouped=a.reference is not None)
            return 0
        if a.arm:
            arms = {}
            for group in a.arm:
                if len(group) < 2:
                    raise InputError(f"--arm {group[0]!r}: give the label, then at least one run folder")
                if group[0] in arms:
                    raise InputError(f"--arm {group[0]!r}: the label appears twice")
                for r in group[1:]:
                    existing_dir_or_error(r)
                arms[group[0]] = group[1:]
            report(arms, a.target, a.out, a.epochs, a.reference, gates=a.gates)
            return 0
        if len(set(a.seeds)) != len(a.seeds):
            raise InputError("--seeds: a seed appears twice")
        folders = train_arms(a.config, a.arms, a.seeds, a.runs_dir, a.threads, a.epochs, a.data_root)
        reference = a.reference
        if reference is None and REFERENCE_ARM in a.arms and len(a.arms) > 1:
            reference = ARMS[REFERENCE_ARM][0]
        report({ARMS[k][0]: v for k, v in folders.items()}, a.target, a.out, a.epochs, reference, gates=a.gates)
        return 0
    except (BSNNError, OSError) as exc:
        return report_error("python -m bsnn.training.ablation", exc)


def existing_dir_or_error(text) -> Path:
    try:
        return existing_dir(text)
    except argparse.ArgumentTypeError as exc:
        raise InputError(f"--arm: {exc}") from None


if __name__ == "__main__":
    raise SystemExit(main())
