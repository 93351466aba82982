"""Paths that come from data (archive entries, dataset.json keys) must stay inside their folder.

A zip entry or a json key is only a *name*: whoever made the file chose it. Joined to a folder as
it is, `/etc/x` or `//host/x` replaces the folder, `../x` climbs out of it, and `C:\\x`, `C:x`
or `a\\..\\x` do the same on Windows (or once the data is unpacked there). Every place that turns
such a name into a file path, or trusts it to name a file, goes through this module:

* `unsafe_reason(name)` says why a name is not a plain relative path (None when it is), and
  `is_safe_member_name(name)` is its predicate, for readers that list and report;
* `member_path(dest_root, name, source)` is the path of `name` inside `dest_root`, resolved
  (symbolic links followed), or a one-line TriganError naming the entry and where it came from.

The policy is deliberately strict and the same on every platform: a name is `/`-separated
components, none empty, `.` or `..`, with no backslash, no drive letter and no control character.
Every tool that writes datasets produces such names, so a name outside it is a hostile or broken
file, refused with a clear message rather than silently dropped or "repaired".
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional, Union

from trigan.core.errors import TriganError

_DRIVE = re.compile(r"^[A-Za-z]:")          # C:\x, C:x (drive-relative on Windows), C:/x
_SHOWN_MAX = 80                             # characters of a name shown in a message


def shown(name: str) -> str:
    """A name as a message shows it: quoted, escapes for control characters, shortened."""
    text = repr(str(name))
    return text if len(text) <= _SHOWN_MAX else text[:_SHOWN_MAX - 4] + "...'"


def unsafe_reason(name: str) -> Optional[str]:
    """Why `name` is not a plain relative path inside a folder; None when it is one."""
    if not isinstance(name, str) or not name:
        return "is empty"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "contains a control character"
    if "\\" in name:
        return "contains a backslash (a path separator on Windows)"
    if name.startswith("/"):
        return "is an absolute path"
    if _DRIVE.match(name):
        return "starts with a drive letter"
    parts = name.split("/")
    if ".." in parts:
        return "climbs out of its folder with '..'"
    if "" in parts:
        return "has an empty component ('//' or a trailing '/')"
    if "." in parts:
        return "has a '.' component"
    return None


def is_safe_member_name(name: str) -> bool:
    """True for a plain relative path (see the module doc); for readers that list and report."""
    return unsafe_reason(name) is None


def refusal(name: str, source: Union[str, Path], reason: str) -> str:
    """The one-line message for an entry that is refused."""
    return f"{source}: entry {shown(name)} {reason}; every path in a dataset must be relative and stay inside it"


def member_path(dest_root: Union[str, Path], name: str, source: Union[str, Path]) -> Path:
    """The resolved path of the entry `name` inside `dest_root`.

    source: where the name came from (the archive or dataset.json), for the message. Raises a
    TriganError naming the entry and the source when the name is not a plain relative path, or
    when it resolves outside `dest_root` (through a symbolic link already inside it).
    """
    reason = unsafe_reason(name)
    if reason is not None:
        raise TriganError(refusal(name, source, reason))
    root = Path(dest_root).resolve()
    target = (root / name).resolve()
    if target == root or root not in target.parents:
        raise TriganError(refusal(name, source, f"resolves outside {dest_root}"))
    return target


__all__ = ["unsafe_reason", "is_safe_member_name", "member_path", "refusal", "shown"]
