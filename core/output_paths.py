"""Checking where a command will write before it does any work.

`prepare_output_dir` makes (or checks) an output folder and proves it writable by creating and
removing a small file in it, so a read-only disk, a missing permission or a path through a regular
file stops the command at once, in one line naming the flag and the path, instead of as an OSError
traceback after minutes of rendering. `refuse_existing` is the overwrite rule of `trigan render`,
`trigan mesh` and their exporters (core.exports, core.video): an output that already exists is
refused, naming the first one, unless the caller passes force (the commands' --force).

Commands of other engineers (dataset, train) may use the same two functions.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Optional, Union

from trigan.core.errors import TriganError

PathLike = Union[str, os.PathLike]


def _reason(exc: OSError) -> str:
    return exc.strerror or (os.strerror(exc.errno) if exc.errno else type(exc).__name__)


def _first_non_folder(path: Path) -> Optional[Path]:
    """The first existing ancestor-or-self of `path` that is not a folder (a file in the way)."""
    for part in [*reversed(path.parents), path]:
        if part.exists() and not part.is_dir():
            return part
    return None


def prepare_output_dir(path: PathLike, flag: str = "--out", create: bool = True,
                       log: Optional[Callable[[str], None]] = None) -> Path:
    """`path` as a folder that exists and takes new files. A missing folder is created (with its
    parents) when `create`, and `log` is told; otherwise it is refused. Raises TriganError naming
    `flag` and the path: a file in the way, no permission, a read-only or full disk."""
    folder = Path(os.path.expanduser(str(path)))
    blocker = _first_non_folder(folder)
    if blocker is not None:
        what = "the output folder" if blocker == folder else f"its parent {blocker}"
        raise TriganError(f"{flag} {folder}: {what} exists and is not a folder")
    if not folder.exists():
        if not create:
            raise TriganError(f"{flag} {folder}: no such folder (create it first)")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TriganError(f"{flag} {folder}: cannot create the folder ({_reason(exc)})") from None
        if log is not None:
            log(f"created folder {folder}")
    _probe_writable(folder, flag)
    return folder


def _probe_writable(folder: Path, flag: str) -> None:
    """Create and remove a tiny file in `folder`: the only test that also catches a read-only mount
    and works for root (os.access says yes to root on any local folder)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".trigan-write-test.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise TriganError(f"{flag} {folder}: cannot write there ({_reason(exc)})") from None
    try:
        os.write(fd, b"x")   # a full disk can still create an empty file
    except OSError as exc:
        raise TriganError(f"{flag} {folder}: cannot write there ({_reason(exc)})") from None
    finally:
        os.close(fd)
        os.unlink(probe)


def prepare_output_file(path: PathLike, flag: str = "output", create_folder: bool = True,
                        log: Optional[Callable[[str], None]] = None) -> Path:
    """`path`'s folder prepared as by prepare_output_dir; returns `path`."""
    path = Path(os.path.expanduser(str(path)))
    prepare_output_dir(path.parent, flag=flag, create=create_folder, log=log)
    return path


def refuse_existing(paths: Iterable[PathLike], force: bool = False, hint: str = "use --force to overwrite") -> None:
    """TriganError naming the first of `paths` that exists (file or folder), unless `force`."""
    if force:
        return
    for path in paths:
        if os.path.lexists(path):
            raise TriganError(f"{path}: already exists ({hint})")
