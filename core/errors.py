"""User-facing errors.

Every mistake a user can make (a wrong path, a file that is not a checkpoint, a bad override) is
raised as a `TriganError` whose message is one line naming the file or value and saying what was
expected. The command line prints that line and exits non-zero; it never shows a traceback for
these. Programming errors stay ordinary exceptions so that they do show one.
"""


class TriganError(Exception):
    """A problem with the user's input, explained in one line."""


class CheckpointError(TriganError):
    """A file that cannot be used as a checkpoint (missing, foreign, corrupt, mismatched)."""

    @classmethod
    def unsupported(cls, path: str, what: str) -> "CheckpointError":
        """An upstream checkpoint that uses a feature trigan does not implement."""
        return cls(f"{path}: uses {what}, which trigan does not implement")


class ConfigError(TriganError):
    """A preset, YAML file or key=value override that does not describe a valid model."""


def one_line(exc: BaseException) -> str:
    """What a status line or a job list shows for an exception: a TriganError's own first line;
    anything else prefixed with its type, so that a bug reads as a bug."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    if isinstance(exc, TriganError) and text:
        return text
    name = type(exc).__name__
    return f"{name}: {text}" if text else name
