"""Export a training checkpoint to an integer model bundle (``firmware_export.bundle.save_bundle``)."""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import torch

__all__ = ["load_checkpoint_model", "export_checkpoint", "main"]


def load_checkpoint_model(ckpt_path: str | Path):
    """``(model, checkpoint dict)`` rebuilt from a checkpoint written by ``training.train``."""
    from .train import build_model

    ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    model = build_model(ck["config"], ck["input_size"], ck["max_input_events"])
    model.load_state_dict(ck["model"])
    model.eval()
    return model, ck


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except Exception:
        return None


def export_checkpoint(ckpt_path: str | Path, out_dir: str | Path, golden_eval: bool = True,
                      eval_limit: int | None = None, data_root: str | None = None) -> dict:
    """Write the bundle of ``ckpt_path`` to ``out_dir``; returns its metadata.

    With ``golden_eval`` the test set is run through ``run_golden`` on the bundle as saved and
    loaded back (hardware-exact accuracy), and through the model's own hardware mode; both
    accuracies, the training history and the config go into the bundle metadata.
    """
    from firmware_export.bundle import load_bundle, save_bundle

    from .train import build_data, evaluate, run_eval_dataset

    model, ck = load_checkpoint_model(ckpt_path)
    cfg = ck["config"]
    hist = ck.get("history", [])
    meta = {
        "name": cfg.get("name"),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git_commit": _git_commit(),
        "checkpoint": str(ckpt_path),
        "epochs_trained": ck.get("epoch"),
        "config": cfg,
        "dataset": cfg["data"]["dataset"],
        "encoding": cfg["encoding"],
        "agmm": cfg["agmm"],
        "training_test_acc": hist[-1]["test_acc"] if hist else None,
        "training_train_acc": hist[-1]["train_acc"] if hist else None,
        "history": hist,
    }
    out_dir = Path(out_dir)
    save_bundle(model.to_bundle(meta), out_dir)
    if golden_eval:
        if data_root:
            cfg = dict(cfg, data=dict(cfg["data"], root=data_root))
        _, test = build_data(cfg)
        bundle = load_bundle(out_dir)
        hw = run_eval_dataset(bundle, test, limit=eval_limit)
        own = evaluate(model, test, hardware=True) if eval_limit is None else None
        meta["test_acc_hardware_exact"] = hw["acc"]
        meta["test_samples"] = hw["n"]
        meta["spikes_per_neuron_hidden"] = hw["spikes_per_neuron"]
        meta["sops_per_inference"] = hw["sops_per_inference"]
        meta["evaluated_with"] = "firmware_export.golden.run_golden on the saved bundle"
        if own is not None:
            meta["test_acc_model_hardware_mode"] = own["acc"]
        bundle.metadata = meta
        save_bundle(bundle, out_dir)
    return meta


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.export", description=__doc__)
    p.add_argument("checkpoint")
    p.add_argument("out_dir")
    p.add_argument("--no-eval", action="store_true")
    p.add_argument("--limit", type=int)
    p.add_argument("--data-root")
    a = p.parse_args(argv)
    meta = export_checkpoint(a.checkpoint, a.out_dir, not a.no_eval, a.limit, a.data_root)
    print(json.dumps({k: v for k, v in meta.items() if k not in ("history", "config")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
