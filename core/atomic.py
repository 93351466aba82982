"""Atomic file replacement: write beside the target, then rename over it.

A reader (the viewer polling a run, a resumed training) never sees a half-written file, and a
crash or kill -9 at any moment leaves the previous version intact; the only trace is a hidden
temporary `.NAME.<pid>@<host>.XXXX.tmp` beside it. The writer's pid and host in that name let
`sweep_stale_temporaries` remove what a dead writer left, and never what a live one is writing.

A write that fails because of the place (a full or read-only disk, no permission, a file where a
folder should be) raises `WriteError`: a TriganError (one line: `cannot write PATH: REASON`) that
is also an OSError, so callers that catch OSError keep working. That includes torch.save's cryptic
`RuntimeError: [enforce fail at inline_container.cc:...]` on a full disk.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional, Union

from trigan.core.errors import TriganError

PathLike = Union[str, os.PathLike]

# errnos that say the place cannot take the data, whichever file the OSError names.
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EIO}
# torch.save's C++ writer reports a failed write with these, without an errno.
_TORCH_WRITE_FAILURES = ("inline_container", "PytorchStreamWriter", "file write failed", "iostream error")
# Below this much free space a failed torch write is taken for a full disk.
_FULL_DISK_BYTES = 1 << 20
# A temporary of another host's writer (whose pid cannot be checked from here), untouched this long,
# is stale: every writer here writes continuously until it renames.
STALE_FOREIGN_S = 3600.0
_NAME_MAX = 255


class WriteError(TriganError, OSError):
    """A file that could not be written, for a reason of the place: `cannot write PATH: REASON`."""

    def __init__(self, path: PathLike, reason: str, code: Optional[int] = None):
        super().__init__(f"cannot write {path}: {reason}")
        self.errno, self.strerror, self.filename = code, reason, str(path)
        self.reason = reason

    def __str__(self) -> str:
        return str(self.args[0])   # not OSError's "[Errno N] ...: 'path'" form


def current_umask() -> int:
    """The process's umask (reading it means setting it; it is set straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _host_tag() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "", socket.gethostname())[:32]


def _reason(exc: OSError) -> str:
    text = exc.strerror or (os.strerror(exc.errno) if exc.errno else str(exc) or type(exc).__name__)
    return text[:1].lower() + text[1:]


def _full_disk(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < _FULL_DISK_BYTES
    except OSError:
        return False


def as_write_error(path: PathLike, exc: BaseException, tmp: Optional[Path] = None) -> Optional[WriteError]:
    """The WriteError that `exc`, raised while writing `path` (through `tmp`), stands for; None when
    it is not about writing there (an OSError naming another file for an unrelated reason, a bug)."""
    path = Path(path)
    if isinstance(exc, WriteError):
        return exc
    if isinstance(exc, OSError):
        ours = {str(path), str(path.parent)} | ({str(tmp)} if tmp is not None else set())
        named = exc.filename is not None and str(exc.filename) not in ours
        if named and exc.errno not in STORAGE_ERRNOS:
            return None
        blocker = _file_in_the_way(path) if exc.errno in (errno.EEXIST, errno.ENOTDIR) else None
        if blocker is not None:
            return WriteError(path, f"{blocker} is a file, not a folder", errno.ENOTDIR)
        reason = _reason(exc)
        if named:
            reason = f"{exc.filename}: {reason}"
        return WriteError(path, reason, exc.errno)
    if isinstance(exc, RuntimeError) and any(s in str(exc) for s in _TORCH_WRITE_FAILURES):
        if _full_disk(path.parent):
            return WriteError(path, os.strerror(errno.ENOSPC).lower(), errno.ENOSPC)
        return WriteError(path, f"the write failed ({str(exc).strip().splitlines()[0][:160]})", errno.EIO)
    return None


@contextmanager
def writing(path: PathLike, tmp: Optional[Path] = None) -> Iterator[None]:
    """Around a write of `path`: a failure of the place becomes WriteError naming `path`."""
    try:
        yield
    except (OSError, RuntimeError) as exc:
        error = as_write_error(path, exc, tmp)
        if error is None or error is exc:
            raise
        raise error from exc


def _file_in_the_way(path: Path) -> Optional[Path]:
    """The first of `path`'s folders (from the top) that is something other than a folder."""
    for folder in [*reversed(path.parent.parents), path.parent]:
        if folder.exists() and not folder.is_dir():
            return folder
    return None


def _check_folder(path: Path) -> None:
    """A file where the target's folder (or one above it) should be: say so, not 'file exists'."""
    blocker = _file_in_the_way(path)
    if blocker is not None:
        raise WriteError(path, f"{blocker} is a file, not a folder", errno.ENOTDIR)


def _temporary(path: Path, suffix: str) -> Path:
    """A new empty hidden file beside `path`, named after the writer (pid, host) when that fits."""
    tag = f"{os.getpid()}@{_host_tag()}."
    prefix = f".{path.name}.{tag}"
    if len(prefix) + 8 + len(suffix) > _NAME_MAX:   # an unusually long name: the tag yields
        prefix = f".{path.name}."
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
    os.close(fd)
    return Path(name)


@contextmanager
def atomic_path(path: PathLike, durable: bool = False, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path`; when the block succeeds, rename it over `path`.

    durable: fsync the file before the rename and the folder after it (checkpoints).
    keep_suffix: end the temporary name with the target's suffix (tools that pick a format by it).
    On an exception the temporary file is removed and the target is untouched; a failure of the
    place (full, read-only, no permission), in the block or around it, is raised as WriteError.
    """
    path = Path(path)
    suffix = ".tmp" + (path.suffix if keep_suffix else "")
    with writing(path):
        _check_folder(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _temporary(path, suffix)
    try:
        with writing(path, tmp):
            os.chmod(tmp, 0o666 & ~current_umask())   # mkstemp's 0600 would hide checkpoints from a shared group
            yield tmp
            if durable:
                fd = os.open(tmp, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            os.replace(tmp, path)
            if durable:
                fsync_dir(path.parent)
    finally:
        try:
            if tmp.exists():
                tmp.unlink()
        except OSError:
            pass   # the error already on its way says why; a leftover is swept later


def fsync_dir(folder: PathLike) -> None:
    """Make a rename in `folder` durable (where the platform can open folders)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: PathLike, data: bytes, durable: bool = False) -> Path:
    with atomic_path(path, durable=durable) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: PathLike, text: str, durable: bool = False) -> Path:
    with atomic_path(path, durable=durable) as tmp:
        tmp.write_text(text)
    return Path(path)


def append_text(path: PathLike, text: str) -> None:
    """Append to a log-like file (not atomic: a reader may see the last line half-written); a
    failure of the place is a WriteError naming `path`."""
    with writing(path), open(path, "a") as f:
        f.write(text)
        f.flush()


# -------------------------------------------------------------------------------------------------
# Leftovers of writers that died mid-write

# .NAME.<pid>@<host>.XXXXXXXX.tmp[.ext] (mkstemp's random part has no dots); the form without the
# writer, .NAME.XXXXXXXX.tmp[.ext], is what earlier versions (and overlong names) leave.
_TEMPORARY = re.compile(r"^\.(?P<name>.+?)\.(?:(?P<pid>\d+)@(?P<host>[A-Za-z0-9-]*)\.)?"
                        r"(?P<random>[a-z0-9_]{8})\.tmp(?:\.[^.]+)?$")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True   # someone else's process, alive (or a platform that cannot tell: assume so)
    return True


def is_stale_temporary(path: PathLike, now: Optional[float] = None) -> bool:
    """Whether `path` is an atomic-write temporary whose writer is gone: one of this host whose
    process has exited, or one untouched for STALE_FOREIGN_S (another host's, or an unnamed writer's)."""
    path = Path(path)
    match = _TEMPORARY.match(path.name)
    if match is None or not path.is_file():
        return False
    if match.group("pid") is not None and match.group("host") == _host_tag():
        return not _pid_alive(int(match.group("pid")))
    try:
        age = (time.time() if now is None else now) - path.stat().st_mtime
    except OSError:
        return False
    return age > STALE_FOREIGN_S


def sweep_stale_temporaries(folder: PathLike) -> List[Path]:
    """Remove the stale atomic-write temporaries in `folder` (not below it); returns them."""
    folder = Path(folder)
    removed = []
    try:
        candidates = [p for p in folder.iterdir() if p.name.startswith(".") and ".tmp" in p.name]
    except OSError:
        return removed
    for path in candidates:
        if is_stale_temporary(path):
            try:
                path.unlink()
                removed.append(path)
            except FileNotFoundError:
                pass   # its writer finished (or another sweeper was first)
    return removed
