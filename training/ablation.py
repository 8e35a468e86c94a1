"""Compare training runs (AGMM on/off): overlay plot and a markdown table from their diagnostics.json.

``python -m bsnn.training.ablation runs/mnist runs/mnist_noagmm --labels "AGMM" "no AGMM"
--out docs/agmm_ablation --target 0.97``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["summarize", "main"]


def summarize(history: list[dict], target: float) -> dict:
    reach = next((h["epoch"] for h in history if h["test_acc"] >= target), None)
    last = history[-1]
    n = len(history)
    return {
        "epochs": n,
        "epochs_to_target": reach,
        "final_test_acc": last["test_acc"],
        "best_test_acc": max(h["test_acc"] for h in history),
        "final_train_acc": last["train_acc"],
        "final_loss": last["loss"],
        "mean_flip_rate_first5": sum(h["flip_rate"] for h in history[:5]) / min(5, n),
        "mean_flip_rate_all": sum(h["flip_rate"] for h in history) / n,
        "mean_iter_flip_rate_all": sum(h["iter_flip_rate"] for h in history) / n,
        "final_firing_rate_layers": last["firing_rate_layers"],
        "final_spikes_per_neuron_hidden": last["spikes_per_neuron_hidden"],
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("runs", nargs="+", help="run folders holding diagnostics.json")
    p.add_argument("--labels", nargs="+")
    p.add_argument("--out", required=True, help="output prefix (writes .png, .json, .md)")
    p.add_argument("--target", type=float, default=0.97)
    p.add_argument("--epochs", type=int, help="compare only the first N epochs of every run")
    a = p.parse_args(argv)
    labels = a.labels or [Path(r).name for r in a.runs]
    hists = [json.loads((Path(r) / "diagnostics.json").read_text())[: a.epochs] for r in a.runs]
    sums = {lab: summarize(h, a.target) for lab, h in zip(labels, hists)}

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 4, figsize=(17, 4))
    for lab, h in zip(labels, hists):
        ep = [r["epoch"] for r in h]
        ax[0].plot(ep, [r["flip_rate"] for r in h], "o-", ms=3, label=lab)
        ax[1].plot(ep, [r["iter_flip_rate"] for r in h], "o-", ms=3, label=lab)
        ax[2].plot(ep, [100 * r["test_acc"] for r in h], "o-", ms=3, label=lab)
        ax[3].plot(ep, [r["spikes_per_neuron_hidden"] for r in h], "o-", ms=3, label=lab)
    ax[0].set_title("sign-flip rate vs previous epoch")
    ax[1].set_title("mean sign-flip rate per iteration")
    ax[0].set_yscale("log")
    ax[1].set_yscale("log")
    ax[2].set_title("test accuracy (%)")
    ax[2].axhline(100 * a.target, color="gray", ls=":")
    ax[2].set_ylim(90, 100)
    ax[3].set_title("hidden spikes per neuron per inference")
    for x in ax:
        x.set_xlabel("epoch")
        x.grid(alpha=0.3)
        x.legend()
    fig.tight_layout()
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out.with_suffix(".png"), dpi=90)
    out.with_suffix(".json").write_text(json.dumps(sums, indent=1))
    rows = ["| run | epochs | epochs to {:.0%} | final test acc | best test acc | final train acc | "
            "mean flip rate/epoch (first 5, all) | mean flip rate/iteration | hidden firing rate "
            "(spikes/neuron/step, per layer) | hidden spikes/neuron/inference |".format(a.target),
            "|---|---|---|---|---|---|---|---|---|---|"]
    for lab, s in sums.items():
        rows.append(
            f"| {lab} | {s['epochs']} | {s['epochs_to_target']} | {100 * s['final_test_acc']:.2f} % | "
            f"{100 * s['best_test_acc']:.2f} % | {100 * s['final_train_acc']:.2f} % | "
            f"{s['mean_flip_rate_first5']:.4f}, {s['mean_flip_rate_all']:.4f} | "
            f"{s['mean_iter_flip_rate_all']:.2e} | "
            f"{', '.join(f'{x:.3f}' for x in s['final_firing_rate_layers'][:-1])} | "
            f"{s['final_spikes_per_neuron_hidden']:.3f} |")
    out.with_suffix(".md").write_text("\n".join(rows) + "\n")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
