"""The errors a user can cause: one line each, reported by ``bsnn`` with exit code 2.

Every error that bad input (an argument, a file, a config, a dataset, an unfit model, a missing
tool or board) can raise derives from :class:`BSNNError`; ``bsnn.cli.main`` prints it as
``bsnn <command>: error: <message>`` and exits 2, for every subcommand. An ``OSError`` on a path
is reported the same way. Any other exception is a defect of the program and keeps its
traceback.

Each category also derives from the builtin it refines (``ValueError``, ``RuntimeError``, ...)
so that callers that catch the builtin keep working. The errors defined next to the code that
raises them derive from these categories: ``BundleError`` (firmware_export/bundle.py),
``EventError`` (golden.py), ``EvalError`` (bsnn/evaluate.py), ``NIRImportError``
(nir_interop/errors.py), ``DatasetMissingError``/``DatasetMismatchError`` (training/data.py),
``BuildMismatch`` (hdl/config.py), ``DeviceFitError`` (hdl/board.py), ``PLLError`` (hdl/pll.py),
``PatchError`` (hdl/weights_patch.py), ``SimulatorUnavailable`` (sim/toolchain.py),
``FormalUnavailable`` (sim/formal.py), ``ProtocolError`` (sim/board_host.py).
"""
from __future__ import annotations

__all__ = ["BSNNError", "InputError", "ConfigError", "DatasetError", "BuildError", "DeviceError",
           "one_line", "report_error"]


class BSNNError(Exception):
    """Bad input or an unmet precondition, never a defect: one line, exit code 2."""


class InputError(BSNNError, ValueError):
    """A command-line argument or an input file is unusable (the message names it)."""


class ConfigError(BSNNError, ValueError):
    """A TOML configuration (training, sweep, hardware) breaks its schema; the message is
    ``<file>: <dotted.key>: <problem>``."""


class DatasetError(BSNNError, ValueError):
    """A dataset file is missing, truncated, corrupt or inconsistent (the message names it)."""


class BuildError(BSNNError):
    """A model does not fit a build or a device, or a build directory is unusable."""


class DeviceError(BSNNError):
    """A simulator, toolchain or board is unavailable or does not answer as it should."""


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` as one line: its first line, else the exception's type name.

    An ``OSError`` names its path (``<path>: <reason>``): the text a user needs to fix it.
    """
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.filename}: {exc.strerror.lower()}"
        if exc.filename2 is not None:
            text += f" ({exc.filename2})"
        return text
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def report_error(prog: str, exc: BaseException) -> int:
    """Print ``<prog>: error: <one line>`` on stderr; returns the exit status 2."""
    import sys

    print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
    return 2
