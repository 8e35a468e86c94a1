"""Train a binary spiking network from a TOML config: ``bsnn train --config configs/<name>.toml``.

Also ``python -m bsnn.training.train --config ...`` and, for data parallelism,
``torchrun --nproc_per_node=2 -m bsnn.training.train --config ...`` (gloo on CPU, nccl on CUDA).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from . import data as data_mod
from .agmm import is_per_step
from .averaging import WeightAverage
from .checkpoint import load_checkpoint
from .diagnostics import FlipCounter, flip_rates, plot_history, weight_signs, write_history
from ..firmware_export.bundle import (MAX_INPUT_EVENTS, MAX_NEURONS, MAX_TIME_STEPS, MAX_WIDTH,
                                      MIN_WIDTH, READOUTS, RESETS)
from ..firmware_export.encoding import ENCODINGS
from ..firmware_export.encoding import PARAMETERS as ENCODING_PARAMETERS
from ..firmware_export.errors import BSNNError, ConfigError, report_error
from ..firmware_export.validate import (OneLineParser, check_checkpoint, check_table, choice,
                                        existing_dir, existing_file, int_list, integer,
                                        non_negative_int, number, number_list, optional, output_dir,
                                        positive_int, read_toml, text, text_list)
from .builders import build_data, build_model, encoding_spec, evaluate, run_eval_dataset
from .model import BSNN
from .widening import WidenError, widen_state
from .ssr import METHODS as SSR_METHODS, SSRConfig, ssr_penalty

__all__ = ["main", "add_train_arguments", "run_train", "load_config", "check_runnable", "build_model",
           "build_data", "encoding_spec", "evaluate", "run_eval_dataset", "DEFAULTS", "RULES",
           "EXTRA_KEYS", "check_config"]


DEFAULTS = {
    "name": "run",
    "data": {"dataset": "mnist", "root": None, "train_limit": None, "test_limit": None,
             "augment_shift": 0, "augment_flip": False},
    "encoding": {"kind": "rate", "time_steps": 4},
    "model": {
        "features": [],          # convolution and pooling before the dense layers, e.g. ["32c5", "pool2"]
        "input_polarity": "xnor",
        "hidden": [400, 400, 400],
        "num_classes": 10,
        "current": False, "leak_v": 0, "leak_c": 0, "reset": "subtract", "fire_once": False,
        "v_width": 16, "c_width": 16, "bias_width": 16,
        "readout": "potential",
        "max_input_events": None,
        "surrogate_width": 1.0,
        "weight_init": 0.1,
        "logit_scale": 0.1,
        "theta_init_factor": 1.0,
    },
    "agmm": {"enabled": False, "mode": "gradient", "alpha_init": 1.0, "alpha_min": None},
    # sparse-firing regularization (training/ssr.py, docs/ssr.md): loss = CE + gamma * R
    "ssr": {"method": "none", "gamma": 0.0, "v_hat": 1.0, "horizon": 0, "layers": "hidden", "local": True},
    "train": {
        "epochs": 10, "batch_size": 128, "optimizer": "adam", "lr": 1e-3, "lr_param": 1e-2,
        "lr_gate": 1e-3, "momentum": 0.9, "weight_decay": 0.0, "schedule": "cosine",
        "weight_clip": 1.0, "seed": 0, "threads": 1, "device": "auto",
        "out_dir": None, "eval_batch_size": 1000, "init_batch": 512, "stop_after": None,
        "init_from": None, "init_layers": "all",
        "average_from": None,    # stochastic weight averaging after this many epochs (averaging.py)
    },
    "export": {"dir": None, "golden_eval": True},
}


# ------------------------------------------------------------------ config
# What each key accepts beyond the type of its default (keys whose default is None need a rule).
RULES = {
    "name": text(),
    "data.dataset": choice(*data_mod.DATASETS),
    "data.root": optional(text()),
    "data.train_limit": optional(integer(1)),
    "data.test_limit": optional(integer(1)),
    "data.augment_shift": integer(0, 27),   # 28 pixels or more would shift every image out
    "encoding.kind": choice(*ENCODINGS),
    "encoding.time_steps": integer(1, MAX_TIME_STEPS),
    "model.features": text_list(),
    "model.input_polarity": choice("xnor", "channels"),
    "model.hidden": int_list(1, MAX_NEURONS),
    "model.num_classes": integer(1, MAX_NEURONS),
    "model.leak_v": integer(0, MAX_WIDTH - 1),
    "model.leak_c": integer(0, MAX_WIDTH - 1),
    "model.reset": choice(*RESETS),
    "model.v_width": integer(MIN_WIDTH, MAX_WIDTH),
    "model.c_width": integer(MIN_WIDTH, MAX_WIDTH),
    "model.bias_width": integer(MIN_WIDTH, MAX_WIDTH),
    "model.readout": choice(*READOUTS),
    "model.max_input_events": optional(integer(1, MAX_INPUT_EVENTS)),
    "model.surrogate_width": number(0, lo_open=True),
    "model.weight_init": number(0, lo_open=True),
    "model.logit_scale": number(0, lo_open=True),
    "model.theta_init_factor": number(0, lo_open=True),
    "agmm.mode": choice("gradient", "forward"),
    "agmm.alpha_init": number(),
    "agmm.alpha_min": optional(number()),
    "ssr.method": choice(*SSR_METHODS),
    "ssr.gamma": number(0),
    "ssr.v_hat": number(0),
    "ssr.horizon": integer(0),
    "ssr.layers": choice("hidden", "all"),
    "train.epochs": integer(1),
    "train.batch_size": integer(1),
    "train.optimizer": choice("adam", "sgd"),
    "train.lr": number(0, lo_open=True),
    "train.lr_param": number(0),
    "train.lr_gate": number(0),
    "train.momentum": number(0, 1),
    "train.weight_decay": number(0),
    "train.schedule": choice("cosine", "constant"),
    "train.weight_clip": number(0, lo_open=True),
    "train.seed": integer(0, 2 ** 63 - 1),
    "train.threads": integer(1),
    "train.device": choice("auto", "cpu", "cuda"),
    "train.out_dir": optional(text()),
    "train.eval_batch_size": integer(1),
    "train.init_batch": integer(1),
    "train.stop_after": optional(integer(1)),
    "train.init_from": optional(text()),
    "train.init_layers": choice("all", "matching", "widen"),
    "train.average_from": optional(integer(0)),
    "export.dir": optional(text()),
}

def _encoding_rule(param):
    """The config rule of an encoder parameter, from its entry in the encoding table (one source)."""
    if hasattr(param, "choices"):
        return choice(*param.choices)
    rule = integer(param.lo, param.hi)
    return optional(rule) if param.nullable else rule


# Keys without a default: encoder options (firmware_export/encoding.py) and the [sweep] table of
# sweep configs (bsnn sweep reads it; bsnn train accepts and ignores it).
EXTRA_KEYS = {
    **{f"encoding.{name}": _encoding_rule(param)
       for params in ENCODING_PARAMETERS.values() for name, param in params.items()},
    "encoding.max_input_events": integer(1, MAX_INPUT_EVENTS),
    "sweep.gammas": number_list(0),
    "sweep.fssr_gammas": number_list(0),
    "sweep.mem_gammas": number_list(0),
    "sweep.v_hats": number_list(0, lo_open=True),
}


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> dict:
    """Defaults, then the TOML file, then ``overrides``; the file and the result are checked
    against the schema (:data:`RULES`, :data:`EXTRA_KEYS` and the types of :data:`DEFAULTS`):
    any unknown key, wrong type or value out of range is a one-line :class:`ConfigError`."""
    cfg = copy.deepcopy(DEFAULTS)
    if path is not None:
        table = read_toml(path, "training config")
        check_config(table, str(path))
        cfg = _merge(cfg, table)
    if overrides:
        cfg = _merge(cfg, overrides)
    check_config(cfg, str(path) if path is not None else "config")
    return cfg


def check_config(cfg: dict, where: str = "config") -> None:
    """Raise :class:`ConfigError` (``<where>: <dotted.key>: <problem>``) unless ``cfg`` (a whole
    config or the part a TOML file sets) follows the schema."""
    check_table(cfg, DEFAULTS, RULES, where, EXTRA_KEYS)
    data, encoding = cfg.get("data", {}), cfg.get("encoding", {})
    dataset, kind = data.get("dataset"), encoding.get("kind")
    if dataset is not None and kind is not None and (kind == "events") != (dataset == "nmnist"):
        raise ConfigError(f"{where}: encoding.kind: {kind!r} does not fit data.dataset {dataset!r} "
                          "(events are for nmnist, the image encodings for image datasets)")


# ------------------------------------------------------------------ training
def _seed_all(seed: int):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _dist_info():
    ws = int(os.environ.get("WORLD_SIZE", "1"))
    return ws, int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))


def init_from_state(model, state: dict, where: str, layers: str) -> set:
    """Load ``state`` into ``model`` and return the indices of the layers it set.

    ``layers="all"`` needs every tensor to match (a different network is a one-line error);
    ``"matching"`` loads only the layers whose every tensor has the same name and shape, so a
    network that adds or widens layers can start from a trained one (the rest stay fresh). A
    layer's AGMM gate (``gates.<l>.alpha``, one entry per time step) does not decide whether it
    loads: across time steps the layer loads and its gate starts fresh."""
    own = model.state_dict()
    layer_of = _layer_of
    fits = {k for k, v in state.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
    if layers == "all":
        if fits != set(own) or set(state) != set(own):
            bad = sorted(set(own) ^ set(state) | {k for k in own if k in state and k not in fits})
            raise ConfigError(f"train.init_from: {where} is a different network ({bad[0]} differs); "
                              f"set train.init_layers = \"matching\" to load only the layers that match")
        model.load_state_dict(state)
        return {layer_of(k) for k in own} - {None}
    own_layers = {layer_of(k) for k in own} - {None}
    loaded = {i for i in own_layers
              if all(k in fits for k in own if layer_of(k) == i and not is_per_step(k))
              and any(k in fits for k in own if layer_of(k) == i)}
    model.load_state_dict({k: v for k, v in state.items()
                           if k in fits and layer_of(k) in loaded | {None}}, strict=False)
    return loaded


def widen_from(model, src: dict, where: str, on, off, generator) -> int:
    """``init_layers = "widen"``: ``model`` becomes the checkpoint ``src``'s network widened by
    duplication (``training/widening.py``); returns how many predictions of the batch ``on``,
    ``off`` differ between the two (0 unless a leak or a saturation breaks the scaling)."""
    if not isinstance(src.get("config"), dict):
        raise ConfigError(f"train.init_from: {where} has no config, so its network is unknown")
    try:
        narrow = build_model(_merge(DEFAULTS, src["config"]), model.input_size, model.max_input_events)
        narrow.load_state_dict(src["model"])
        widen_state(model, src["model"], generator)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ConfigError(f"train.init_from: {where} cannot be widened into this network "
                          f"({str(exc).splitlines()[0]})") from None
    except WidenError as exc:
        raise ConfigError(f"train.init_from: {where} cannot be widened into this network ({exc})") from None
    before = narrow(on, off, hardware=True).prediction
    after = model(on, off, hardware=True).prediction
    return int((before != after).sum())


def _layer_of(name: str) -> int | None:
    """The layer of a state-dict entry (``weights.<l>``, ``gates.<l>.alpha``, ...), or None."""
    parts = name.split(".")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def fresh_gates(model, state: dict, loaded: set) -> list:
    """The gates of the ``loaded`` layers that did not load (another number of time steps)."""
    own = model.state_dict()
    return sorted(k for k in own if is_per_step(k) and _layer_of(k) in loaded
                  and tuple(state.get(k, own[k]).shape) != tuple(own[k].shape))


def _make_optimizer(model: BSNN, tc: dict):
    groups = [
        {"params": [w for w in model.weights if w.requires_grad], "lr": tc["lr"],
         "weight_decay": tc["weight_decay"]},
        {"params": [p for p in list(model.bias) + list(model.theta) if p.requires_grad],
         "lr": tc["lr_param"], "weight_decay": 0.0},
        {"params": [model.log_logit_scale] + [g.alpha for g in model.gates], "lr": tc["lr_gate"],
         "weight_decay": 0.0},
    ]
    if tc["optimizer"] == "adam":
        return torch.optim.Adam(groups)
    if tc["optimizer"] == "sgd":
        return torch.optim.SGD(groups, momentum=tc["momentum"])
    raise ValueError(f"unknown optimizer {tc['optimizer']!r}")


def _schedule(opt, tc: dict, total_steps: int):
    if tc["schedule"] == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total_steps) / max(1, total_steps))))
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)


def train(cfg: dict, resume: str | bool | None = None, progress: bool = True) -> dict:
    """Train per ``cfg``; returns a summary dict (also written to ``<out_dir>/summary.json``)."""
    tc = cfg["train"]
    world, rank, local_rank = _dist_info()
    if tc.get("threads"):
        torch.set_num_threads(int(tc["threads"]))
    use_cuda = tc["device"] == "cuda" or (tc["device"] == "auto" and torch.cuda.is_available())
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    _seed_all(int(tc["seed"]))
    out_dir = Path(tc["out_dir"] or Path("runs") / cfg["name"])
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text(json.dumps(cfg, indent=1))

    train_data, test_data = build_data(cfg)
    model = build_model(cfg, train_data.ds.input_size,
                        max(train_data.max_events(), test_data.max_events()))
    gen = torch.Generator().manual_seed(int(tc["seed"]))
    init_idx = torch.randperm(len(train_data), generator=gen)[: tc["init_batch"]]
    on, off, _ = train_data.batch(init_idx, generator=gen)
    model.init_thresholds(on, off, cfg["model"]["theta_init_factor"])
    if tc.get("init_from"):  # fine-tuning: start from the model of another run's checkpoint
        src = load_checkpoint(tc["init_from"], required=("model",))   # weights_only: no code runs
        if tc["init_layers"] == "widen":
            changed = widen_from(model, src, tc["init_from"], on, off,
                                 torch.Generator().manual_seed(int(tc["seed"])))
            if rank == 0:
                print(f"init_from {tc['init_from']}: widened by duplication; {changed} of {len(init_idx)} "
                      "predictions of the init batch differ from the checkpoint's network", flush=True)
        else:
            loaded = init_from_state(model, src["model"], tc["init_from"], tc["init_layers"])
        if tc["init_layers"] == "matching":
            if rank == 0:
                gates = fresh_gates(model, src["model"], loaded)
                print(f"init_from {tc['init_from']}: layers {sorted(loaded)} loaded, the others fresh"
                      + (f"; their AGMM gates fresh ({len(gates)}: other time steps)" if gates else ""),
                      flush=True)
            # thresholds of fresh layers from the spikes of the loaded ones they now follow
            model.init_thresholds(on, off, cfg["model"]["theta_init_factor"], keep=loaded)
    model.to(device)
    opt = _make_optimizer(model, tc)
    steps_per_epoch = math.ceil(len(train_data) / (tc["batch_size"] * world))
    sched = _schedule(opt, tc, steps_per_epoch * tc["epochs"])
    history, start_epoch = [], 0
    prev_signs = weight_signs(model)
    averager = None   # WeightAverage from epoch tc["average_from"] on

    ckpt_path = out_dir / "last.pt"
    if resume:
        rp = Path(resume) if isinstance(resume, (str, Path)) and str(resume) not in ("True", "auto") else ckpt_path
        if rp.exists():
            ck = load_checkpoint(rp, map_location=device, required=("model", "optimizer", "scheduler",
                                                                  "epoch", "history", "signs", "rng"))
            # an averaging run's "model" is the average; training goes on from the trained state
            model.load_state_dict(ck.get("trained_model", ck["model"]))
            if "average" in ck:
                averager = WeightAverage(model)
                averager.load_state_dict(ck["average"])
            opt.load_state_dict(ck["optimizer"])
            sched.load_state_dict(ck["scheduler"])
            history, start_epoch = ck["history"], ck["epoch"]
            prev_signs = [s.to(device) for s in ck["signs"]]
            torch.set_rng_state(ck["rng"])
            if rank == 0:
                print(f"resumed from {rp} at epoch {start_epoch}", flush=True)

    ddp_model = model
    if world > 1:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[local_rank] if use_cuda else None)

    from tqdm import tqdm

    ssr = SSRConfig.from_dict(cfg.get("ssr"))
    best_acc = max([h["test_acc"] for h in history], default=-1.0)
    last_epoch = tc["epochs"]
    if tc.get("stop_after"):  # stop early (time-boxed runs; resume later with --resume)
        last_epoch = min(last_epoch, start_epoch + int(tc["stop_after"]))
    for epoch in range(start_epoch, last_epoch):
        t0 = time.time()
        g = torch.Generator().manual_seed(int(tc["seed"]) * 1000 + epoch)
        perm = torch.randperm(len(train_data), generator=g)
        per_rank = len(perm) // world if world > 1 else len(perm)
        perm = perm[rank * per_rank:(rank + 1) * per_rank] if world > 1 else perm
        flips = FlipCounter(model)
        loss_sum, correct, seen, reg_sum = 0.0, 0, 0, 0.0
        batches = range(0, per_rank, tc["batch_size"])
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{tc['epochs']}", disable=not progress or rank != 0,
                   leave=False, mininterval=5.0)
        for start in bar:
            idx = perm[start:start + tc["batch_size"]]
            on, off, y = train_data.batch(idx, generator=g)
            on, y = on.to(device), y.to(device)
            off = off.to(device) if off is not None else None
            res = ddp_model(on, off, trace=ssr.active) if ssr.active else ddp_model(on, off)
            loss = F.cross_entropy(res.logits, y)
            total = loss
            if ssr.active:
                reg = ssr_penalty(res.traces, ssr)
                total = loss + ssr.gamma * reg
                reg_sum += float(reg.detach()) * len(y)
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            sched.step()
            model.clip_latent(tc["weight_clip"])
            flips.update()
            if tc["average_from"] is not None and epoch >= tc["average_from"]:
                averager = averager or WeightAverage(model)
                averager.update(model)
            loss_sum += float(loss.detach()) * len(y)
            correct += int((res.prediction.to(device) == y).sum())
            seen += len(y)
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}")
        bar.close()
        stats = torch.tensor([loss_sum, correct, seen], dtype=torch.float64)
        if world > 1:
            dist.all_reduce(stats)
        if rank == 0:
            cur = weight_signs(model)
            fl_layers, fl = flip_rates(prev_signs, cur)
            prev_signs = cur
            it_layers, it = flips.rates()
            judged = averager.averaged(model) if averager else model   # what is evaluated and exported
            ev = evaluate(judged, test_data, tc["eval_batch_size"], device)
            rec = {
                "epoch": epoch + 1, "loss": float(stats[0] / stats[2]),
                "train_acc": float(stats[1] / stats[2]), "test_acc": ev["acc"], "test_loss": ev["loss"],
                "flip_rate": fl, "flip_rate_layers": fl_layers,
                "iter_flip_rate": it, "iter_flip_rate_layers": it_layers,
                "firing_rate_layers": ev["firing_rate_layers"],
                "spikes_per_neuron_hidden": ev["spikes_per_neuron_hidden"],
                "ssr_penalty": reg_sum / max(1, seen) if ssr.active else None,
                "lr": opt.param_groups[0]["lr"], "seconds": time.time() - t0,
                "alpha": [g_.alpha.detach().cpu().tolist() for g_ in model.gates],
                "averaged_steps": averager.steps if averager else 0,
            }
            history.append(rec)
            print(json.dumps({k: (round(v, 5) if isinstance(v, float) else v) for k, v in rec.items()
                              if k not in ("alpha", "iter_flip_rate_layers")}), flush=True)
            write_history(history, out_dir / "diagnostics.json")
            plot_history(history, out_dir / "diagnostics.png", cfg["name"])
            ck = {"model": judged.state_dict(), "optimizer": opt.state_dict(),
                  "scheduler": sched.state_dict(), "epoch": epoch + 1, "history": history,
                  "signs": [s.cpu() for s in cur], "rng": torch.get_rng_state(), "config": cfg,
                  "input_size": model.input_size, "max_input_events": model.max_input_events}
            if averager:
                ck.update(trained_model=model.state_dict(), average=averager.state_dict())
            torch.save(ck, out_dir / "last.tmp")
            os.replace(out_dir / "last.tmp", ckpt_path)
            if ev["acc"] > best_acc:
                best_acc = ev["acc"]
                torch.save(ck, out_dir / "best.tmp")
                os.replace(out_dir / "best.tmp", out_dir / "best.pt")
        else:
            prev_signs = weight_signs(model)
        if world > 1:
            dist.barrier()

    summary = {"name": cfg["name"], "epochs": tc["epochs"], "out_dir": str(out_dir),
               "final": history[-1] if history else None, "best_test_acc": best_acc,
               "world_size": world}
    if rank == 0:
        export_dir = cfg["export"].get("dir")
        if export_dir and history and history[-1]["epoch"] == tc["epochs"]:
            from .export import export_checkpoint

            summary["export"] = export_checkpoint(ckpt_path, Path(export_dir),
                                                  golden_eval=cfg["export"].get("golden_eval", True))
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return summary


# ------------------------------------------------------------------ CLI
def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--config", required=True, type=existing_file,
                        help="TOML config (configs/<name>.toml)")
    parser.add_argument("--resume", nargs="?", const="auto", default=None,
                        help="resume from a checkpoint (default: <out_dir>/last.pt)")
    parser.add_argument("--epochs", type=positive_int, help="override train.epochs")
    parser.add_argument("--out-dir", type=output_dir, help="override train.out_dir (checkpoints, diagnostics)")
    parser.add_argument("--data-root", type=existing_dir, help="datasets folder (default ../shared/datasets)")
    parser.add_argument("--threads", type=positive_int, help="torch CPU threads (default from config, 1)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="override train.device")
    parser.add_argument("--seed", type=non_negative_int, help="override train.seed")
    parser.add_argument("--stop-after", type=positive_int, help="train at most this many epochs in this run")
    parser.add_argument("--export-dir", type=output_dir, help="export the final checkpoint to this bundle folder")
    parser.add_argument("--no-export", action="store_true", help="do not export a bundle")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
    return parser


def run_train(args: argparse.Namespace) -> int:
    """``bsnn train``: train per ``args.config`` (and overrides); returns the exit status 0.

    Bad input (config, checkpoints, datasets) raises a one-line ``BSNNError`` before training."""
    over: dict = {"train": {}, "data": {}, "export": {}}
    for key, sect, name in [("epochs", "train", "epochs"), ("out_dir", "train", "out_dir"),
                            ("threads", "train", "threads"), ("device", "train", "device"),
                            ("seed", "train", "seed"), ("stop_after", "train", "stop_after"), ("data_root", "data", "root"),
                            ("export_dir", "export", "dir")]:
        val = getattr(args, key, None)
        if val is not None:
            over[sect][name] = str(val) if isinstance(val, Path) else val
    if getattr(args, "no_export", False):
        over["export"]["dir"] = None
    cfg = load_config(args.config, over)
    check_runnable(cfg, args.config)
    if args.resume is not None and args.resume != "auto":
        check_checkpoint(args.resume, "--resume")
    elif args.resume == "auto":
        last = Path(cfg["train"]["out_dir"] or Path("runs") / cfg["name"]) / "last.pt"
        if last.exists():
            check_checkpoint(last, "--resume")
    train(cfg, resume=args.resume, progress=not getattr(args, "no_progress", False))
    return 0


def check_runnable(cfg: dict, where="config") -> None:
    """What the schema cannot see: a CUDA device that is not there, a checkpoint to start from
    that is not one."""
    if cfg["train"]["device"] == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{where}: train.device: 'cuda', but no CUDA device is available")
    if cfg["train"]["init_from"]:
        check_checkpoint(cfg["train"]["init_from"], "train.init_from")


def main(argv=None) -> int:
    parser = add_train_arguments(OneLineParser(prog="bsnn train", description=__doc__))
    args = parser.parse_args(argv)
    try:
        return run_train(args)
    except (BSNNError, OSError) as exc:
        return report_error("bsnn train", exc)


if __name__ == "__main__":
    raise SystemExit(main())
