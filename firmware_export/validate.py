"""Checks at the edge, where input enters a command: argparse types for numbers and paths, TOML
tables against a schema, JSON files read without surprises.

* The argparse types raise ``argparse.ArgumentTypeError``: argparse reports them as one line
  (``bsnn <command>: error: argument --limit: must be an integer >= 1, got '0'``).
* :func:`check_table` checks a parsed TOML table against a schema of :class:`Rule` s; every
  problem is a :class:`~bsnn.firmware_export.errors.ConfigError` naming the file and the dotted
  key, and an unknown key comes with the closest valid key (``train.epoch: unknown key; did you
  mean train.epochs?``).
"""
from __future__ import annotations

import argparse
import difflib
import json
import math
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import ConfigError, InputError, one_line

__all__ = ["OneLineParser", "positive_int", "non_negative_int", "int_at_least", "int_in", "positive_float",
           "non_negative_float", "existing_file", "existing_dir", "output_file", "output_dir",
           "checkpoint_file", "check_checkpoint", "read_json", "read_toml", "Rule", "integer",
           "number", "choice", "text", "flag", "int_list", "text_list", "number_list", "optional", "rule_of",
           "check_table", "closest_key"]


# ---------------------------------------------------------------------------------------------
# argparse

class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line on stderr, exit status 2:
    ``bsnn eval: error: argument --limit: must be an integer >= 1, got '0' (bsnn eval --help)``.
    Its subparsers are of the same class (argparse's default)."""

    def error(self, message: str):
        first = message.strip().splitlines()[0] if message.strip() else "bad arguments"
        self.exit(2, f"{self.prog}: error: {first} ({self.prog} --help)\n")


def int_at_least(lo: int) -> Callable[[str], int]:
    """An argparse type: an integer ``>= lo``."""
    return int_in(lo, None)


def int_in(lo: int | None, hi: int | None) -> Callable[[str], int]:
    """An argparse type: an integer in ``[lo, hi]`` (either end may be open: ``None``)."""
    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"must be an integer {_range_text(lo, hi)}, got {text!r}")
        return value
    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def _float(text: str, lo: float, strict: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value) or value < lo or (strict and value == lo):
        raise argparse.ArgumentTypeError(
            f"must be a finite number {'>' if strict else '>='} {lo:g}, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a finite number ``> 0``."""
    return _float(text, 0.0, strict=True)


def non_negative_float(text: str) -> float:
    """An argparse type: a finite number ``>= 0``."""
    return _float(text, 0.0, strict=False)


def existing_file(text: str) -> Path:
    """An argparse type: a path that exists and is a regular file (not a folder, FIFO or device,
    which would read as empty or block)."""
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a folder, expected a file")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text}: not a regular file")
    return path


def existing_dir(text: str) -> Path:
    """An argparse type: a folder that exists."""
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: {'not a folder' if path.exists() else 'no such folder'}")
    return path


def output_file(text: str) -> Path:
    """An argparse type: a file to write; refused if a folder (or a non-folder parent) is there."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a folder, expected a file name to write")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise argparse.ArgumentTypeError(f"{text}: {parent} is not a folder")
    return path


def output_dir(text: str) -> Path:
    """An argparse type: a folder to write; refused if something other than a folder is there."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: exists and is not a folder")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise argparse.ArgumentTypeError(f"{text}: {parent} is not a folder")
    return path


def check_checkpoint(path, what: str = "checkpoint") -> Path:
    """``path`` if it can be a checkpoint written by ``torch.save`` (a zip archive, the format
    since PyTorch 1.6); raise :class:`InputError` for a missing, empty, truncated or foreign file
    or a folder, before torch reads it. ``what`` names the argument or key in the message."""
    path = Path(path)
    name = f"{what}: {path}" if what else str(path)
    if not path.exists():
        raise InputError(f"{name}: no such file")
    if not path.is_file():
        raise InputError(f"{name}: not a regular file")
    if path.stat().st_size == 0:
        raise InputError(f"{name}: empty file, not a checkpoint")
    if not zipfile.is_zipfile(path):
        raise InputError(f"{name}: not a PyTorch checkpoint (a torch.save zip archive), or truncated")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise InputError(f"{name}: unreadable zip archive ({one_line(exc)})") from None
    if not any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
        raise InputError(f"{name}: a zip archive, but not a PyTorch checkpoint (no data.pkl)")
    return path


def checkpoint_file(text: str) -> Path:
    """An argparse type: :func:`check_checkpoint` (argparse names the argument)."""
    try:
        return check_checkpoint(text, what="")
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _range_text(lo, hi) -> str:
    if lo is not None and hi is not None:
        return f"in [{lo}, {hi}]"
    if lo is not None:
        return f">= {lo}"
    if hi is not None:
        return f"<= {hi}"
    return ""


# ---------------------------------------------------------------------------------------------
# files

def read_json(path, what: str = "JSON file"):
    """Parse a JSON file; any defect (unreadable text, malformed, nested too deep for the parser)
    is an :class:`InputError` naming the file."""
    path = Path(path)
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: {what}: malformed ({one_line(exc)})") from None
    except RecursionError:
        raise InputError(f"{path}: {what}: nested too deeply") from None


def read_toml(path, what: str = "TOML file") -> dict:
    """Parse a TOML file; a malformed one is a :class:`ConfigError` naming the file."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {what}: malformed ({one_line(exc)})") from None
    except RecursionError:
        raise ConfigError(f"{path}: {what}: nested too deeply") from None


# ---------------------------------------------------------------------------------------------
# TOML tables against a schema

@dataclass(frozen=True)
class Rule:
    """What one key accepts: ``check(value)`` returns the problem (``"must be ..."``) or None."""
    check: Callable[[Any], str | None]
    description: str


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool))


def integer(lo: int | None = None, hi: int | None = None) -> Rule:
    desc = f"an integer {_range_text(lo, hi)}".strip()
    return Rule(lambda v: None if _is_int(v) and (lo is None or v >= lo) and (hi is None or v <= hi)
                else f"must be {desc}", desc)


def number(lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> Rule:
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {lo:g}")
    if hi is not None:
        parts.append(f"<= {hi:g}")
    desc = "a finite number" + (" " + " and ".join(parts) if parts else "")

    def check(v):
        if not _is_number(v) or not math.isfinite(v):
            return f"must be {desc}"
        if lo is not None and (v < lo or (lo_open and v == lo)):
            return f"must be {desc}"
        if hi is not None and v > hi:
            return f"must be {desc}"
        return None
    return Rule(check, desc)


def choice(*options: str) -> Rule:
    desc = "one of " + ", ".join(repr(o) for o in options)
    return Rule(lambda v: None if isinstance(v, str) and v in options else f"must be {desc}", desc)


def text(nonempty: bool = True) -> Rule:
    desc = "a non-empty string" if nonempty else "a string"
    return Rule(lambda v: None if isinstance(v, str) and (v or not nonempty) else f"must be {desc}",
                desc)


def flag() -> Rule:
    return Rule(lambda v: None if isinstance(v, bool) else "must be true or false", "true or false")


def int_list(lo: int | None = None, hi: int | None = None) -> Rule:
    item = integer(lo, hi)
    desc = f"a list of integers {_range_text(lo, hi)}".strip()
    return Rule(lambda v: None if isinstance(v, list) and not any(item.check(x) for x in v)
                else f"must be {desc}", desc)


def text_list() -> Rule:
    """A list of non-empty strings (possibly empty)."""
    return Rule(lambda v: None if isinstance(v, list) and all(isinstance(x, str) and x.strip() for x in v)
                else "must be a list of non-empty strings", "a list of strings")


def number_list(lo: float | None = None, lo_open: bool = False, min_len: int = 1) -> Rule:
    item = number(lo, lo_open=lo_open)
    bound = "" if lo is None else f" {'>' if lo_open else '>='} {lo:g}"
    desc = f"{'a non-empty' if min_len else 'a'} list of finite numbers{bound}"

    def check(v):
        if not isinstance(v, list) or len(v) < min_len or any(item.check(x) for x in v):
            return f"must be {desc}"
        return None
    return Rule(check, desc)


def optional(rule: Rule) -> Rule:
    """``rule``, or ``None`` (unset: TOML has no null, so only defaults and overrides are None)."""
    return Rule(lambda v: None if v is None else rule.check(v), rule.description + " (optional)")


def rule_of(default) -> Rule:
    """The rule a default value implies when no explicit rule is given: its type."""
    if isinstance(default, bool):
        return flag()
    if isinstance(default, int):
        return integer()
    if isinstance(default, float):
        return number()
    if isinstance(default, str):
        return text(nonempty=False)
    if isinstance(default, list):
        return int_list() if all(_is_int(x) for x in default) else number_list(min_len=0)
    raise TypeError(f"no rule for a default of type {type(default).__name__}; give one explicitly")


def _paths(defaults: dict, extra: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in defaults.items():
        out.append(prefix + key)
        if isinstance(value, dict):
            out += _paths(value, {}, prefix + key + ".")
    out += [p for p in extra if p.startswith(prefix) and p not in out]
    return out


def closest_key(key: str, candidates: list[str]) -> str | None:
    """The valid key a typo most likely meant: the closest key in the same table, else a key of
    the same name in another table, else a very close name in another table."""
    table = key.rpartition(".")[0]
    same_table = [c for c in candidates if c.rpartition(".")[0] == table]
    names = {c.rpartition(".")[2]: c for c in same_table}
    match = difflib.get_close_matches(key.rpartition(".")[2], list(names), n=1, cutoff=0.6)
    if match:
        return names[match[0]]
    leaf = key.rpartition(".")[2]
    elsewhere = [c for c in candidates if c.rpartition(".")[2] == leaf]
    if elsewhere:
        return elsewhere[0]
    leaves = {}
    for c in candidates:
        leaves.setdefault(c.rpartition(".")[2], c)
    match = difflib.get_close_matches(leaf, list(leaves), n=1, cutoff=0.8)
    return leaves[match[0]] if match else None


def check_table(table, defaults: dict, rules: dict[str, Rule], where: str,
                extra: dict[str, Rule] | None = None) -> None:
    """Check a parsed TOML ``table`` against a schema; raise :class:`ConfigError` at the first
    problem (``<where>: <dotted.key>: <problem>``).

    The keys and tables of ``defaults`` are the valid ones, ``extra`` adds keys (or whole tables,
    ``"sweep.gammas"``) that have no default. A key's rule is ``rules[dotted key]``, else
    ``extra[dotted key]``, else the type of its default (:func:`rule_of`).
    """
    extra = extra or {}
    candidates = _paths(defaults, extra)
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table of keys")
    _check(table, defaults, rules, extra, where, "", candidates)


def _check(table: dict, defaults: dict, rules, extra, where, prefix, candidates):
    for key, value in table.items():
        path = prefix + key
        known_table = isinstance(defaults.get(key), dict) or any(p.startswith(path + ".") for p in extra)
        if key not in defaults and path not in extra and not known_table:
            hint = closest_key(path, candidates)
            raise ConfigError(f"{where}: {path}: unknown key" + (f"; did you mean {hint}?" if hint else ""))
        if known_table:
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: {path}: must be a table ([{path}])")
            _check(value, defaults.get(key) or {}, rules, extra, where, path + ".", candidates)
            continue
        rule = rules.get(path) or extra.get(path) or rule_of(defaults[key])
        problem = rule.check(value)
        if problem:
            raise ConfigError(f"{where}: {path}: {problem}, got {_shown(value)}")


def _shown(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."
