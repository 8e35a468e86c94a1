"""Export a training checkpoint to an integer model bundle (``bsnn.firmware_export.bundle.save_bundle``)."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import torch

__all__ = ["load_checkpoint_model", "export_checkpoint", "write_compact_checkpoint", "main"]


def load_checkpoint_model(ckpt_path: str | Path, time_steps: int | None = None):
    """``(model, checkpoint dict)`` rebuilt from a checkpoint written by ``bsnn.training.train``;
    with ``time_steps`` the network runs that many steps instead of the ``T`` it was trained with
    (:func:`with_time_steps`)."""
    from .checkpoint import CheckpointError, load_checkpoint
    from .builders import build_model, with_later_keys

    check_time_steps(time_steps)
    ck = load_checkpoint(ckpt_path)   # weights_only: nothing in the file can run code
    try:
        # (the config as recorded stays in the checkpoint dict: the bundle's provenance)
        cfg = with_time_steps(with_later_keys(ck["config"]), time_steps)
        model = build_model(cfg, ck["input_size"], ck["max_input_events"])
        model.load_state_dict(_state_for(model, ck["model"]) if time_steps is not None else ck["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{ckpt_path}: the model in the checkpoint does not match its config ({first})") from None
    model.eval()
    return model, ck


def _state_for(model, state: dict) -> dict:
    """``state`` with ``model``'s own per-step entries (AGMM gates) where ``T`` changed their
    length: they act in training only, never in the integer forward pass (nor the export)."""
    from .agmm import is_per_step
    own = model.state_dict()
    return {name: own[name] if is_per_step(name) and name in own and own[name].shape != value.shape
            else value for name, value in state.items()}


def check_time_steps(time_steps) -> None:
    """A one-line :class:`CheckpointError` unless ``time_steps`` is None or a bundle's ``T``."""
    from bsnn.firmware_export.bundle import MAX_TIME_STEPS

    from .checkpoint import CheckpointError
    if time_steps is not None and (isinstance(time_steps, bool) or not isinstance(time_steps, int)
                                   or not 1 <= time_steps <= MAX_TIME_STEPS):
        raise CheckpointError(f"time_steps must be an integer in [1, {MAX_TIME_STEPS}], got {time_steps!r}")


def with_time_steps(cfg: dict, time_steps: int | None) -> dict:
    """``cfg`` with ``encoding.time_steps`` replaced by ``time_steps`` (unchanged for None).

    The parameters do not depend on ``T``: the same network simply runs more or fewer steps (a
    rate-coded pixel is spread over the new ``T``, an event window binned into it), trading
    cycles per inference for accuracy. ``T`` must lie in the bundle's range."""
    if time_steps is None:
        return cfg
    check_time_steps(time_steps)
    return {**cfg, "encoding": {**cfg["encoding"], "time_steps": time_steps}}


# A compact checkpoint of a billion binary weights is 125 MB: anything larger at the output path
# is not one, and is refused without being read.
_MAX_COMPACT_BYTES = 256 << 20


def _is_compact_checkpoint(path: Path) -> bool:
    """True for a file this command wrote: a compact checkpoint that loads."""
    import os

    from .checkpoint import CheckpointError, load_checkpoint
    if os.path.getsize(path) > _MAX_COMPACT_BYTES:
        return False
    try:
        return bool(load_checkpoint(path, required=("model",)).get("from_compact"))
    except CheckpointError:
        return False


def write_compact_checkpoint(ckpt_path: str | Path, out_path: str | Path) -> dict:
    """Write the compact form of ``ckpt_path`` (``bsnn.training.checkpoint.compact_checkpoint``)
    to ``out_path`` atomically, after checking that it rebuilds a network with the same integer
    parameters (so the same bundle). An existing ``out_path`` is replaced only if it is a compact
    checkpoint itself. Returns the sizes and the number of binary weights."""
    import io
    import os
    import tempfile

    import numpy as np

    from bsnn.firmware_export.outputs import check_file_output, write_file

    from .checkpoint import CheckpointError, compact_checkpoint

    check_file_output(out_path, replaces=_is_compact_checkpoint, inputs=[ckpt_path])
    model, ck = load_checkpoint_model(ckpt_path)
    buffer = io.BytesIO()
    torch.save(compact_checkpoint(ck), buffer)
    data = buffer.getvalue()
    with tempfile.TemporaryDirectory() as tmp:   # the check reads the bytes as they will be written
        probe = Path(tmp) / "compact.pt"
        probe.write_bytes(data)
        rebuilt, _ = load_checkpoint_model(probe)
    for k, (a, b) in enumerate(zip(_integers(model), _integers(rebuilt))):
        if not all(np.array_equal(x, y) for x, y in zip(a, b)):
            raise CheckpointError(f"{ckpt_path}: its compact form would change layer {k}'s integer "
                                  "parameters; nothing written")
    write_file(out_path, data, replaces=_is_compact_checkpoint, inputs=[ckpt_path])
    n_binary = sum(int(p.numel()) for p in model.weights)
    return {"bytes_in": os.path.getsize(ckpt_path), "bytes_out": len(data), "binary_weights": n_binary}


def _integers(model) -> list:
    """Per layer (weights, bias, threshold) as the bundle takes them."""
    return list(zip(*model.hardware_params()))


def _repo_relative(path) -> str:
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path(__file__).resolve().parent.parent))
    except ValueError:
        return str(path)


def _tool_versions() -> dict:
    import platform

    import numpy
    versions = {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__}
    try:
        from importlib.metadata import version
        versions["bsnn-fpga"] = version("bsnn-fpga")
    except Exception:
        pass
    return versions


def export_checkpoint(ckpt_path: str | Path, out_dir: str | Path, golden_eval: bool = True,
                      eval_limit: int | None = None, data_root: str | None = None,
                      fit_widths: bool = False, time_steps: int | None = None) -> dict:
    """Write the bundle of ``ckpt_path`` to ``out_dir``; returns its metadata.

    With ``time_steps`` the bundle runs that many steps per inference instead of the ``T`` the
    network was trained with (:func:`with_time_steps`); the metadata then records both
    (``time_steps_trained``), its ``training_*`` accuracies stay those measured at the trained
    ``T``, and the test accuracies below are measured at the new one.

    With ``fit_widths`` the state and bias widths of the bundle are chosen from the data: the
    narrowest that hold every exact sum seen on the training samples (and every threshold and
    bias), so nothing saturates there; beyond them the semantics saturate. The test accuracy is
    then measured on the narrowed bundle.

    With ``golden_eval`` the test set is run through ``run_golden`` on the bundle as saved and
    loaded back (hardware-exact accuracy), and through the model's own hardware mode; both
    accuracies, the training history and the config go into the bundle metadata.

    The bundle is built and evaluated in a staging folder and swapped in for ``out_dir`` only when
    everything succeeded: a failing evaluation leaves an earlier bundle there untouched. An
    existing ``out_dir`` must be a bundle, and never the checkpoint itself.
    """
    from bsnn.firmware_export.bundle import bundle_output

    check_time_steps(time_steps)
    # The transaction first: an output path that must not be replaced is refused before any work.
    with bundle_output(out_dir, inputs=[ckpt_path]) as staging:
        meta = _export_into(staging, ckpt_path, golden_eval, eval_limit, data_root, fit_widths,
                            time_steps)
    return meta


def _export_into(staging: Path, ckpt_path, golden_eval, eval_limit, data_root, fit_widths,
                 time_steps=None) -> dict:
    from bsnn.firmware_export.bundle import write_bundle_files

    from .builders import encoding_spec

    model, ck = load_checkpoint_model(ckpt_path, time_steps)
    cfg = ck["config"]
    hist = ck.get("history", [])
    # Provenance that depends only on the checkpoint and the tools, never on the clock or the
    # working tree, so that exporting the same checkpoint reproduces the bundle bit for bit.
    meta = {
        "name": cfg.get("name"),
        "checkpoint": _repo_relative(ckpt_path),
        "checkpoint_sha256": hashlib.sha256(Path(ckpt_path).read_bytes()).hexdigest(),
        "tool_versions": _tool_versions(),
        "epochs_trained": ck.get("epoch"),
        "config": cfg,
        "dataset": cfg["data"]["dataset"],
        "agmm": cfg["agmm"],
        "training_test_acc": hist[-1]["test_acc"] if hist else None,
        "training_train_acc": hist[-1]["train_acc"] if hist else None,
        "history": hist,
    }
    trained_steps = cfg["encoding"]["time_steps"]
    if time_steps is not None and time_steps != trained_steps:
        meta["time_steps_trained"] = trained_steps
        cfg = with_time_steps(cfg, time_steps)   # what the evaluations below encode with
    bundle = model.to_bundle(meta)
    bundle.encoding = encoding_spec(cfg)   # complete, defaults filled in: the bundle's contract
    if data_root:
        cfg = dict(cfg, data=dict(cfg["data"], root=data_root))
    if fit_widths:
        from dataclasses import replace

        from bsnn.firmware_export.widths import signed_bits, width_report
        on, off = _width_samples(cfg)
        rep = width_report(bundle, on, off)
        bias_lo = min(int(b.min()) for b in bundle.bias)
        bias_hi = max(int(b.max()) for b in bundle.bias)
        bias_width = signed_bits(bias_lo, bias_hi)
        v_width = max(rep["v_width_needed"], bias_width)
        meta["widths_fitted"] = {"from": {"v": bundle.v_width, "c": bundle.c_width, "bias": bundle.bias_width},
                                 "to": {"v": v_width, "c": rep["c_width_needed"], "bias": bias_width}}
        bundle = replace(bundle, v_width=v_width, c_width=rep["c_width_needed"], bias_width=bias_width,
                         layers=[replace(l, leak_v=min(l.leak_v, v_width - 1),
                                         leak_c=min(l.leak_c, rep["c_width_needed"] - 1))
                                 for l in bundle.layers]).validate()
    write_bundle_files(bundle, staging)
    if golden_eval:
        _golden_evaluation(model, meta, cfg, staging, eval_limit)
    return meta


def _golden_evaluation(model, meta: dict, cfg: dict, staging: Path, eval_limit) -> None:
    """Evaluate the bundle written in ``staging`` as loaded back; rewrite it with the results."""
    from bsnn.firmware_export.bundle import load_bundle, write_bundle_files

    from .builders import build_data, evaluate, run_eval_dataset

    _, test = build_data(cfg)
    bundle = load_bundle(staging)
    hw = run_eval_dataset(bundle, test, limit=eval_limit)
    own = evaluate(model, test, hardware=True) if eval_limit is None else None
    meta["test_acc_hardware_exact"] = hw["acc"]
    meta["test_samples"] = hw["n"]
    meta["spikes_per_neuron_hidden"] = hw["spikes_per_neuron"]
    meta["sops_per_inference"] = hw["sops_per_inference"]
    meta["evaluated_with"] = "firmware_export.golden.run_golden on the saved bundle"
    if own is not None:
        meta["test_acc_model_hardware_mode"] = own["acc"]
        # The training forward pass computes the integers exactly (only gradients differ),
        # so the float-vs-integer gap is measured, not assumed: it must be 0.
        meta["accuracy_gap_training_vs_exported_pp"] = round(100 * (own["acc"] - hw["acc"]), 4)
    from bsnn.firmware_export.widths import width_report
    on, off = _width_samples(cfg)
    meta["width_report"] = width_report(bundle, on, off)
    meta["width_report"]["note"] = (f"extremes of the exact sums on the first {on.shape[1]} "
                                    "training samples; values beyond the widths saturate")
    bundle.metadata = meta
    write_bundle_files(bundle, staging)
    return meta


def _width_samples(cfg, n: int = 2000):
    """The first ``n`` training samples, encoded as the model sees them, not augmented."""
    from .builders import build_data

    train, _ = build_data(cfg)
    train.augment_shift = 0
    on, off, _y = train.batch(torch.arange(min(n, len(train))))
    return on, off


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bsnn.training.export", description=__doc__)
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
