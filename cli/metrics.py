"""`trigan metrics`: FID / KID against a dataset and the Non-Flatness Score, for a checkpoint or a run."""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import re
import sys
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from tqdm import tqdm

from trigan.cli import flags
from trigan.core.errors import TriganError
from trigan.core.limits import MAX_SEED

HELP = "score a checkpoint or every snapshot of a run: FID, KID (Inception features), NFS (flatness of depth)"
EPILOG = """\
examples:
  trigan metrics runs/00000-demo-shapes --data shapes.zip --inception inception-2015-12-05.pt
  trigan metrics model.ckpt --data ffhq512.zip --metrics fid50k_full,kid50k_full --inception inception-2015-12-05.pt
  trigan metrics runs/00000-demo-shapes --all-snapshots --data shapes.zip --metrics fid2k,nfs --inception inc.pt
  trigan metrics runs/00000-demo-shapes --latest --metrics nfs          NFS needs no dataset or Inception
  trigan metrics --data shapes.zip --metrics nfs_data                   NFS of a dataset's own depth maps
  trigan metrics --depth-maps depth_maps/                               NFS of a folder of depth PNGs
  trigan metrics --depth-maps shapes.zip                                ... or of the depth PNGs in a zip
  trigan metrics model.ckpt --data shapes.zip --metrics fid2k --inception inc.pt --json

metrics (comma-separated; lower is better for FID and KID):
  fid2k_full (fid2k)   2048 fakes vs all reals: EpiGRAF's training metric
  fid50k_full (fid)    50000 fakes vs all reals: the number papers report
  fid50k, fid5k_5k     legacy StyleGAN (first 50000 reals), GRAM's protocol
  kid2k_full (kid2k), kid50k_full (kid), kid50k   KID, reported raw (papers often show x1000)
  nfs (nfs256), nfsN   Non-Flatness Score of N fakes (3DGP): exp(entropy) of a 64-bin depth histogram,
                       1 = flat, 64 = depth spread over the whole ray; rendered with the low-density cut
  nfs_data             the same score of the --data dataset's depth maps (or of --depth-maps)

FID/KID need NVIDIA's TorchScript Inception (inception-2015-12-05.pt; see docs/metrics.md); nothing is
downloaded. Dataset statistics are cached in $XDG_CACHE_HOME/trigan/metrics (~/.cache/trigan/metrics).
A run directory means its best.ckpt (else latest.ckpt); --all-snapshots scores every *.ckpt in it and
reports the best. Results for a run are appended to RUN/metrics.jsonl with the snapshot's name.
"""

# Names the command accepts on top of core.metrics' registry and its aliases.
CLI_ALIASES = {"fid": "fid50k_full", "kid": "kid50k_full"}
NFS_DEFAULT_NUM = 256
NFS_MAX_NUM = 100_000       # fakes for one NFS: twice the largest FID protocol (50k)
_NFS_NAME = re.compile(r"^nfs(\d{0,9})$")   # 9 digits: int() of a long string is slow


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("metrics", help=HELP, description=HELP[0].upper() + HELP[1:] + ".", epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?", metavar="CKPT|RUN_DIR",
                   help="a checkpoint (.ckpt), an EpiGRAF .pkl or a training run directory")
    p.add_argument("--data", metavar="DATA", help="dataset zip or folder: the reals for FID/KID, labels and poses "
                   "for the fakes, depth maps for nfs_data")
    p.add_argument("--metrics", default="fid50k_full", metavar="LIST",
                   help="comma-separated metric names (default: fid50k_full; see below)")
    p.add_argument("--inception", metavar="PATH", help="the TorchScript Inception file inception-2015-12-05.pt")
    p.add_argument("--cache", metavar="DIR", help="where dataset statistics are cached "
                   "(default: $XDG_CACHE_HOME/trigan/metrics, else ~/.cache/trigan/metrics)")
    p.add_argument("--mirror", action="store_true",
                   help="x-flip the dataset (doubles it; off by default, as upstream's calc_metrics)")
    snaps = p.add_mutually_exclusive_group()
    snaps.add_argument("--all-snapshots", action="store_true",
                       help="for a run directory: score every *.ckpt in it and report the best")
    snaps.add_argument("--latest", action="store_true", help="for a run directory: score latest.ckpt, not best.ckpt")
    p.add_argument("--depth-maps", "--depth-folder", dest="depth_maps", metavar="DIR|ZIP",
                   help="compute nfs_data from the depth maps (8/16-bit PNGs: the *_depth.png files, else "
                   "every PNG) in a folder or zip instead of a dataset")
    p.add_argument("--seed", type=flags.int_flag("--seed", 0, MAX_SEED), default=0,
                   help="seed of the fakes' latents and conditioning (default 0)")
    p.add_argument("--batch", type=flags.batch, default=16, metavar="N", help="fakes rendered at once (default 16)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1 ...")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    p.add_argument("--no-log", action="store_true", help="do not append the results to RUN_DIR/metrics.jsonl")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=run)


# ---------------------------------------------------------------------------------------------------
# Names, paths, cache

def parse_names(text: str) -> Tuple[List[str], Dict[str, int], bool]:
    """'fid2k,kid,nfs,nfs_data' -> (registered FID/KID names, {nfs key: number of fakes}, nfs_data asked)."""
    from trigan.core.metrics import MetricError, parse_metric_names  # noqa: PLC0415 (loads torch: see cli/main.py)
    feature_names: List[str] = []
    nfs: Dict[str, int] = {}
    data_nfs = False
    for raw in str(text).split(","):
        name = raw.strip().lower()
        if not name:
            continue
        if name == "nfs_data":
            data_nfs = True
            continue
        match = _NFS_NAME.match(name)
        if match:
            num = int(match.group(1)) if match.group(1) else NFS_DEFAULT_NUM
            if not 1 <= num <= NFS_MAX_NUM:
                raise MetricError(f"metric {raw.strip()[:40]!r}: nfsN needs N in 1..{NFS_MAX_NUM} fakes")
            nfs[f"nfs{num}"] = num
            continue
        try:
            for canonical in parse_metric_names([CLI_ALIASES.get(name, name)]):
                if canonical not in feature_names:
                    feature_names.append(canonical)
        except MetricError as exc:
            raise MetricError(f"{exc}, {', '.join(CLI_ALIASES)}, nfs, nfsN, nfs_data") from None
    return feature_names, nfs, data_nfs


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "trigan" / "metrics"


def _dataset_cache_key(dataset) -> str:
    path = Path(str(getattr(dataset, "path", ""))).resolve()
    try:
        st = path.stat()
        stamp = f"{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        stamp = ""
    return (f"{path}|{stamp}|mirror={getattr(dataset, 'mirror', False)}|res={getattr(dataset, 'resolution', '')}"
            f"|n={len(getattr(dataset, 'names', []))}")


def snapshot_files(run_dir: Path) -> List[Path]:
    """Every checkpoint in a run directory: *.ckpt at any depth (latest, best, snapshots/...) and EpiGRAF
    network-snapshot-*.pkl; temporary files of interrupted writes (.NAME.XXXX.tmp) are skipped."""
    found = set(run_dir.rglob("*.ckpt")) | set(run_dir.rglob("network-snapshot-*.pkl"))
    files = [p for p in found if p.is_file() and not any(part.startswith(".") for part in p.relative_to(run_dir).parts)]
    order = {"latest.ckpt": 0, "best.ckpt": 1}
    return sorted(files, key=lambda p: (order.get(p.relative_to(run_dir).as_posix(), 2), p.relative_to(run_dir).as_posix()))


def _run_dir_of(path: Path) -> Optional[Path]:
    """The training run a checkpoint belongs to (its folder or the one above), if any."""
    from trigan.training.run_dir import is_run_dir  # noqa: PLC0415 (loads torch: see cli/main.py)
    for folder in (path.parent, path.parent.parent):
        if is_run_dir(folder):
            return folder
    return None


def _kimg(progress: dict) -> Optional[float]:
    if "cur_nimg" in progress:
        return float(progress["cur_nimg"]) / 1000
    if "kimg" in progress:
        return float(progress["kimg"])
    return None


class _Bars:
    """tqdm bars on stderr, one per task; progress(done, total) callbacks."""

    def __init__(self, quiet: bool):
        self.quiet = quiet

    def __call__(self, desc: str):
        if self.quiet:
            return None, lambda: None
        bar = tqdm(desc=desc, total=0, file=sys.stderr, unit="img", leave=False, dynamic_ncols=True)

        def progress(done: int, total: int) -> None:
            if bar.total != total:
                bar.total = total
            bar.n = done
            bar.refresh()
        return progress, bar.close


# ---------------------------------------------------------------------------------------------------
# The command

def run(args) -> int:
    # These load torch and the core (see cli/main.py).
    from trigan.core.checkpoint_meta import resolve_model_path  # noqa: PLC0415
    from trigan.core.devices import parse_device  # noqa: PLC0415
    from trigan.core.metrics import INCEPTION_HELP, FeatureExtractor, MetricError  # noqa: PLC0415
    from trigan.core.nfs import dataset_nfs  # noqa: PLC0415
    from trigan.training.dataset import open_dataset  # noqa: PLC0415

    feature_names, nfs_names, data_nfs = parse_names(args.metrics)
    if args.depth_maps:
        data_nfs = True
        if args.metrics == "fid50k_full" and not args.model:   # the default list: only the folder was asked for
            feature_names = []
    if not (feature_names or nfs_names or data_nfs):
        raise TriganError("--metrics names no metric")
    if args.batch < 1:
        raise TriganError(f"--batch {args.batch}: expected a positive number")
    model_metrics = feature_names + list(nfs_names)
    if model_metrics and not args.model:
        raise TriganError(f"{', '.join(model_metrics)} score a model: give a checkpoint or run directory")
    if args.model and not model_metrics:
        raise TriganError(f"{args.model}: no model metric asked for (--metrics {args.metrics})")
    if feature_names and not args.data:
        raise TriganError(f"{', '.join(feature_names)} compare with real images: pass --data DATA")
    if data_nfs and not (args.data or args.depth_maps):
        raise TriganError("nfs_data needs --data DATA (with depth maps) or --depth-maps DIR|ZIP")
    if feature_names and not args.inception:
        raise MetricError(f"{', '.join(feature_names)} need --inception PATH; {INCEPTION_HELP}")
    if args.inception and feature_names and not Path(args.inception).is_file():
        raise MetricError(f"--inception {args.inception}: no such file; {INCEPTION_HELP}")

    model_path = Path(os.path.expanduser(args.model)) if args.model else None
    if model_path is not None and not model_path.exists():
        raise TriganError(f"{args.model}: no such file or folder")
    if model_path is not None and model_path.is_dir() and args.all_snapshots:
        snapshots = snapshot_files(model_path)
        if not snapshots:
            raise TriganError(f"{model_path}: no *.ckpt snapshots in this folder")
    elif model_path is not None:
        if args.all_snapshots:
            raise TriganError("--all-snapshots goes with a run directory")
        snapshots = [resolve_model_path(model_path, latest=args.latest)]
    else:
        snapshots = []
    run_dir = None
    if model_path is not None and not args.no_log:
        run_dir = model_path if model_path.is_dir() else _run_dir_of(model_path.resolve())

    dataset = None
    if args.data and (feature_names or nfs_names or (data_nfs and not args.depth_maps)):
        dataset = open_dataset(args.data, mirror=args.mirror, use_labels=True)
    depth_maps = DepthMaps(args.depth_maps) if args.depth_maps and data_nfs else None

    bars = _Bars(args.quiet)
    data_results: Dict[str, float] = {}
    if data_nfs:
        progress, close = bars("nfs_data")
        try:
            if depth_maps is not None:
                data_results["nfs_data"] = depth_maps_nfs(depth_maps, progress)
            else:
                data_results["nfs_data"] = dataset_nfs(dataset, progress=progress)
        finally:
            close()
            if depth_maps is not None:
                depth_maps.close()

    device = parse_device(args.device) if snapshots else None
    extractor = FeatureExtractor.load(args.inception, device=device) if feature_names else None
    cache_dir = Path(os.path.expanduser(args.cache)) if args.cache else default_cache_dir()
    results = []
    for path in snapshots:
        results.append(_score(path, run_dir, dataset, feature_names, nfs_names, extractor, cache_dir, device,
                              args, bars))

    best = _best(results, model_metrics)
    if run_dir is not None:
        for record in results:
            line = {"kimg": record["kimg"], **record["metrics"], "snapshot": record["snapshot"]}
            with open(run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(line) + "\n")
    if args.json:
        print(json.dumps({"results": results, "data": data_results, "best": best}, indent=2))
    else:
        print(format_table(results, data_results, best, model_metrics, args.data or args.depth_maps))
    return 0


def _score(path: Path, run_dir: Optional[Path], dataset, feature_names, nfs_names, extractor, cache_dir, device,
           args, bars) -> dict:
    # These load torch and the core (see cli/main.py).
    from trigan.core.metrics import compute_metric  # noqa: PLC0415
    from trigan.core.model_io import open_model  # noqa: PLC0415
    from trigan.core.nfs import frontal_conditioning, generator_nfs  # noqa: PLC0415
    from trigan.training.evaluation import dataset_conditioning  # noqa: PLC0415

    model = open_model(path, device=device)
    G = model.G
    name = path.relative_to(run_dir).as_posix() if run_dir is not None and _inside(path, run_dir) else path.name
    conditioning = None
    if dataset is not None:
        conditioning = dataset_conditioning(G, dataset)
    values: Dict[str, float] = {}
    for metric in feature_names:
        progress, close = bars(f"{name} {metric}")
        try:
            values[metric] = float(compute_metric(metric, G, dataset, extractor, conditioning=conditioning,
                                                  resolution=dataset.resolution, cache_dir=cache_dir,
                                                  cache_key=_dataset_cache_key(dataset), batch_size=args.batch,
                                                  seed=args.seed, progress=progress))
        finally:
            close()
    for metric, num in nfs_names.items():
        progress, close = bars(f"{name} {metric}")
        try:
            values[metric] = generator_nfs(G, num=num, batch=args.batch, conditioning=frontal_conditioning(G, conditioning),
                                           seed=args.seed, progress=progress)
        finally:
            close()
    return {"snapshot": name, "path": str(path), "kimg": _kimg(model.progress), "metrics": values}


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _best(results: List[dict], names: List[str]) -> Optional[dict]:
    """The best snapshot by the first metric: lowest FID/KID, highest NFS."""
    if len(results) < 2 or not names:
        return None
    first = names[0]
    scored = [r for r in results if math.isfinite(r["metrics"].get(first, float("nan")))]
    if not scored:
        return None
    pick = (max if first.startswith("nfs") else min)(scored, key=lambda r: r["metrics"][first])
    return {"snapshot": pick["snapshot"], "path": pick["path"], "metric": first, "value": pick["metrics"][first]}


class DepthMaps:
    """The depth maps of a folder or a .zip: its *_depth.png files when it has any, else every PNG
    (recursive; hidden files and __MACOSX/ skipped, as datasets skip them). Opening checks the path
    and lists the files; `read(name)` decodes one map to float32 [H, W] on the 16-bit scale."""

    def __init__(self, path):
        self.path = Path(os.path.expanduser(str(path)))
        self._zip = None
        what = f"--depth-maps {path}"
        if self.path.is_dir():
            names = sorted(p.relative_to(self.path).as_posix() for p in self.path.rglob("*") if p.is_file())
        elif self.path.is_file():
            try:
                self._zip = zipfile.ZipFile(self.path)
            except (zipfile.BadZipFile, OSError) as exc:
                raise TriganError(f"{what}: expected a folder or a .zip of depth PNGs ({exc})") from None
            names = sorted(n for n in self._zip.namelist() if not n.endswith("/"))
        else:
            raise TriganError(f"{what}: no such file or folder")
        pngs = [n for n in names if n.lower().endswith(".png") and self._visible(n)]
        self.names = [n for n in pngs if n.lower().endswith("_depth.png")] or pngs
        if not self.names:
            self.close()
            raise TriganError(f"{what}: no PNG depth maps in it")

    @staticmethod
    def _visible(name: str) -> bool:
        parts = name.split("/")
        return not any(part.startswith(".") for part in parts) and parts[0] != "__MACOSX"

    def read(self, name: str):
        from PIL import Image  # noqa: PLC0415 (an imaging stack: see cli/main.py)

        from trigan.training.dataset import depth_array  # noqa: PLC0415 (loads torch: see cli/main.py)
        try:
            data = self._zip.read(name) if self._zip is not None else (self.path / name).read_bytes()
            with Image.open(io.BytesIO(data)) as im:
                return depth_array(im)
        except Exception as exc:  # noqa: BLE001 - any decoder failure is the file's fault
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            where = f"{self.path}/{name}" if self._zip is None else f"{self.path}:{name}"
            raise TriganError(f"{where}: cannot read depth map ({reason})") from None

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None


def depth_maps_nfs(maps: DepthMaps, progress=None) -> float:
    """NFS of depth maps read on the 16-bit scale (8-bit values x 256), binned over 0..65535 as
    `nfs_data` bins a dataset's depth: the mean over maps of exp(entropy) of a 64-bin histogram."""
    from trigan.core.nfs import DEPTH_SCALE, nfs_per_image  # noqa: PLC0415 (loads torch: see cli/main.py)
    scores = []
    for i, name in enumerate(maps.names):
        scores.append(float(nfs_per_image(maps.read(name)[None], 0.0, DEPTH_SCALE)[0]))
        if progress is not None:
            progress(i + 1, len(maps.names))
    return sum(scores) / len(scores)


def format_table(results: List[dict], data_results: Dict[str, float], best: Optional[dict], names: List[str],
                 data_name: Optional[str]) -> str:
    def fmt(v) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.6g}" if abs(v) < 1e-3 and v != 0 else f"{v:.4f}"
        return str(v)

    header = ["snapshot", "kimg"] + names
    rows = [[r["snapshot"], "-" if r["kimg"] is None else f"{r['kimg']:g}"] + [fmt(r["metrics"].get(n)) for n in names]
            for r in results]
    lines = []
    if rows:
        widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
        lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    for key, value in data_results.items():
        lines.append(f"{key} ({data_name}): {fmt(value)}")
    if best is not None:
        lines.append(f"best by {best['metric']}: {best['snapshot']} ({fmt(best['value'])})")
    return "\n".join(lines)
