"""snnTorch -> NIR file -> bundle -> golden model, on MNIST: interoperability shown with numbers.

Trains a small ``snn.Leaky`` network in snnTorch (784-H-10, reset to zero, rate-coded input from
``bsnn.firmware_export.encoding.encode_images``), exports it with snnTorch's own NIR exporter, writes and
reads the NIR file, compiles it with :func:`bsnn.nir_interop.import_nir` and evaluates the integer
bundle on the golden model. Two trainings are compared:

* ``float``: ordinary float weights; the import binarises them after training (sign, per-neuron
  scale folded into thresholds and biases), which costs accuracy;
* ``binary``: the same network trained binarisation-aware in snnTorch (straight-through sign with
  per-neuron scale ``mean|w_j|``); the effective weights ``mean|w_j| * sign(w_j)`` are what
  snnTorch exports, so the import's binarisation is exact and only the neuron quantisation
  (leak shift, integer thresholds and biases) remains.

Each is imported without and with calibration (thresholds scaled per layer to match the spike
rates of the float reference simulation on a few training images).

    .venv/bin/python -m bsnn.nir_demo --out runs/nir_demo

writes ``report.json``, the NIR files and the bundles under ``--out``.

With ``--model BUNDLE`` (any bundle, convolutional ones included; ``--random-conv SEED`` makes a
random convolutional bundle for 28 x 28 images, for trying the path before a convolutional model
is trained) the demo takes that bundle through NIR instead: export, bit-exact re-import,
compilation of the same file as a foreign graph (metadata ignored), and the golden model and the
float reference simulation of the NIR file on the dataset's test images, reporting how the
three agree.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bsnn.firmware_export.bundle import save_bundle
from bsnn.firmware_export.golden import run_golden

from .nir_interop import import_nir, read_nir, simulate_nir


class BinaryLinear(torch.nn.Linear):
    """``nn.Linear`` whose forward uses ``mean|w_j| * sign(w_j)`` (straight-through gradient).

    It stays an ``nn.Linear``, so snnTorch's exporter writes its ``weight``; :meth:`freeze`
    replaces the latent weights by the effective binarised ones before export.
    """

    def effective_weight(self) -> torch.Tensor:
        s = self.weight.abs().mean(dim=1, keepdim=True)
        return torch.where(self.weight >= 0, 1.0, -1.0) * s

    def forward(self, x):
        w = self.weight + (self.effective_weight() - self.weight).detach()
        return F.linear(x, w, self.bias)

    @torch.no_grad()
    def freeze(self):
        self.weight.copy_(self.effective_weight())


def build_net(n_in: int, hidden: int, n_out: int, beta: float, binary: bool):
    import snntorch as snn

    linear = BinaryLinear if binary else torch.nn.Linear

    def leaky(n, output=False):
        # Per-neuron beta/threshold tensors: snnTorch 1.0's exporter writes scalar parameters with
        # shape (), which NIR's type check then rejects.
        return snn.Leaky(beta=torch.full((n,), beta), threshold=torch.ones(n), init_hidden=True,
                         reset_mechanism="zero", output=output)

    return torch.nn.Sequential(linear(n_in, hidden), leaky(hidden), linear(hidden, n_out), leaky(n_out, True))


def run_snntorch(net, on: torch.Tensor):
    """Run the snnTorch net on counts [T, B, N]; returns (output spikes [T, B, C], final mem [B, C]).

    The final potential is taken after the reset of the last step (snnTorch applies a reset in
    the step after the spike), which is the potential the core's readout compares.
    """
    from snntorch import utils as snn_utils

    snn_utils.reset(net)
    spikes = []
    mem = None
    for t in range(on.shape[0]):
        spk, mem = net(on[t].to(torch.float32))
        spikes.append(spk)
    return torch.stack(spikes), torch.where(spikes[-1] > 0, torch.zeros_like(mem), mem)


def count_readout(count: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """spike_count readout of docs/semantics.md (count, then potential, then lowest index)."""
    best = count == count.max(dim=1, keepdim=True).values
    return torch.argmax(torch.where(best, v, torch.full_like(v, -torch.inf)), dim=1)


def train(net, pool_on, pool_labels, steps: int, batch: int, lr: float, seed: int):
    """Adam on cross-entropy of the output spike counts, batches drawn from the encoded pool."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    losses = []
    for step in range(steps):
        idx = torch.randint(0, pool_on.shape[1], (batch,), generator=gen)
        spikes, _ = run_snntorch(net, pool_on[:, idx])
        loss = F.cross_entropy(spikes.sum(dim=0), pool_labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def accuracy(pred, labels) -> float:
    return float((pred == labels).double().mean())


def run_mode(mode: str, args, pool_on, pool_labels, test_on, test_labels, calib_on, out: Path) -> dict:
    from snntorch.export_nir import export_to_nir
    import nir

    torch.manual_seed(args.seed)
    t0 = time.time()
    net = build_net(test_on.shape[2], args.hidden, 10, args.beta, binary=(mode == "binary"))
    losses = train(net, pool_on, pool_labels, args.steps, args.batch, args.lr, args.seed)
    train_s = time.time() - t0
    if mode == "binary":
        for m in net:
            if isinstance(m, BinaryLinear):
                m.freeze()
    net.eval()
    with torch.no_grad():
        spikes, mem = run_snntorch(net, test_on)
    count = spikes.sum(dim=0).to(torch.int64)
    pred_snn = count_readout(count, mem.double())

    nir_path = out / f"{mode}.nir"
    graph = export_to_nir(net, torch.zeros(1, test_on.shape[2]), ignore_dims=[0])
    nir.write(nir_path, graph)
    graph = read_nir(nir_path)                       # from here on only the file is used
    ref = simulate_nir(graph, test_on)

    result = {
        "train_steps": args.steps, "train_seconds": round(train_s, 1),
        "final_loss_mean_last_20": float(np.mean(losses[-20:])),
        "snntorch_accuracy": accuracy(pred_snn, test_labels),
        "nir_float_reference_accuracy": accuracy(ref.prediction, test_labels),
        "nir_float_reference_output_spikes_equal_snntorch": bool(torch.equal(ref.spikes[-1], spikes.double())),
        "nir_float_reference_prediction_agreement_with_snntorch": accuracy(ref.prediction, pred_snn),
        "nir_file": str(nir_path),
    }
    for name, calib in (("plain", None), ("calibrated", calib_on)):
        t1 = time.time()
        bundle = import_nir(nir_path, time_steps=args.time_steps, v_width=args.v_width, calibration=calib)
        bundle.metadata["origin"] = (f"bsnn.nir_demo ({mode} training, {name} import) "
                                     f"from {nir_path.name}")
        g = run_golden(bundle, test_on)
        bundle_dir = save_bundle(bundle, out / f"bundle_{mode}_{name}")
        layers = bundle.metadata["nir_import"]["layers"]
        result[f"import_{name}"] = {
            "golden_accuracy": accuracy(g.prediction, test_labels),
            "agreement_with_snntorch": accuracy(g.prediction, pred_snn),
            "hidden_spikes_per_neuron_int": float(g.spikes_per_neuron.mean()),
            "hidden_spikes_per_neuron_float": float(ref.spikes[0].sum(dim=(0, 2)).mean() / ref.spikes[0].shape[2]),
            "leak_shifts": [layer["leak_v"] for layer in layers],
            "beta_abs_error_max": [layer["beta_abs_error_max"] for layer in layers],
            "weight_binarization_rel_error": [layer["weight_binarization_rel_error"] for layer in layers],
            "threshold_int_range": [[int(t.min()), int(t.max())] for t in bundle.threshold],
            "calibration": bundle.metadata["nir_import"].get("calibration"),
            "bundle": str(bundle_dir),
            "import_and_eval_seconds": round(time.time() - t1, 1),
        }
    return result


def bundle_mode(bundle, args, out: Path) -> dict:
    """``bundle`` -> NIR file -> bundle (metadata), and -> bundle (compiled as a foreign graph);
    golden model and float reference of the file on test samples."""
    import dataclasses

    from bsnn.firmware_export.bundle import load_bundle
    from bsnn.training.data import load_encoded

    from .nir_interop import write_nir

    nir_path = write_nir(bundle, out / "model.nir")
    graph = read_nir(nir_path)
    back = import_nir(nir_path)
    recompiled = import_nir(nir_path, use_metadata=False, time_steps=bundle.time_steps,
                            v_width=bundle.v_width, c_width=bundle.c_width, bias_width=bundle.bias_width,
                            readout=bundle.readout, max_input_events=bundle.max_input_events,
                            encoding=bundle.encoding, input_polarity=bundle.input_polarity)
    # leak_c of a layer without a current state means nothing, and NIR's nodes do not carry it
    expected = dataclasses.replace(bundle, layers=[
        layer if not layer.has_neurons or layer.current else dataclasses.replace(layer, leak_c=0)
        for layer in bundle.layers])
    saved = load_bundle(save_bundle(back, out / "bundle_round_trip"))
    data = load_encoded(bundle, args.dataset, "test", args.test_limit, args.data_root)
    t0 = time.time()
    g = run_golden(bundle, data.on, data.off)
    g_back = run_golden(saved, data.on, data.off)
    g_re = run_golden(recompiled, data.on, data.off)
    ref = simulate_nir(graph, data.on, data.off, readout=bundle.readout, input_polarity=bundle.input_polarity)
    same_spikes = all(torch.equal(a, b) for a, b in zip(g.spikes, g_back.spikes))
    per_layer = [float((a.double() == b).double().mean()) for a, b in zip(g.spikes, ref.spikes)]
    return {
        "model": str(args.model or "random convolutional bundle"),
        "layers": [{"kind": layer.kind, "size": layer.size} for layer in bundle.layers],
        "input_shape": list(bundle.input_shape) if bundle.input_shape else None,
        "input_polarity": bundle.input_polarity,
        "nir_file": str(nir_path),
        "nir_nodes": [type(graph.nodes[a]).__name__ for a, _ in graph.edges],
        "round_trip_same_bundle": bool(saved.same_as(bundle)),
        "round_trip_golden_spikes_identical": bool(same_spikes and torch.equal(g.prediction, g_back.prediction)),
        "foreign_recompile_same_network": bool(expected.same_as(recompiled)),
        "foreign_recompile_prediction_agreement": accuracy(g_re.prediction, g.prediction),
        "float_reference_spike_agreement_per_layer": per_layer,
        "float_reference_prediction_agreement": accuracy(ref.prediction, g.prediction),
        "samples": int(data.on.shape[1]),
        "golden_accuracy": accuracy(g.prediction, data.labels),
        "golden_spikes_per_neuron": float(g.spikes_per_neuron.mean()),
        "eval_seconds": round(time.time() - t0, 1),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/nir_demo")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--time-steps", type=int, default=16)
    p.add_argument("--beta", type=float, default=0.9)
    p.add_argument("--steps", type=int, default=300, help="training steps per mode")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--v-width", type=int, default=16)
    p.add_argument("--test-limit", type=int, default=2000)
    p.add_argument("--calibration-samples", type=int, default=256)
    p.add_argument("--train-pool", type=int, default=8192, help="training images encoded once and sampled")
    p.add_argument("--modes", default="float,binary")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default=None)
    p.add_argument("--model", default=None, help="take this bundle (dense or convolutional) through NIR "
                                                 "instead of training snnTorch networks")
    p.add_argument("--random-conv", type=int, default=None, metavar="SEED",
                   help="as --model, with a random convolutional bundle for 28 x 28 images")
    p.add_argument("--dataset", default="mnist", choices=["mnist", "fashion-mnist", "nmnist"],
                   help="test samples for --model / --random-conv")
    args = p.parse_args(argv)

    if args.model is not None or args.random_conv is not None:
        from bsnn.firmware_export.bundle import load_bundle, random_bundle

        if args.model is not None and args.random_conv is not None:
            p.error("give --model or --random-conv, not both")
        torch.set_num_threads(min(2, torch.get_num_threads()))
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        if args.model is not None:
            bundle = load_bundle(args.model)
        else:
            bundle = random_bundle(np.random.default_rng(args.random_conv), spatial=True,
                                   input_shape=(1, 28, 28), time_steps=args.time_steps)
            bundle.metadata["origin"] = f"bsnn.nir_demo --random-conv {args.random_conv}"
            save_bundle(bundle, out / "random_conv_bundle")
        report = {"command": "python -m bsnn.nir_demo " + " ".join(argv if argv is not None else sys.argv[1:]),
                  "versions": {"nir": __import__("nir").__version__, "torch": torch.__version__},
                  "bundle": bundle_mode(bundle, args, out)}
        (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(report["bundle"], indent=1)[:1500])
        print(f"wrote {out / 'report.json'}")
        return 0

    import snntorch

    from bsnn.training.data import load_mnist
    from bsnn.firmware_export.encoding import encode_images

    torch.manual_seed(args.seed)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train_data = load_mnist("train", args.data_root)
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
    warnings.filterwarnings("ignore", message="nirtorch.extract_nir_graph is being deprecated")
    test = load_mnist("test", args.data_root).subset(args.test_limit)
    test_on, _ = encode_images(test.images, args.time_steps, "rate")
    test_labels = torch.as_tensor(test.labels)
    pool = train_data.subset(args.train_pool)
    pool_on = encode_images(pool.images, args.time_steps, "rate")[0].to(torch.uint8)   # 0/1 per step
    pool_labels = torch.as_tensor(pool.labels)
    # Calibration images: the last training images (outside the pool; only their spike rates
    # are used, never their labels).
    calib_on, _ = encode_images(train_data.images[-args.calibration_samples:], args.time_steps, "rate")
    t0 = time.time()
    report = {
        "command": "python -m bsnn.nir_demo " + " ".join(argv if argv is not None else sys.argv[1:]),
        "config": {k: v for k, v in vars(args).items()},
        "versions": {"snntorch": snntorch.__version__, "nir": __import__("nir").__version__,
                     "torch": torch.__version__, "python": platform.python_version()},
        "dataset": {"name": "mnist", "test_samples": len(test), "encoding": {"kind": "rate"}},
        "modes": {},
    }
    for mode in args.modes.split(","):
        report["modes"][mode] = run_mode(mode, args, pool_on, pool_labels, test_on, test_labels, calib_on, out)
        print(f"{mode}: " + json.dumps({k: v for k, v in report["modes"][mode].items()
                                        if "accuracy" in k or k.startswith("import_")}, default=str)[:600])
    report["total_seconds"] = round(time.time() - t0, 1)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out / 'report.json'} ({report['total_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
