"""Reference reproduction of the SSR paper's setting (docs/ssr.md section 6).

Continuous-time, non-leaky integrate-and-fire neurons with step-shaped synaptic current and at
most one spike, full-precision weights (Sakemi et al., Sci. Rep. 13:22897, 2023; method notes
section 2). Each input spike at ``t_j`` adds a ramp ``w_ij (t - t_j)`` to the potential, so
neuron ``i`` fires at

    t_i = (V_th + sum_{j in G_i} w_ij t_j) / S_i,   S_i = sum_{j in G_i} w_ij,   G_i = {j: t_j < t_i},

found exactly by scanning the sorted input times: with the first ``k`` inputs causal, the
potential on ``[t_(k), t_(k+1))`` is ``S_k t - A_k``; the first interval whose crossing
``(V_th + A_k) / S_k`` lies inside it (``S_k > 0``) gives ``t_i``; none (or a crossing after
``t_max``) means no spike. The gradient is the exact gradient of that expression (autograd
through the selected ``k``).

Regularizers (continuous forms, derivation in docs/ssr.md), summed over fired hidden neurons:

* M-SSR: ``S_i (t_max - t_i)^2 / 2``  (area of the no-reset potential above V_th up to t_max);
* F-SSR: ``S_i (t_max - t_i)``        (excess of the no-reset potential at t_max over V_th).

Input: pixel ``x`` (0..255) fires at ``t = 1 - x / 255``; black pixels never fire. Readout: the
earliest output spike (cross-entropy of ``-t_out / tau``). ``python -m bsnn.training.reference_ttfs
--out docs/ssr_reference`` trains 784-400-10 without SSR and with M-SSR and F-SSR, and writes a
JSON and a PNG (hidden firing and accuracy per strength, output spike-time distributions).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["ramp_layer", "RampNet", "encode_times", "ssr_continuous", "train_reference", "main"]

INF = float("inf")


def encode_times(images: np.ndarray) -> torch.Tensor:
    """Latency code in [0, 1): brighter earlier; black pixels never fire (inf)."""
    x = torch.as_tensor(np.array(images).reshape(len(images), -1), dtype=torch.float32)
    t = 1.0 - x / 255.0
    return torch.where(x > 0, t, torch.full_like(t, INF))


def ramp_layer(t_in: torch.Tensor, w: torch.Tensor, v_th: float, t_max: float):
    """Exact first firing times of a layer of ramp neurons.

    t_in: [B, n] input spike times (inf = no spike); w: [n, m]. Returns (t_out [B, m] with inf
    where the neuron does not fire before t_max, slope S [B, m] at firing (0 where not fired)).
    """
    B, n = t_in.shape
    ts, order = torch.sort(t_in, dim=1)
    n_eff = max(1, int(torch.isfinite(ts).sum(1).max()))   # inputs that spike sort first
    ts, order = ts[:, :n_eff], order[:, :n_eff]
    B, n = ts.shape
    fin = torch.isfinite(ts)
    ts0 = torch.where(fin, ts, torch.zeros_like(ts))
    ws = w[order] * fin.unsqueeze(-1)                        # [B, n, m], non-spiking inputs -> 0
    S = torch.cumsum(ws, dim=1)
    A = torch.cumsum(ws * ts0.unsqueeze(-1), dim=1)
    nxt = torch.cat([ts[:, 1:], torch.full((B, 1), INF)], dim=1).unsqueeze(-1)
    Spos = S > 0
    cand = (v_th + A) / torch.where(Spos, S, torch.ones_like(S))
    valid = Spos & fin.unsqueeze(-1) & (cand >= ts.unsqueeze(-1)) & (cand < nxt) & (cand <= t_max)
    anyv = valid.any(dim=1)                                  # [B, m]
    k = torch.argmax(valid.to(torch.int8), dim=1, keepdim=True)  # first valid interval
    t_sel = cand.gather(1, k).squeeze(1)
    s_sel = S.gather(1, k).squeeze(1)
    t_out = torch.where(anyv, t_sel, torch.full_like(t_sel, INF))
    return t_out, torch.where(anyv, s_sel, torch.zeros_like(s_sel))


class RampNet(torch.nn.Module):
    def __init__(self, sizes=(784, 400, 10), v_th=1.0, t_max=4.0, seed=0, w_mean=None, w_std=None):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.sizes, self.v_th, self.t_max = list(sizes), float(v_th), float(t_max)
        self.w = torch.nn.ParameterList()
        for a, b in zip(sizes[:-1], sizes[1:]):
            mean = (w_mean if w_mean is not None else 8.0 / a)
            std = (w_std if w_std is not None else 2.0 / a ** 0.5)
            self.w.append(torch.nn.Parameter(mean + std * torch.randn(a, b, generator=g)))

    def forward(self, t_in):
        times, slopes = [], []
        t = t_in
        for w in self.w:
            t, s = ramp_layer(t, w, self.v_th, self.t_max)
            times.append(t)
            slopes.append(s)
        return times, slopes


def ssr_continuous(times, slopes, t_max: float, method: str) -> torch.Tensor:
    """Per-sample M-SSR / F-SSR of the hidden layers, per hidden neuron, batch mean."""
    tot, n = 0.0, 0
    for t, s in zip(times[:-1], slopes[:-1]):
        fired = torch.isfinite(t)
        dt = torch.where(fired, t_max - t, torch.zeros_like(t))
        if method == "mssr":
            r = s * dt ** 2 / 2
        elif method == "fssr":
            r = s * dt
        else:
            raise ValueError(method)
        tot = tot + torch.where(fired, r, torch.zeros_like(r)).sum(1)
        n += t.shape[1]
    return (tot / n).mean()


def _loss(times, y, t_max, tau):
    t_out = times[-1]
    t_out = torch.where(torch.isfinite(t_out), t_out, torch.full_like(t_out, t_max + 1.0))
    return F.cross_entropy(-t_out / tau, y), t_out


@torch.no_grad()
def _evaluate(net, t_in, y, batch=500):
    correct, spikes, n, out_t = 0, 0.0, 0, []
    for s in range(0, len(y), batch):
        times, _ = net(t_in[s:s + batch])
        t_out = times[-1]
        pred = torch.argmin(torch.where(torch.isfinite(t_out), t_out, torch.full_like(t_out, INF)), 1)
        correct += int((pred == y[s:s + batch]).sum())
        spikes += float(sum(torch.isfinite(t).sum() for t in times[:-1]))
        out_t.append(t_out.min(1).values)
        n += len(pred)
    hidden = sum(net.sizes[1:-1])
    ot = torch.cat(out_t)
    fin = ot[torch.isfinite(ot)]
    edges = np.linspace(0.0, net.t_max, 41)
    hist, _ = np.histogram(fin.numpy(), bins=edges)
    return {"acc": correct / n, "spikes_per_neuron": spikes / n / hidden, "n": n,
            "output_time_mean": float(fin.mean()) if len(fin) else None,
            "output_time_hist": {"edges": edges.tolist(), "counts": hist.tolist()}}


def train_reference(method="none", gamma=0.0, epochs=2, train_limit=None, test_limit=None,
                    batch=64, lr=1e-3, t_max=4.0, tau=0.1, seed=0, root=None, init_state=None, log=print):
    from .data import load_dataset

    torch.manual_seed(seed)
    tr = load_dataset("mnist", "train", root).subset(train_limit)
    te = load_dataset("mnist", "test", root).subset(test_limit)
    xt, yt = encode_times(tr.images), torch.as_tensor(tr.labels)
    xe, ye = encode_times(te.images), torch.as_tensor(te.labels)
    net = RampNet(t_max=t_max, seed=seed)
    if init_state is not None:
        net.load_state_dict(init_state)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    hist = []
    for ep in range(epochs):
        t0 = time.time()
        perm = torch.randperm(len(yt), generator=g)
        ls, rs, nb = 0.0, 0.0, 0
        for s in range(0, len(perm), batch):
            idx = perm[s:s + batch]
            times, slopes = net(xt[idx])
            loss, _ = _loss(times, yt[idx], t_max, tau)
            reg = ssr_continuous(times, slopes, t_max, method) if method != "none" and gamma > 0 else torch.zeros(())
            opt.zero_grad()
            (loss + gamma * reg).backward()
            opt.step()
            ls += float(loss.detach())
            rs += float(reg.detach())
            nb += 1
        ev = _evaluate(net, xe, ye)
        rec = {"epoch": ep + 1, "loss": ls / nb, "ssr": rs / nb, "test_acc": ev["acc"],
               "spikes_per_neuron": ev["spikes_per_neuron"], "seconds": round(time.time() - t0, 1)}
        hist.append(rec)
        log(json.dumps({"method": method, "gamma": gamma, **rec}))
    return net, _evaluate(net, xe, ye), hist


def _plot(doc, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    cols = {"none": "k", "mssr": "C3", "fssr": "C0"}
    for m in ("none", "mssr", "fssr"):
        pts = sorted([p for p in doc["points"] if p["method"] == m], key=lambda p: p["gamma"])
        if not pts:
            continue
        if m != "none":  # curves start at the fine-tuned unregularized model
            pts = [p for p in doc["points"] if p["method"] == "none" and p.get("finetuned")] + pts
        ax[0].plot([p["spikes_per_neuron"] for p in pts], [100 * p["acc"] for p in pts], "o-" if m != "none" else "*",
                   color=cols[m], ms=9 if m == "none" else 5, label={"none": "no SSR", "mssr": "M-SSR", "fssr": "F-SSR"}[m])
        for p in pts:
            if m == "none" or p is pts[-1]:
                h = p["output_time_hist"]
                lab = ("no SSR, fine-tuned" if p.get("finetuned") else "no SSR") if m == "none" \
                    else f"{m} gamma={p['gamma']:g}"
                ax[1].stairs(h["counts"], h["edges"], color=cols[m], ls=":" if m == "none" and not p.get("finetuned") else "-",
                             label=lab)
    ax[0].set_xlabel("hidden spikes per neuron per inference")
    ax[0].set_ylabel("test accuracy (%)")
    ax[0].grid(alpha=0.3)
    ax[0].legend(fontsize=8)
    ax[1].set_xlabel("first output spike time")
    ax[1].set_title("output spike-time distribution")
    ax[1].legend(fontsize=8)
    fig.suptitle("continuous-time TTFS reference, 784-400-10, full-precision weights")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bsnn.training.reference_ttfs", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="prefix: <out>.json, <out>.png")
    p.add_argument("--epochs", type=int, default=2, help="epochs of the unregularized model")
    p.add_argument("--ft-epochs", type=int, default=1, help="fine-tuning epochs per regularized point")
    p.add_argument("--mssr-gammas", default="0.01,0.03,0.1")
    p.add_argument("--fssr-gammas", default="0.01,0.03,0.1")
    p.add_argument("--train-limit", type=int)
    p.add_argument("--test-limit", type=int)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--plot-only", action="store_true", help="redraw <out>.png from <out>.json")
    p.add_argument("--data-root")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.plot_only:
        _plot(json.loads(Path(f"{a.out}.json").read_text()), f"{a.out}.png")
        return 0
    doc = {"command": "python -m bsnn.training.reference_ttfs " + " ".join(argv or __import__("sys").argv[1:]),
           "points": []}
    kw = dict(train_limit=a.train_limit, test_limit=a.test_limit, root=a.data_root)
    net, ev, hist = train_reference("none", 0.0, a.epochs, **kw)
    base = {k: v.detach().clone() for k, v in net.state_dict().items()}
    doc["points"].append({"method": "none", "gamma": 0.0, **ev, "history": hist})
    # the unregularized model fine-tuned without SSR for the same epochs: the fair reference
    net0, ev0, hist0 = train_reference("none", 0.0, a.ft_epochs, init_state=base, lr=3e-4, **kw)
    doc["points"].append({"method": "none", "gamma": 0.0, "finetuned": True, **ev0, "history": hist0})
    for m, gs in (("mssr", a.mssr_gammas), ("fssr", a.fssr_gammas)):
        for gm in [float(x) for x in gs.split(",") if x]:
            _, e, h = train_reference(m, gm, a.ft_epochs, init_state=base, lr=3e-4, **kw)
            doc["points"].append({"method": m, "gamma": gm, **e, "history": h})
            Path(f"{a.out}.json").write_text(json.dumps(doc, indent=1))
            _plot(doc, f"{a.out}.png")
    Path(f"{a.out}.json").write_text(json.dumps(doc, indent=1))
    _plot(doc, f"{a.out}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
