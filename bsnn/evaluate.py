"""``bsnn eval``: a bundle on a dataset, on the golden model or on the RTL, with a JSON report."""
from __future__ import annotations

import json
import math
import time

import numpy as np
import torch
from tqdm import tqdm

from bsnn.firmware_export.bundle import Bundle
from bsnn.firmware_export.errors import InputError
from bsnn.firmware_export.outputs import check_file_output, previous_json, write_file
from bsnn.firmware_export.golden import golden_batches
from bsnn.firmware_export.paths import source_commit
from bsnn.training.data import load_encoded

class EvalError(InputError):
    """Bad request for an evaluation (one-line message)."""


def golden_in_batches(bundle: Bundle, on, off, batch: int = 500, progress: bool = True):
    """Run the golden model over a dataset in batches (at most ``batch`` samples, fewer for a
    network whose maps would not fit memory); returns per-sample summary tensors."""
    preds, sops, hidden = [], [], []
    total = on.shape[1]
    hidden_neurons = 0
    with tqdm(total=total, desc="golden", unit="sample", disable=not progress, leave=False) as bar:
        for start, stop, res in golden_batches(
                bundle, total, lambda a, b: (on[:, a:b], None if off is None else off[:, a:b]), batch):
            preds.append(res.prediction)
            sops.append(res.sops)
            hidden.append(res.hidden_spikes)
            bar.update(stop - start)
            hidden_neurons = res.hidden_neurons
    return torch.cat(preds), torch.cat(sops), torch.cat(hidden), hidden_neurons


def evaluate(bundle: Bundle, dataset: str, split: str = "test", limit: int | None = None,
             engine: str = "golden", simulator: str = "verilator", data_root=None,
             encoding: str | None = None, progress: bool = True, model_path: str = "",
             hw=None) -> dict:
    t0 = time.perf_counter()
    data = load_encoded(bundle, dataset, split, limit, data_root, encoding)
    n = int(data.labels.shape[0])
    if n == 0:
        raise EvalError(f"dataset {dataset} split {split}: no samples selected")
    preds, sops, hidden, hidden_neurons = golden_in_batches(bundle, data.on, data.off, progress=progress)
    report = {
        "model": model_path,
        "dataset": dataset,
        "split": split,
        "engine": engine,
        "samples": n,
        "encoding": data.encoding,
        "time_steps": bundle.time_steps,
        "sizes": bundle.sizes,
        "accuracy": float((preds == data.labels).double().mean()),
        "spikes_per_neuron": float(hidden.double().mean() / hidden_neurons),
        "sops_per_inference": float(sops.double().mean()),
    }
    if engine == "rtl":
        from bsnn.sim.rtl_eval import rtl_evaluate

        rtl = rtl_evaluate(bundle, data.on, data.off, simulator=simulator, progress=progress, hw=hw)
        rtl_correct = (torch.as_tensor(rtl["predictions"]) == data.labels).double().mean()
        report.update({
            "simulator": simulator,
            "bit_exact": rtl["bit_exact"],
            "mismatches": rtl["mismatches"][:20],
            "mismatch_count": len(rtl["mismatches"]),
            "rtl_accuracy": float(rtl_correct),
            "cycles_per_inference": float(np.mean(rtl["cycles"])),
            "cycles_max": int(np.max(rtl["cycles"])),
            "sops_per_cycle": float(sops.double().mean() / np.mean(rtl["cycles"])),
            # docs/performance.md: the event bound of the build, and how close the core comes.
            "cycles_bound": float(np.mean(rtl["cycles_bound"])),
            "cycles_bound_ratio": float(np.mean(rtl["cycles"]) / np.mean(rtl["cycles_bound"])),
            "rtl_seconds": rtl["seconds"],
        })
    report["seconds"] = round(time.perf_counter() - t0, 3)
    report["source_commit"] = source_commit()   # the code that produced these numbers
    return report


def summary_lines(report: dict) -> list[str]:
    lines = [f"{report['samples']} {report['dataset']} {report['split']} samples on "
             f"{report['engine']}: accuracy {100 * report['accuracy']:.2f} %",
             f"  spikes per hidden neuron {report['spikes_per_neuron']:.3f}, "
             f"SOPs per inference {report['sops_per_inference']:.0f}"]
    if report["engine"] == "rtl":
        verdict = "bit-exact" if report["bit_exact"] else f"{report['mismatch_count']} MISMATCHING samples"
        lines.append(f"  RTL ({report['simulator']}) vs golden model: {verdict}; "
                     f"{report['cycles_per_inference']:.0f} cycles per inference "
                     f"({report['sops_per_cycle']:.2f} SOPs/cycle"
                     + (f", {report['cycles_bound_ratio']:.3f} x the event bound" if "cycles_bound_ratio" in report else "")
                     + ")")
        for m in report["mismatches"][:3]:
            lines.append(f"  mismatch: {m}")
    return lines


def check_report_path(path, model_path=None) -> None:
    """Refuse now what :func:`write_report` would refuse after the evaluation."""
    check_file_output(path, replaces=previous_json, inputs=[model_path])


def write_report(report: dict, path) -> None:
    """Write ``report`` as JSON, atomically; an existing ``path`` must be a JSON file (an earlier
    report), never the evaluated model or a file in it."""
    def clean(x):
        if isinstance(x, float) and not math.isfinite(x):
            return None
        return x
    write_file(path, (json.dumps({k: clean(v) for k, v in report.items()}, indent=2) + "\n").encode(),
               replaces=previous_json, inputs=[report.get("model") or None])
