"""Writing frames as a video: H.264 mp4 (imageio-ffmpeg), an animated GIF (Pillow), or a folder of
numbered PNG frames. Every output appears atomically: frames go to a temporary file or folder beside
the target, which is renamed into place only when the last frame is written, so an interrupted
render never leaves a truncated video under the final name (and never damages an older one).

    with VideoWriter("out/seed0007.mp4", fps=30) as video:
        for frame in frames:          # uint8 [H, W, 3], all the same size
            video.append(frame)

mp4: libx264, yuv420p (plays everywhere), `quality` 1..10 as imageio-ffmpeg maps it to the constant
rate factor: crf = int((1 - quality / 10) * 51), so the default 8 gives crf 10 (EpiGRAF's setting),
10 gives crf 0. yuv420p needs an even width and height: odd sizes get one column/row repeated from
the edge. The moov atom goes first (+faststart) so browsers can stream the file.
gif: Pillow, looping forever; a GIF stores frame durations in 1/100 s, so the fps is rounded to it.
png: a folder NAME/ of frame000000.png, frame000001.png, ... (no fps is stored).

An existing video (file or frame folder) is not replaced unless `overwrite=True` (the rule of
`trigan render` and `trigan mesh`, core.output_paths.refuse_existing): checked when the writer opens,
before any frame is rendered.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, List, Optional, Union

import imageio_ffmpeg
import numpy as np
from PIL import Image

from trigan.core.atomic import atomic_path, current_umask
from trigan.core.errors import TriganError
from trigan.core.images import save_png
from trigan.core.output_paths import refuse_existing

PathLike = Union[str, os.PathLike]
FORMATS = ("mp4", "gif", "png")
FRAME_PATTERN = "frame{:06d}.png"


def output_path(stem: PathLike, fmt: str) -> Path:
    """Where a video of this format goes: STEM.mp4, STEM.gif, or the folder STEM/ for png frames."""
    stem = Path(stem)
    if fmt not in FORMATS:
        raise ValueError(f"unknown video format {fmt!r} (expected {', '.join(FORMATS)})")
    return stem if fmt == "png" else stem.with_name(stem.name + "." + fmt)


def pad_even(frame: np.ndarray) -> np.ndarray:
    """Repeat the last row / column when the height / width is odd (yuv420p halves both)."""
    h, w = frame.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return frame
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


class VideoWriter:
    """Append uint8 [H, W, 3] frames; `close()` (or leaving the `with` block normally) puts the video
    in place; an exception inside the block discards it."""

    def __init__(self, path: PathLike, fps: float = 30.0, format: Optional[str] = None, quality: float = 8,
                 overwrite: bool = False):
        self.path = Path(path)
        self.format = format or (self.path.suffix[1:].lower() if self.path.suffix else "png")
        if self.format not in FORMATS:
            raise ValueError(f"unknown video format {self.format!r} (expected {', '.join(FORMATS)})")
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        if not 1 <= quality <= 10:
            raise ValueError(f"quality must be between 1 and 10, got {quality}")
        refuse_existing([self.path], overwrite, hint="pass overwrite=True (--force) to replace it")
        self.fps, self.quality = float(fps), float(quality)
        self.size = None          # (height, width) of the frames as given
        self.count = 0
        self._ffmpeg = None
        self._gif: List = []
        self._atomic = None       # atomic_path context of the mp4 / gif file
        self._tmp: Optional[Path] = None
        self._closed = False
        if self.format == "png":
            if self.path.exists() and not self.path.is_dir():
                raise TriganError(f"{self.path}: exists and is not a folder (png frames go into a folder)")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent))
            os.chmod(self._tmp, 0o777 & ~current_umask())
        else:
            self._atomic = atomic_path(self.path, keep_suffix=True)  # ffmpeg picks the container by suffix
            self._tmp = self._atomic.__enter__()

    # ---------------------------------------------------------------------------------------------
    def append(self, frame: np.ndarray) -> None:
        if self._closed:
            raise RuntimeError("the video is already closed")
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frames must be uint8 [H, W, 3], got {frame.dtype} {frame.shape}")
        if self.size is None:
            self.size = frame.shape[:2]
        elif frame.shape[:2] != self.size:
            raise ValueError(f"frame {self.count} is {frame.shape[1]}x{frame.shape[0]}, "
                             f"the video is {self.size[1]}x{self.size[0]}")
        if self.format == "mp4":
            self._append_mp4(pad_even(frame))
        elif self.format == "gif":
            self._gif.append(Image.fromarray(np.ascontiguousarray(frame)))
        else:
            save_png(frame, self._tmp / FRAME_PATTERN.format(self.count))
        self.count += 1

    def _append_mp4(self, frame: np.ndarray) -> None:
        if self._ffmpeg is None:
            h, w = frame.shape[:2]
            self._ffmpeg = imageio_ffmpeg.write_frames(
                str(self._tmp), (w, h), pix_fmt_in="rgb24", pix_fmt_out="yuv420p", fps=self.fps,
                codec="libx264", quality=self.quality, macro_block_size=1, ffmpeg_log_level="error",
                output_params=["-movflags", "+faststart"])
            self._ffmpeg.send(None)  # start the generator (ffmpeg is running)
        self._ffmpeg.send(np.ascontiguousarray(frame))

    # ---------------------------------------------------------------------------------------------
    def close(self) -> Path:
        """Finish the file and rename it into place. Returns the final path."""
        if self._closed:
            return self.path
        if self.count == 0:
            self.abort()
            raise ValueError(f"{self.path}: no frames to write")
        try:
            if self.format == "mp4":
                self._ffmpeg.close()  # waits for ffmpeg to finish the file
                if self._tmp.stat().st_size == 0:
                    raise RuntimeError(f"ffmpeg wrote no video to {self._tmp}")
            elif self.format == "gif":
                duration = max(10, int(round(100.0 / self.fps)) * 10)  # milliseconds, a multiple of 10
                self._gif[0].save(self._tmp, format="GIF", save_all=True, append_images=self._gif[1:],
                                  duration=duration, loop=0, disposal=1)
                self._gif = []
        except BaseException:
            self.abort()
            raise
        self._closed = True
        if self.format == "png":
            self._commit_folder()
        else:
            self._atomic.__exit__(None, None, None)
        return self.path

    def _commit_folder(self) -> None:
        if self.path.is_dir():
            others = [p.name for p in self.path.iterdir() if not (p.name.startswith("frame") and p.suffix == ".png")]
            if others:
                shutil.rmtree(self._tmp, ignore_errors=True)
                raise TriganError(f"{self.path}: the folder holds other files than frames ({others[0]}); "
                                  "not replacing it")
            old = self.path.with_name(f".{self.path.name}.old.{os.getpid()}")
            os.replace(self.path, old)
            os.replace(self._tmp, self.path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self._tmp, self.path)

    def abort(self) -> None:
        """Discard everything written so far; the target is left as it was."""
        if self._closed:
            return
        self._closed = True
        if self._ffmpeg is not None:
            try:
                self._ffmpeg.close()
            except Exception:  # noqa: BLE001 - closing after a failure: the first error is the one worth reporting
                pass
        self._gif = []
        if self.format == "png":
            shutil.rmtree(self._tmp, ignore_errors=True)
        else:
            try:
                self._atomic.__exit__(RuntimeError, RuntimeError("aborted"), None)
            except RuntimeError:
                pass

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_video(frames: Iterable[np.ndarray], path: PathLike, fps: float = 30.0, format: Optional[str] = None,
                quality: float = 8, overwrite: bool = False) -> Path:
    """Write an iterable of uint8 [H, W, 3] frames; returns the final path."""
    with VideoWriter(path, fps, format, quality, overwrite=overwrite) as video:
        for frame in frames:
            video.append(frame)
    return video.path
