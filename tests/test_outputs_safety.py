"""Outputs never destroy what they should not, inputs never run code or hang (docs/guarantees.md).

The fault-injection tests make each disk-changing step of ``bsnn.firmware_export.outputs`` fail in
turn, for every output kind: as an error (that one system call fails, the program goes on) and as
a crash (that step and everything after it never happen, cleanup included). After each, the
target must hold the previous output exactly (or, once the swap step has run, the new one), and
after the next run's start no staging, old or temporary entry may be left.
"""
from __future__ import annotations

import errno
import json
import re
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from bsnn.cli import main
from bsnn.firmware_export import outputs
from bsnn.firmware_export.bundle import (BundleError, bundle_digest, load_bundle, random_bundle,
                                         save_bundle)
from bsnn.firmware_export.outputs import OutputError, clean_leftovers, write_file

PRIMITIVES = ("_make_dir", "_open_new", "_open_staged", "_write_all", "_fsync", "_rename",
              "_exchange", "_rename_noreplace", "_remove_tree", "_unlink")


class Crash(BaseException):
    """The process dies at this step: neither it nor anything after it happens."""


class Faults:
    """Counts every primitive call; when armed, the k-th call fails (``error``) or it and every
    later call fail (``crash``)."""

    def __init__(self, monkeypatch, exchange: bool):
        self.calls: list[tuple[str, tuple]] = []
        self.fail_at = None
        self.mode = None
        for name in PRIMITIVES:
            real = getattr(outputs, name)
            if name == "_exchange" and not exchange:
                real = lambda a, b: False   # a system without RENAME_EXCHANGE: the two-rename swap
            monkeypatch.setattr(outputs, name, self._wrap(name, real))

    def _wrap(self, name, real):
        def step(*args):
            self.calls.append((name, args))
            n = len(self.calls)
            if self.fail_at is not None and (n == self.fail_at or (self.mode == "crash" and n > self.fail_at)):
                if self.mode == "crash":
                    raise Crash(f"crash at step {n} ({name})")
                raise OSError(errno.EIO, f"injected failure at step {n} ({name})")
            return real(*args)
        return step

    def run(self, op, k=None, mode=None) -> bool:
        """Run ``op`` with step ``k`` failing; True when it reported success (no exception, and
        exit status 0 from a command)."""
        self.calls, self.fail_at, self.mode = [], k, mode
        try:
            result = op()
            return not isinstance(result, int) or result == 0
        except (Crash, OSError):
            return False
        finally:
            self.fail_at = None


def snapshot(path: Path):
    if path.is_dir():
        return {p.name: p.read_bytes() for p in sorted(path.iterdir())}
    return path.read_bytes() if path.exists() else None


def leftovers(target: Path) -> list[str]:
    return [n for n in os.listdir(target.parent) if n.startswith(f".{target.name}.bsnn-")]


def commit_step(calls, target: Path, exchange: bool) -> int:
    """1-based index of the call that put the new output at ``target``."""
    for i, (name, args) in enumerate(calls, 1):
        if (name == "_exchange" and exchange) or (name in ("_rename", "_rename_noreplace") and Path(args[1]) == target
                                   and ".bsnn-old-" not in Path(args[0]).name):
            return i
    raise AssertionError(f"no swap step among {[c[0] for c in calls]}")


def check_every_step(monkeypatch, target: Path, write_old, write_new, exchange: bool):
    faults = Faults(monkeypatch, exchange)
    assert faults.run(write_old)
    old = snapshot(target)
    assert faults.run(write_new)
    new = snapshot(target)
    assert new != old and not leftovers(target)
    steps = list(faults.calls)
    commit = commit_step(steps, target, exchange)
    assert faults.run(write_old) and snapshot(target) == old
    for mode in ("error", "crash"):
        for k in range(1, len(steps) + 1):
            where = f"{mode} at step {k} ({steps[k - 1][0]}) of {len(steps)}"
            ok = faults.run(write_new, k, mode)
            expected = old if k <= commit else new
            if mode == "error":
                assert ok == (k > commit), where
                assert snapshot(target) == expected, where
                if k <= commit:   # the failed run cleaned up after itself
                    assert not leftovers(target), where
            clean_leftovers(target)   # what the next run does first
            assert snapshot(target) == expected, where
            assert not leftovers(target), where
            if expected is new:
                assert faults.run(write_old) and snapshot(target) == old
    return steps


# ------------------------------------------------------------------ fixtures
def small_bundle(seed, sizes=(6, 4, 3)):
    b = random_bundle(np.random.default_rng(seed), sizes=list(sizes))
    b.metadata = {"seed": seed}
    return b


_GENERATED: dict[str, dict[str, bytes]] = {}


@pytest.fixture
def fast_generate(monkeypatch):
    """``bsnn.hdl.generate.generate`` with its output remembered per bundle: the same files,
    written the same way, without converting the same design again for every injected fault."""
    import bsnn.hdl.generate as gen

    real = gen.generate

    def remembered(bundle, hw_config=None, out_dir="build/verilog"):
        key = bundle_digest(bundle)
        if key not in _GENERATED:
            with tempfile.TemporaryDirectory() as d:
                real(bundle, hw_config, d)
                _GENERATED[key] = {p.name: p.read_bytes() for p in Path(d).iterdir()}
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for name, data in _GENERATED[key].items():
            (out / name).write_bytes(data)
        return {name: str(out / name) for name in _GENERATED[key]}

    monkeypatch.setattr(gen, "generate", remembered)


def make_checkpoint(path: Path, seed: int, extra=None) -> Path:
    from bsnn.training.train import build_model, load_config

    torch.manual_seed(seed)
    cfg = load_config(None, {"model": {"hidden": [8], "num_classes": 3}, "encoding": {"time_steps": 2}})
    model = build_model(cfg, 16, 16)
    ck = {"model": model.state_dict(), "config": cfg, "input_size": 16, "max_input_events": 16,
          "history": [], "epoch": 0}
    ck.update(extra or {})
    torch.save(ck, path)
    return path


def user_folder(path: Path) -> dict:
    """A folder of someone's files (and a sub-folder), as a snapshot to compare against."""
    path.mkdir(parents=True)
    for i in range(5):
        (path / f"notes{i}.txt").write_text(f"mine {i}\n")
    (path / "sub").mkdir()
    (path / "sub" / "data.csv").write_text("1,2\n")
    return tree(path)


def tree(path: Path) -> dict:
    return {str(p.relative_to(path)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(path.rglob("*"))}


def cli(argv) -> int:
    """``bsnn`` in-process; an argument refused by the parser exits through SystemExit."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def one_line_error(capsys, rc) -> str:
    err = capsys.readouterr().err
    assert rc == 2, err
    assert re.match(r"bsnn( [a-z-]+)*: error: ", err) and err.count("\n") == 1, err
    assert "Traceback" not in err, err
    return err


# ------------------------------------------------------------------ fault injection, every output kind
@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two-renames"])
def test_bundle_survives_a_fault_at_every_step(tmp_path, monkeypatch, exchange):
    target = tmp_path / "m"
    a, b = small_bundle(1), small_bundle(2)
    steps = check_every_step(monkeypatch, target, lambda: save_bundle(a, target),
                             lambda: save_bundle(b, target), exchange)
    assert len(steps) > 20   # every file written, synced, then the swap
    assert load_bundle(target).same_as(a)


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two-renames"])
def test_json_report_survives_a_fault_at_every_step(tmp_path, monkeypatch, exchange):
    from bsnn.firmware_export.outputs import previous_json

    target = tmp_path / "r.json"
    check_every_step(monkeypatch, target,
                     lambda: write_file(target, b'{"run": 1}\n', replaces=previous_json),
                     lambda: write_file(target, b'{"run": 2}\n', replaces=previous_json), exchange)
    assert json.loads(target.read_text()) == {"run": 1}


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two-renames"])
def test_verilog_folder_survives_a_fault_at_every_step(tmp_path, monkeypatch, fast_generate, exchange):
    save_bundle(small_bundle(1), tmp_path / "a")
    save_bundle(small_bundle(2), tmp_path / "b")
    target = tmp_path / "v"
    steps = check_every_step(monkeypatch, target,
                             lambda: main(["verilog", "--model", str(tmp_path / "a"), "--out", str(target)]),
                             lambda: main(["verilog", "--model", str(tmp_path / "b"), "--out", str(target)]),
                             exchange)
    assert sum(name == "_write_all" for name, _ in steps) >= 7   # .bin twins, model.h, marker
    assert {"bsnn_core.v", "weights.bin", "model.h", outputs.MARKER} <= set(os.listdir(target))


def test_export_survives_a_fault_at_every_step(tmp_path, monkeypatch):
    from bsnn.training.export import export_checkpoint

    ck_a, ck_b = make_checkpoint(tmp_path / "a.pt", 1), make_checkpoint(tmp_path / "b.pt", 2)
    target = tmp_path / "bundle"

    def export(ck):
        export_checkpoint(ck, target, golden_eval=False)

    check_every_step(monkeypatch, target, lambda: export(ck_a), lambda: export(ck_b), exchange=True)


def test_nir_import_survives_a_fault_at_every_step(tmp_path, monkeypatch):
    pytest.importorskip("nir")
    from bsnn.nir_interop.export import write_nir

    save_bundle(small_bundle(1), tmp_path / "old")
    write_nir(small_bundle(2), tmp_path / "m.nir")
    target = tmp_path / "imported"

    def write_old():
        save_bundle(load_bundle(tmp_path / "old"), target)

    check_every_step(monkeypatch, target, write_old,
                     lambda: main(["nir", "import", str(tmp_path / "m.nir"), "--out", str(target)]),
                     exchange=True)


def test_random_model_survives_a_fault_at_every_step(tmp_path, monkeypatch):
    target = tmp_path / "rm"
    args = ["random-model", "--out", str(target), "--sizes", "6,4,3", "--time-steps", "2", "--seed"]
    check_every_step(monkeypatch, target, lambda: main(args + ["0"]), lambda: main(args + ["1"]),
                     exchange=True)


def test_a_crash_between_the_two_renames_is_repaired_by_the_next_run(tmp_path, monkeypatch):
    target = tmp_path / "m"
    save_bundle(small_bundle(1), target)
    faults = Faults(monkeypatch, exchange=False)
    faults.run(lambda: save_bundle(small_bundle(2), target))
    second = [i for i, (name, args) in enumerate(faults.calls, 1)
              if name == "_rename" and Path(args[1]) == target][0]
    assert not faults.run(lambda: save_bundle(small_bundle(3), target), second, "crash")
    assert not target.exists()   # the moment the two-rename swap cannot avoid
    save_bundle(small_bundle(4), tmp_path / "elsewhere")   # other outputs leave it alone
    assert not target.exists() and len(leftovers(target)) == 2
    save_bundle(small_bundle(5), target)    # the next run on it puts the old one back, then replaces it
    assert load_bundle(target).same_as(small_bundle(5)) and not leftovers(target)


def test_failing_export_evaluation_keeps_the_previous_bundle(tmp_path):
    from bsnn.training.data import DatasetMissingError
    from bsnn.training.export import export_checkpoint

    target = tmp_path / "bundle"
    export_checkpoint(make_checkpoint(tmp_path / "a.pt", 1), target, golden_eval=False)
    before = snapshot(target)
    (tmp_path / "no-data").mkdir()
    with pytest.raises(DatasetMissingError):
        export_checkpoint(make_checkpoint(tmp_path / "b.pt", 2), target, data_root=str(tmp_path / "no-data"))
    assert snapshot(target) == before and not leftovers(target)


def test_failing_verilog_run_keeps_the_previous_output(tmp_path, fast_generate, capsys):
    save_bundle(small_bundle(1), tmp_path / "a")
    assert main(["verilog", "--model", str(tmp_path / "a"), "--out", str(tmp_path / "v")]) == 0
    before = snapshot(tmp_path / "v")
    (tmp_path / "no-data").mkdir()   # exists (the parser checks that) but holds no dataset
    rc = main(["verilog", "--model", str(tmp_path / "a"), "--out", str(tmp_path / "v"), "--vectors", "2",
               "--data-root", str(tmp_path / "no-data")])
    assert rc == 2   # the dataset for the vectors is missing: after everything else was generated
    assert snapshot(tmp_path / "v") == before and not leftovers(tmp_path / "v")


# ------------------------------------------------------------------ what is refused
def test_outputs_refuse_a_folder_of_user_files(tmp_path, capsys, fast_generate):
    pytest.importorskip("nir")
    from bsnn.nir_interop.export import write_nir

    save_bundle(small_bundle(1), tmp_path / "model")
    write_nir(small_bundle(2), tmp_path / "m.nir")
    ck = make_checkpoint(tmp_path / "ck.pt", 1)
    mine = tmp_path / "mine"
    before = user_folder(mine)
    for argv in (["random-model", "--out", str(mine), "--sizes", "6,4,3"],
                 ["verilog", "--model", str(tmp_path / "model"), "--out", str(mine)],
                 ["export", "--checkpoint", str(ck), "--out", str(mine), "--no-eval"],
                 ["nir", "import", str(tmp_path / "m.nir"), "--out", str(mine)]):
        err = one_line_error(capsys, cli(argv))
        assert "is not a" in err and "refused" in err, (argv, err)
        assert tree(mine) == before and len(before) == 7
        assert not leftovers(mine)


def test_outputs_refuse_a_bundle_or_verilog_folder_with_extra_files(tmp_path, capsys, fast_generate):
    save_bundle(small_bundle(1), tmp_path / "m")
    (tmp_path / "m" / "README").write_text("my notes\n")
    with pytest.raises(OutputError, match="is not a bundle output"):
        save_bundle(small_bundle(2), tmp_path / "m")
    assert (tmp_path / "m" / "README").read_text() == "my notes\n"
    assert main(["verilog", "--model", str(tmp_path / "m"), "--out", str(tmp_path / "v")]) == 0
    assert main(["verilog", "--model", str(tmp_path / "m"), "--out", str(tmp_path / "v")]) == 0   # a rerun
    (tmp_path / "v" / outputs.MARKER).unlink()   # a folder written before the marker existed
    assert main(["verilog", "--model", str(tmp_path / "m"), "--out", str(tmp_path / "v")]) == 0
    (tmp_path / "v" / "top.v").write_text("// my own top level\n")
    assert "is not a verilog output" in one_line_error(
        capsys, main(["verilog", "--model", str(tmp_path / "m"), "--out", str(tmp_path / "v")]))
    assert (tmp_path / "v" / "top.v").exists()


def test_sweep_refuses_a_ship_folder_of_user_files_before_training(tmp_path):
    import argparse

    from bsnn.sweep import add_sweep_arguments, run_sweep

    (tmp_path / "c.toml").write_text('name = "s"\n[model]\nhidden = [8]\n')
    mine = tmp_path / "ship"
    before = user_folder(mine)
    (tmp_path / "no-data").mkdir()
    args = add_sweep_arguments(argparse.ArgumentParser()).parse_args(
        ["--config", str(tmp_path / "c.toml"), "--out", str(tmp_path / "sweep"), "--ship", str(mine),
         "--data-root", str(tmp_path / "no-data"), "--no-progress"])
    with pytest.raises(OutputError, match="is not a bundle output"):
        run_sweep(args)
    assert tree(mine) == before


def test_eval_refuses_its_report_path_before_evaluating(tmp_path, capsys):
    save_bundle(small_bundle(1), tmp_path / "m")
    (tmp_path / "notes.json").write_text("mine, not JSON\n")
    (tmp_path / "no-data").mkdir()
    err = one_line_error(capsys, cli(["eval", "--model", str(tmp_path / "m"), "--dataset", "mnist",
                                       "--data-root", str(tmp_path / "no-data"), "--json",
                                       str(tmp_path / "notes.json")]))
    assert "notes.json: exists and is not an earlier output" in err   # not the missing dataset
    assert (tmp_path / "notes.json").read_text() == "mine, not JSON\n"


def test_an_empty_folder_may_become_an_output(tmp_path):
    (tmp_path / "m").mkdir()
    save_bundle(small_bundle(1), tmp_path / "m")
    assert load_bundle(tmp_path / "m").same_as(small_bundle(1))


def test_export_onto_its_checkpoint_is_refused(tmp_path, capsys):
    ck = make_checkpoint(tmp_path / "ck.pt", 1)
    data = ck.read_bytes()
    err = one_line_error(capsys, cli(["export", "--checkpoint", str(ck), "--out", str(ck), "--no-eval"]))
    # refused as an input (outputs.check_distinct) or, by the argument parser, as not a folder
    assert "is also an input" in err or "exists and is not a folder" in err
    assert ck.read_bytes() == data and sorted(os.listdir(tmp_path)) == ["ck.pt"]


def test_nir_import_onto_its_input_is_refused(tmp_path, capsys):
    pytest.importorskip("nir")
    from bsnn.nir_interop.export import write_nir

    write_nir(small_bundle(2), tmp_path / "m.nir")
    data = (tmp_path / "m.nir").read_bytes()
    err = one_line_error(capsys, cli(["nir", "import", str(tmp_path / "m.nir"), "--out", str(tmp_path / "m.nir")]))
    assert ("is also an input" in err or "exists and is not a folder" in err) and \
        (tmp_path / "m.nir").read_bytes() == data


def test_outputs_inside_or_around_an_input_are_refused(tmp_path, capsys, fast_generate):
    from bsnn.evaluate import write_report

    save_bundle(small_bundle(1), tmp_path / "v" / "model")
    err = one_line_error(capsys, cli(["verilog", "--model", str(tmp_path / "v" / "model"),
                                       "--out", str(tmp_path / "v")]))
    assert "contains the input" in err
    err = one_line_error(capsys, cli(["verilog", "--model", str(tmp_path / "v" / "model"),
                                       "--out", str(tmp_path / "v" / "model" / "hdl")]))
    assert "lies inside the input" in err
    with pytest.raises(OutputError, match="lies inside the input"):
        write_report({"model": str(tmp_path / "v" / "model"), "accuracy": 1.0},
                     tmp_path / "v" / "model" / "manifest.json")
    load_bundle(tmp_path / "v" / "model")


def test_verilog_onto_an_existing_file_is_refused(tmp_path, capsys, fast_generate):
    save_bundle(small_bundle(1), tmp_path / "m")
    (tmp_path / "out").write_text("keep me\n")
    err = one_line_error(capsys, cli(["verilog", "--model", str(tmp_path / "m"), "--out", str(tmp_path / "out")]))
    assert ("exists and is a file" in err or "exists and is not a folder" in err) and (tmp_path / "out").read_text() == "keep me\n"


def test_file_outputs_refuse_links_folders_special_files_and_other_files(tmp_path):
    from bsnn.evaluate import write_report
    from bsnn.firmware_export.outputs import previous_json

    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (tmp_path / "link.json").symlink_to(victim)
    with pytest.raises(OutputError, match="is a symbolic link"):
        write_report({"accuracy": 1.0}, tmp_path / "link.json")
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(OutputError, match="is a folder"):
        write_report({"accuracy": 1.0}, tmp_path / "dir.json")
    os.mkfifo(tmp_path / "fifo.json")
    with pytest.raises(OutputError, match="is a FIFO"):
        write_file(tmp_path / "fifo.json", b"{}", replaces=previous_json)
    (tmp_path / "notes.json").write_text("not json, mine\n")
    with pytest.raises(OutputError, match="not an earlier output"):
        write_report({"accuracy": 1.0}, tmp_path / "notes.json")
    assert victim.read_text() == "precious\n" and (tmp_path / "notes.json").read_text() == "not json, mine\n"
    write_report({"accuracy": 0.5}, tmp_path / "r.json")
    write_report({"accuracy": 0.75}, tmp_path / "r.json")   # an earlier report is replaced
    assert json.loads((tmp_path / "r.json").read_text())["accuracy"] == 0.75


def test_bitstream_reports_replace_only_earlier_reports(tmp_path):
    from bsnn.hdl.bitstream import write_report

    shipped = Path(__file__).resolve().parent.parent / "docs" / "fpga" / "icebreaker-default.json"
    report = json.loads(shipped.read_text())
    (tmp_path / "b.md").write_bytes(b"\x00\x01binary, someone's\n")
    with pytest.raises(OutputError, match="not an earlier output"):
        write_report(report, tmp_path / "b.json", tmp_path / "b.md")
    assert (tmp_path / "b.md").read_bytes() == b"\x00\x01binary, someone's\n"
    assert not (tmp_path / "b.json").exists()   # neither is written when one is refused
    (tmp_path / "b.md").unlink()
    write_report(report, tmp_path / "b.json", tmp_path / "b.md")
    write_report(report, tmp_path / "b.json", tmp_path / "b.md")   # earlier reports are replaced
    assert json.loads((tmp_path / "b.json").read_text()) == report


def test_leftovers_are_cleaned_by_their_exact_names_only(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    keep = [".m.bsnn-staging-notes", ".m.bsnn-staging-{}-abcdefgh".format(dead), "m.bsnn-staging-{}-abcdef12".format(dead),
            ".other.bsnn-staging-{}-abcdef12".format(dead), f".m.bsnn-staging-{os.getppid()}-abcdef12"]
    gone = [f".m.bsnn-staging-{dead}-abcdef12", f".m.bsnn-old-{dead}-0123abcd", f".m.bsnn-tmp-{dead}-00000000"]
    for name in keep + gone[:2]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "f").write_text("x")
    (tmp_path / gone[2]).write_text("partial")
    (tmp_path / "m").mkdir()   # the old folder is not put back over an existing target
    save_bundle(small_bundle(1), tmp_path / "m")
    assert sorted(os.listdir(tmp_path)) == sorted(keep + ["m"])


# ------------------------------------------------------------------ no code from data
class _Payload:
    """Unpickling this makes a folder: proof that the pickle ran code."""

    def __init__(self, proof: Path):
        self.proof = proof

    def __reduce__(self):
        return (os.mkdir, (str(self.proof),))


@pytest.fixture
def poisoned(tmp_path):
    proof = tmp_path / "payload-ran"
    ck = make_checkpoint(tmp_path / "poisoned.pt", 1, {"history": [_Payload(proof)],
                                                        "optimizer": {}, "scheduler": {}, "signs": [], "rng": None})
    torch.load(ck, weights_only=False)   # the payload is live: an unsafe loader runs it
    assert proof.is_dir()
    proof.rmdir()
    return ck, proof


def test_export_refuses_a_checkpoint_with_code(poisoned, tmp_path, capsys):
    ck, proof = poisoned
    err = one_line_error(capsys, cli(["export", "--checkpoint", str(ck), "--out", str(tmp_path / "b"), "--no-eval"]))
    assert "could run code" in err
    assert not proof.exists() and not (tmp_path / "b").exists() and not leftovers(tmp_path / "b")


def _mnist_present():
    from bsnn.training.data import default_root
    return (default_root() / "mnist").exists()


@pytest.mark.skipif(not _mnist_present(), reason="MNIST not present")
@pytest.mark.parametrize("how", ["init_from", "resume"])
def test_training_refuses_a_checkpoint_with_code(poisoned, tmp_path, capsys, how):
    ck, proof = poisoned
    toml = tmp_path / "c.toml"
    toml.write_text(f"""name = "t"
[data]
train_limit = 64
test_limit = 32
[model]
hidden = [8]
[train]
epochs = 1
out_dir = "{tmp_path / 'run'}"
{f'init_from = "{ck}"' if how == "init_from" else ''}
""")
    argv = ["train", "--config", str(toml), "--no-progress", "--no-export"]
    err = one_line_error(capsys, cli(argv + (["--resume", str(ck)] if how == "resume" else [])))
    assert "could run code" in err and not proof.exists()


def test_garbage_empty_and_folder_checkpoints_are_refused(tmp_path, capsys):
    (tmp_path / "garbage.pt").write_bytes(b"definitely not a checkpoint")
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "folder.pt").mkdir()
    for name in ("garbage.pt", "empty.pt", "folder.pt"):
        err = one_line_error(capsys, cli(["export", "--checkpoint", str(tmp_path / name),
                                           "--out", str(tmp_path / "b"), "--no-eval"]))
        assert name in err and not (tmp_path / "b").exists()


def test_checkpoint_fifo_is_refused_without_hanging(tmp_path):
    os.mkfifo(tmp_path / "ck.pt")
    res = subprocess.run([sys.executable, "-m", "bsnn", "export", "--checkpoint", str(tmp_path / "ck.pt"),
                          "--out", str(tmp_path / "b"), "--no-eval"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and ("special file" in res.stderr or "not a regular file" in res.stderr) and res.stderr.count("\n") == 1, res.stderr


def test_shipped_checkpoint_loads_without_code():
    from bsnn.training.checkpoint import load_checkpoint

    ck = load_checkpoint(Path(__file__).resolve().parent.parent / "models" / "checkpoints" / "mnist.pt")
    assert ck["input_size"] == 784 and "model" in ck


# ------------------------------------------------------------------ reading bundles
def test_verilog_does_not_follow_a_link_planted_in_its_output(tmp_path):
    save_bundle(small_bundle(1), tmp_path / "m")
    assert main(["verilog", "--model", str(tmp_path / "m"), "--out", str(tmp_path / "v")]) == 0
    victim = tmp_path / "victim.h"
    victim.write_text("precious\n")
    for name in ("model.h", "weights.hex"):
        (tmp_path / "v" / name).unlink()
        (tmp_path / "v" / name).symlink_to(victim)
    assert main(["verilog", "--model", str(tmp_path / "m"), "--out", str(tmp_path / "v")]) == 0
    assert victim.read_text() == "precious\n"
    assert not (tmp_path / "v" / "model.h").is_symlink() and "#define" in (tmp_path / "v" / "model.h").read_text()


@pytest.mark.parametrize("plant, message", [
    ("fifo_weights", "is a FIFO"),
    ("fifo_manifest", "is a FIFO"),
    ("link_to_device", "is a symbolic link"),
    ("link_inside", "is a symbolic link"),
    ("folder", "is a folder"),
])
def test_bundle_special_files_are_refused_without_hanging(tmp_path, plant, message):
    bundle = tmp_path / "m"
    save_bundle(small_bundle(1), bundle)
    weights = bundle / "layer1_weights.bin"
    if plant == "fifo_weights":
        weights.unlink()
        os.mkfifo(weights)
    elif plant == "fifo_manifest":
        (bundle / "manifest.json").unlink()
        os.mkfifo(bundle / "manifest.json")
    elif plant == "link_to_device":
        weights.unlink()
        weights.symlink_to("/dev/zero")
    elif plant == "link_inside":
        weights.rename(bundle / "copy.bin")
        weights.symlink_to("copy.bin")
    else:
        weights.unlink()
        weights.mkdir()
    res = subprocess.run([sys.executable, "-m", "bsnn", "verilog", "--model", str(bundle), "--out",
                          str(tmp_path / "v")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, res.stderr
    assert message in res.stderr and ("layer1_weights.bin" in res.stderr or "manifest.json" in res.stderr)
    assert not (tmp_path / "v").exists()


def test_bundle_file_larger_than_its_layer_is_refused_before_reading_it(tmp_path):
    save_bundle(small_bundle(1), tmp_path / "m")
    with open(tmp_path / "m" / "layer1_bias.bin", "ab") as f:
        f.truncate(1 << 40)   # a sparse terabyte: reading it would exhaust memory
    with pytest.raises(BundleError, match=r"layer1_bias.bin: bytes: expected 16, found 1099511627776"):
        load_bundle(tmp_path / "m")
