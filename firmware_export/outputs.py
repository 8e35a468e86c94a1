"""How every command writes its outputs and reads the files users hand it (docs/guarantees.md).

Outputs:

* :func:`write_file` replaces one file atomically: a temporary file in the same folder is written
  and fsynced, renamed over the target, and the folder is fsynced. It never writes through a
  symbolic link and never replaces a folder or a special file.
* :func:`output_folder` is a transaction for an output folder (bundle, Verilog, ...): everything
  is built in a staging folder beside the target (``.<name>.bsnn-staging-<pid>-<rand>``), fsynced,
  and swapped in only when the whole build succeeded. On Linux the swap is one
  ``renameat2(RENAME_EXCHANGE)``, so there is no moment without a complete output at the target;
  elsewhere (or on a file system without it) the old folder is first renamed to
  ``.<name>.bsnn-old-<pid>-<rand>``, and a crash between the two renames is repaired by the next
  run, which renames it back. Leftovers of crashed runs (only names of exactly these patterns, for
  this target, from processes that are gone) are removed by the next run.
* An existing target is replaced only if it is a previous output of the same kind (recognised by
  its own manifest or by the ``.bsnn-output.json`` marker the transaction writes), holding nothing
  but files of that output; an empty folder is also accepted. Anything else is refused with a
  one-line :class:`OutputError`, and so is an output that is, contains, or lies inside one of the
  command's inputs.

Inputs: :func:`read_regular_file` opens without following a symbolic link, refuses FIFOs, devices
and folders (without blocking on a FIFO), and reads no more than a stated number of bytes.

Every system call that changes the disk goes through one of the small ``_primitive`` functions
below, so that tests can make any one of them fail (tests/test_outputs_safety.py).
"""
from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import secrets
import shutil
import stat
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

from .errors import InputError

__all__ = ["OutputError", "InputFileError", "write_file", "output_folder", "write_staged", "check_distinct",
           "check_file_output", "check_folder_output", "only_files",
           "read_regular_file", "previous_json", "previous_text", "clean_leftovers", "MARKER"]

MARKER = ".bsnn-output.json"
MARKER_FORMAT = "bsnn-output"
STAGING, OLD, TMP = "bsnn-staging", "bsnn-old", "bsnn-tmp"
_LEFTOVER = re.compile(rf"^\.(?P<name>.+)\.(?P<tag>{STAGING}|{OLD}|{TMP})-(?P<pid>\d+)-[0-9a-f]{{8}}$")
_MARKER_LIMIT = 1 << 20
_REPORT_LIMIT = 64 << 20


class OutputError(InputError):
    """An output cannot be written safely (one line, naming the path)."""


class InputFileError(InputError):
    """An input file is not a plain file of acceptable size. ``problem`` is the message without
    the path; ``size`` is set when the file is larger than allowed."""

    def __init__(self, path, problem: str, size: int | None = None):
        super().__init__(f"{path}: {problem}")
        self.problem = problem
        self.size = size


# ------------------------------------------------------------------ primitives (fault-injectable)
def _make_dir(path: Path) -> None:
    os.mkdir(path, 0o777)


def _open_new(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o666)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _fsync(fd: int) -> None:
    os.fsync(fd)


def _rename(src: Path, dst: Path) -> None:
    os.rename(src, dst)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically; False when the system or file system cannot."""
    return _renameat2(a, b, _RENAME_EXCHANGE)


def _rename_noreplace(src: Path, dst: Path) -> None:
    """Rename ``src`` to a ``dst`` that must not exist (an empty folder there is not replaced)."""
    if not _renameat2(src, dst, _RENAME_NOREPLACE):
        if os.path.lexists(dst):
            raise FileExistsError(errno.EEXIST, "exists", str(dst))
        os.rename(src, dst)


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path)


def _unlink(path: Path) -> None:
    os.unlink(path)


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_RENAME_NOREPLACE, _RENAME_EXCHANGE = 1, 2
_AT_FDCWD = -100


def _load_renameat2():
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2   # glibc >= 2.28
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_RENAMEAT2 = _load_renameat2()


def _renameat2(src: Path, dst: Path, flags: int) -> bool:
    if _RENAMEAT2 is None:
        return False
    if _RENAMEAT2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False   # kernel or file system without it: the caller falls back
    raise OSError(err, os.strerror(err), str(dst))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
    try:
        _fsync(fd)
    finally:
        os.close(fd)


def _after_commit(step: Callable[[], None], what: str) -> None:
    """A step after the new output is in place: its failure leaves a complete output (and at most
    a leftover the next run removes), so it is reported, not raised."""
    try:
        step()
    except OSError as exc:
        print(f"bsnn: warning: {what}: {exc}", file=sys.stderr)


# ------------------------------------------------------------------ inputs
def read_regular_file(path, max_bytes: int, *, dir_fd: int | None = None, shown=None) -> bytes:
    """The bytes of a regular file, read without following a symbolic link at ``path``'s last
    component and without blocking on a FIFO. Raises :class:`InputFileError` for a link, a
    folder, a FIFO, a device or a socket, and for more than ``max_bytes`` bytes;
    ``FileNotFoundError`` when it does not exist. ``shown`` is the path used in messages."""
    shown = path if shown is None else shown
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputFileError(shown, "is a symbolic link (refused: input files must be regular "
                                        "files)") from None
        if isinstance(exc, FileNotFoundError):
            raise
        raise InputFileError(shown, f"cannot be opened ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputFileError(shown, f"is {_describe(st.st_mode)}, not a regular file (refused)")
        if st.st_size > max_bytes:
            raise InputFileError(shown, f"{st.st_size} bytes, more than the {max_bytes} allowed",
                                 size=st.st_size)
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:   # grew while being read
                raise InputFileError(shown, f"more than the {max_bytes} bytes allowed", size=total)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _describe(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return name
    return "a special file"


def previous_json(path: Path) -> bool:
    """True when ``path`` holds a JSON document (a report an earlier run may have written)."""
    try:
        json.loads(read_regular_file(path, _REPORT_LIMIT))
        return True
    except (OSError, ValueError, RecursionError):
        return False


def previous_text(path: Path) -> bool:
    """True when ``path`` holds UTF-8 text (a Markdown report an earlier run may have written)."""
    try:
        data = read_regular_file(path, _REPORT_LIMIT)
        data.decode("utf-8")
        return b"\0" not in data
    except (OSError, ValueError):
        return False


# ------------------------------------------------------------------ checks
def _real(path) -> Path:
    return Path(os.path.realpath(os.path.abspath(path)))


def check_distinct(output, inputs: Iterable) -> None:
    """Refuse an output that is one of ``inputs``, contains one, or lies inside one."""
    out = _real(output)
    for inp in inputs:
        if inp is None:
            continue
        src = _real(inp)
        same = out == src
        if not same and os.path.exists(output) and os.path.exists(inp):
            try:
                same = os.path.samefile(output, inp)
            except OSError:
                pass
        if same:
            raise OutputError(f"{output}: is also an input of this command (refused: write the output elsewhere)")
        if src in out.parents:
            raise OutputError(f"{output}: lies inside the input {inp} (refused: write the output elsewhere)")
        if out in src.parents:
            raise OutputError(f"{output}: contains the input {inp} (refused: write the output elsewhere)")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:   # PermissionError: someone else's live process
        return True
    return True


_ACTIVE: set[str] = set()   # staging and temporary paths of transactions running in this process


def _leftover_name(name: str, tag: str) -> str:
    return f".{name}.{tag}-{os.getpid()}-{secrets.token_hex(4)}"


def clean_leftovers(target) -> list[Path]:
    """Remove what crashed runs left beside ``target``: staging folders, old folders, temporary
    files, named exactly as this module names them, of processes no longer running. An old
    folder is first put back when ``target`` itself is missing (a crash between the two renames
    of a swap without ``RENAME_EXCHANGE``). Returns the paths removed or restored."""
    target = Path(os.path.abspath(target))
    parent, name = target.parent, target.name
    done = []
    try:
        entries = sorted(os.listdir(parent))
    except OSError:
        return done
    for entry in entries:
        m = _LEFTOVER.match(entry)
        if not m or m["name"] != name:
            continue
        path = parent / entry
        pid = int(m["pid"])
        if str(path) in _ACTIVE or (pid != os.getpid() and _pid_alive(pid)):
            continue
        try:
            st = os.lstat(path)
            if m["tag"] == TMP:
                if stat.S_ISREG(st.st_mode):
                    _unlink(path)
                    done.append(path)
                continue
            if not stat.S_ISDIR(st.st_mode):
                continue
            if m["tag"] == OLD and not os.path.lexists(target):
                _rename_noreplace(path, target)
                _fsync_dir(parent)
            else:
                _remove_tree(path)
            done.append(path)
        except FileNotFoundError:
            continue
    return done


# ------------------------------------------------------------------ one file
def write_file(path, data: bytes, *, replaces: Callable[[Path], bool] | None = None,
               inputs: Iterable = ()) -> Path:
    """Write ``data`` to ``path`` atomically and durably (see the module docstring).

    An existing ``path`` must be a regular file (not a link, folder or special file) and, when
    ``replaces`` is given, ``replaces(path)`` must accept it as an earlier output (e.g.
    :func:`previous_json`). ``inputs`` are paths the output must not coincide with.
    """
    path = Path(os.path.abspath(path))
    check_distinct(path, inputs)
    _check_replaceable_file(path, replaces)
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise OutputError(f"{path}: its folder {parent} is not a folder") from None
    clean_leftovers(path)
    tmp = parent / _leftover_name(path.name, TMP)
    _ACTIVE.add(str(tmp))
    try:
        fd = _open_new(tmp)
        try:
            _write_all(fd, data)
            _fsync(fd)
        finally:
            os.close(fd)
        _check_replaceable_file(path, replaces)   # again: it may have changed meanwhile
        _rename(tmp, path)   # replaces a link planted meanwhile, never writes through it
    except BaseException:
        try:
            if os.path.lexists(tmp):
                _unlink(tmp)
        except OSError:
            pass   # the next run removes it
        raise
    finally:
        _ACTIVE.discard(str(tmp))
    _after_commit(lambda: _fsync_dir(parent), f"{parent}: could not be synced to disk")
    return path


def check_file_output(path, *, replaces: Callable[[Path], bool] | None = None, inputs: Iterable = ()) -> None:
    """The checks :func:`write_file` makes, for a command to run before its long work."""
    path = Path(os.path.abspath(path))
    check_distinct(path, inputs)
    _check_replaceable_file(path, replaces)


def _existing_output_stat(path: Path, what: str):
    """``lstat`` of an output path that may exist: None if it does not; a link is refused."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        raise OutputError(f"{path}: its folder is not a folder") from None
    if stat.S_ISLNK(st.st_mode):
        raise OutputError(f"{path}: is a symbolic link (refused: give the path of a real {what})")
    return st


def _check_replaceable_file(path: Path, replaces) -> None:
    st = _existing_output_stat(path, "file")
    if st is None:
        return
    if not stat.S_ISREG(st.st_mode):
        raise OutputError(f"{path}: exists and is {_describe(st.st_mode)} (refused: give a file path)")
    if replaces is not None and not replaces(path):
        raise OutputError(f"{path}: exists and is not an earlier output of this command "
                          "(refused: choose another path or remove it yourself)")


# ------------------------------------------------------------------ one folder
@contextmanager
def output_folder(target, kind: str, *, recognise: Callable[[Path], bool] | None = None,
                  marker: bool = True, inputs: Iterable = ()) -> Iterator[Path]:
    """A transaction that builds an output folder: ``with output_folder(out, "verilog") as d:``
    write everything into ``d``; on a normal exit the folder is fsynced and swapped in for
    ``out``, on an exception it is removed and ``out`` is untouched.

    ``kind`` names the output in the ``.bsnn-output.json`` marker (written when ``marker``);
    ``recognise(path)`` accepts earlier outputs of the kind that have no marker (bundles, which
    list their files in their own manifest). Raises :class:`OutputError` before building
    anything when ``out`` exists and is not such an output, or clashes with one of ``inputs``.
    """
    target = Path(os.path.abspath(target))
    inputs = [p for p in inputs if p is not None]
    if not target.name or target == target.parent:
        raise OutputError(f"{target}: not a folder that can be replaced")
    check_distinct(target, inputs)
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise OutputError(f"{target}: its folder {parent} is not a folder") from None
    clean_leftovers(target)
    _check_replaceable_folder(target, kind, recognise)
    staging = parent / _leftover_name(target.name, STAGING)
    _make_dir(staging)
    _ACTIVE.add(str(staging))
    committed = False
    try:
        yield staging
        if marker:
            names = sorted(os.listdir(staging))
            _write_new(staging / MARKER, (json.dumps({"format": MARKER_FORMAT, "kind": kind, "files": names},
                                                     indent=1) + "\n").encode())
        _fsync_tree(staging)
        _check_replaceable_folder(target, kind, recognise)   # again: a long build gives time to change it
        committed = _swap_in(staging, target)
    finally:
        _ACTIVE.discard(str(staging))
        if not committed:
            try:
                if os.path.lexists(staging):
                    _remove_tree(staging)
            except OSError:
                pass   # the next run removes it


def check_folder_output(target, kind: str, *, recognise: Callable[[Path], bool] | None = None,
                        inputs: Iterable = ()) -> None:
    """The checks :func:`output_folder` makes on entry, for a command to run before its long
    work (the transaction checks again)."""
    target = Path(os.path.abspath(target))
    check_distinct(target, [p for p in inputs if p is not None])
    _check_replaceable_folder(target, kind, recognise)


def _write_new(path: Path, data: bytes) -> None:
    fd = _open_new(path)
    try:
        _write_all(fd, data)
    finally:
        os.close(fd)


def write_staged(staging, name: str, data: bytes) -> Path:
    """Write (or rewrite) the file ``name`` in a staging folder of :func:`output_folder`. No
    temporary file is needed there: nobody sees the folder before the swap, which fsyncs it."""
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise OutputError(f"{name!r}: not a plain file name")
    path = Path(staging) / name
    fd = _open_staged(path)
    try:
        _write_all(fd, data)
    finally:
        os.close(fd)
    return path


def _open_staged(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _NOFOLLOW | _CLOEXEC, 0o666)


def _fsync_tree(root: Path) -> None:
    """fsync every file and folder of a freshly built staging folder; refuse links and special
    files in it (nothing this code writes creates them)."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
                raise OutputError(f"{os.path.join(dirpath, name)}: is {_describe(st.st_mode)} "
                                  "(refused: an output folder holds only files)")
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY | _NOFOLLOW | _CLOEXEC)
            try:
                _fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _swap_in(staging: Path, target: Path) -> bool:
    """Put ``staging`` at ``target``; True once ``target`` holds the new output."""
    parent = target.parent
    if not os.path.lexists(target):
        _rename_noreplace(staging, target)
        _after_commit(lambda: _fsync_dir(parent), f"{parent}: could not be synced to disk")
        return True
    if _exchange(staging, target):
        # ``staging`` now holds the previous output.
        _after_commit(lambda: _fsync_dir(parent), f"{parent}: could not be synced to disk")
        _after_commit(lambda: _remove_tree(staging), f"{staging}: previous output not removed (the next run removes it)")
        return True
    old = parent / _leftover_name(target.name, OLD)
    _rename(target, old)
    try:
        _rename(staging, target)
    except BaseException:
        try:
            _rename(old, target)   # put the previous output back
        except OSError:
            pass   # the next run puts it back (clean_leftovers)
        raise
    _after_commit(lambda: _fsync_dir(parent), f"{parent}: could not be synced to disk")
    _after_commit(lambda: _remove_tree(old), f"{old}: previous output not removed (the next run removes it)")
    return True


def _check_replaceable_folder(target: Path, kind: str, recognise) -> None:
    st = _existing_output_stat(target, "folder")
    if st is None:
        return
    if not stat.S_ISDIR(st.st_mode):
        raise OutputError(f"{target}: exists and is {'a file' if stat.S_ISREG(st.st_mode) else _describe(st.st_mode)} "
                          f"(refused: the {kind} output is a folder)")
    try:
        if not os.listdir(target):
            return
    except OSError as exc:
        raise OutputError(f"{target}: cannot be read ({exc.strerror})") from None
    if _has_marker(target, kind) or (recognise is not None and recognise(target)):
        return
    raise OutputError(f"{target}: exists and is not a {kind} output of bsnn (refused: nothing "
                      "there is deleted; choose another path or remove it yourself)")


def _has_marker(target: Path, kind: str) -> bool:
    """True when ``target`` has this module's marker for ``kind`` and nothing the marker does
    not list."""
    try:
        doc = json.loads(read_regular_file(target / MARKER, _MARKER_LIMIT))
    except (OSError, ValueError, RecursionError):
        return False
    if not isinstance(doc, dict) or doc.get("format") != MARKER_FORMAT or doc.get("kind") != kind:
        return False
    files = doc.get("files")
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return False
    return only_files(target, set(files) | {MARKER})


def only_files(folder: Path, allowed: set[str]) -> bool:
    """True when every entry of ``folder`` is one of ``allowed`` and is a file or a link (never a
    sub-folder: its contents would be someone's)."""
    try:
        with os.scandir(folder) as it:
            for entry in it:
                if entry.name not in allowed or entry.is_dir(follow_symlinks=False):
                    return False
    except OSError:
        return False
    return True
