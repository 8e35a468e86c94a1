"""Benchmark: training speed of our BSNN trainer against an equivalent snnTorch network.

    python -m bsnn.bench.train_speed [--config configs/mnist.toml] [--batches 0 (= one epoch)] [--json docs/bench/train_speed.json]

Same sizes (784-400-400-400-10), same time steps, same batch size, same encoded MNIST batches,
same optimizer (Adam), one thread each, measured in one run and alternated in rounds so that a
noisy shared machine slows both alike. The snnTorch network is the idiomatic one: nn.Linear
layers (float weights; snnTorch has no binary layer) and snn.Leaky neurons with beta = 1 (our
hidden neurons do not leak), subtractive reset, the output layer's potential summed as logits.
Ours additionally binarizes every weight with a straight-through estimator and keeps the
integer semantics of the hardware exactly. Reported: seconds per batch and the ratio
ours / snnTorch (goal: <= 1.0).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from bsnn.firmware_export.outputs import previous_json, write_file
from bsnn.training.train import _make_optimizer, build_data, build_model, load_config


def snntorch_net(sizes, threshold: float):
    import snntorch as snn
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fcs = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(sizes[:-1], sizes[1:]))
            self.lifs = nn.ModuleList(snn.Leaky(beta=1.0, threshold=threshold, reset_mechanism="subtract")
                                      for _ in sizes[1:-1])
            self.out = snn.Leaky(beta=1.0, threshold=1e9, reset_mechanism="none")

        def forward(self, x):   # x: [T, B, N0]
            mems = [lif.init_leaky() for lif in self.lifs]
            mem_out = self.out.init_leaky()
            for t in range(x.shape[0]):
                h = x[t]
                for k, lif in enumerate(self.lifs):
                    h, mems[k] = lif(self.fcs[k](h), mems[k])
                _, mem_out = self.out(self.fcs[-1](h), mem_out)
            return mem_out
    return Net()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="configs/mnist.toml")
    p.add_argument("--batches", type=int, default=0, help="batches per measurement (0 = one epoch)")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds (each times both)")
    p.add_argument("--json", type=Path, default=Path("docs/bench/train_speed.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)

    cfg = load_config(args.config)
    train_data, _ = build_data(cfg)
    bs = int(cfg["train"]["batch_size"])
    n = args.batches or len(train_data) // bs
    batches = []
    order = torch.randperm(len(train_data), generator=torch.Generator().manual_seed(0))
    for i in range(n):
        idx = order[i * bs:(i + 1) * bs]
        on, off, y = train_data.batch(idx)
        batches.append((on, off, y))
    ours = build_model(cfg, train_data.ds.input_size, train_data.max_events())
    ours_opt = _make_optimizer(ours, cfg["train"])
    sizes = [train_data.ds.input_size] + list(cfg["model"]["hidden"]) + [int(cfg["model"]["num_classes"])]
    theirs = snntorch_net(sizes, threshold=10.0)
    theirs_opt = torch.optim.Adam(theirs.parameters(), lr=float(cfg["train"]["lr"]))

    def step_ours(on, off, y):
        loss = F.cross_entropy(ours(on, off).logits, y)
        ours_opt.zero_grad(set_to_none=True)
        loss.backward()
        ours_opt.step()

    def step_theirs(on, off, y):
        x = on.float() if off is None else (on - off).float()
        loss = F.cross_entropy(theirs(x), y)
        theirs_opt.zero_grad(set_to_none=True)
        loss.backward()
        theirs_opt.step()

    times = {"ours": 0.0, "snntorch": 0.0}
    for r in range(args.rounds):
        pairs = [("ours", step_ours), ("snntorch", step_theirs)]
        for name, step in (pairs if r % 2 == 0 else pairs[::-1]):
            t0 = time.perf_counter()
            for on, off, y in batches:
                step(on, off, y)
            times[name] += time.perf_counter() - t0
    steps = n * args.rounds
    import snntorch
    report = {
        "benchmark": "train_speed", "config": args.config, "sizes": sizes,
        "time_steps": int(cfg["encoding"]["time_steps"]), "batch_size": bs, "batches": n,
        "rounds": args.rounds, "threads": 1,
        "seconds_per_batch": {k: round(v / steps, 5) for k, v in times.items()},
        "ratio_ours_over_snntorch": round(times["ours"] / times["snntorch"], 4),
        "versions": {"torch": torch.__version__, "snntorch": snntorch.__version__,
                     "python": platform.python_version()},
        "command": " ".join(["python -m bsnn.bench.train_speed"] + list(sys.argv[1:] if argv is None else argv)),
    }
    write_file(args.json, (json.dumps(report, indent=2) + "\n").encode(), replaces=previous_json)
    print(f"ours {report['seconds_per_batch']['ours'] * 1000:.1f} ms/batch, snnTorch "
          f"{report['seconds_per_batch']['snntorch'] * 1000:.1f} ms/batch: ratio "
          f"{report['ratio_ours_over_snntorch']} (goal <= 1.0); written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
