"""Start-up: the wall time of `trigan --help`, `trigan render --help` and `trigan info` on a trigan
checkpoint, on every official EpiGRAF / 3DGP snapshot in tests/fixtures (`info_pkl_<name>`) and on one
snapshot converted, against the code before issue 32, in one run.

Each command runs as a fresh `python -m trigan.cli.main` process (what a person waits for), `--repeats`
times, alternating between the two trees so that load on the machine hits both alike; the median is
reported. The old tree is put first on PYTHONPATH (it must hold a `trigan` folder); the current one is
this checkout. Prints one JSON object: seconds per command for each tree and old/new ratios.

    python benchmarks/startup.py                              # old tree: /tmp/base32
    python benchmarks/startup.py --old /path/to/parent --repeats 7
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


OFFICIAL = sorted([*(REPO / "tests" / "fixtures" / "epigraf").glob("*.pkl"),
                   *(REPO / "tests" / "fixtures" / "3dgp").glob("*.pkl")])


def commands(converted: str) -> dict:
    timed = {"help": ["--help"], "render_help": ["render", "--help"],
             "info_demo_ckpt": ["info", str(REPO / "assets" / "demo.ckpt")],
             "info_converted_ckpt": ["info", converted]}
    timed.update({f"info_pkl_{path.stem}": ["info", str(path)] for path in OFFICIAL})
    return timed


def convert_fixture(fixture: str, folder: str, env) -> str:
    """The official snapshot as a trigan checkpoint (`trigan convert`, this checkout): what
    `trigan info` reads without torch."""
    out = str(Path(folder) / "converted.ckpt")
    subprocess.run([sys.executable, "-m", "trigan.cli.main", "convert", fixture, out], env=env, cwd=REPO.parent,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return out


def run_once(argv, env) -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "trigan.cli.main", *argv], env=env, cwd=REPO.parent,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr[-500:]}")
    return elapsed


def environments(old_parent: str) -> dict:
    """The process environment for each tree: the old one first on PYTHONPATH; the current one with
    PYTHONPATH cleared (this checkout is the installed package). One thread, as the issue measures."""
    base = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    base.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return {"old": {**base, "PYTHONPATH": old_parent}, "new": base}


def check_trees(envs: dict) -> None:
    """Each environment imports the tree it should (a wrong PYTHONPATH would compare a tree with itself)."""
    probe = "import trigan.cli.main as m; print(m.__file__)"
    seen = {name: subprocess.run([sys.executable, "-c", probe], env=env, cwd=REPO.parent, capture_output=True,
                                 text=True, check=True).stdout.strip() for name, env in envs.items()}
    if seen["old"] == seen["new"]:
        raise SystemExit(f"both trees import {seen['new']}: check --old")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", default="/tmp/base32", help="folder holding the old `trigan` tree")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--fixture", default=str(REPO / "tests" / "fixtures" / "epigraf" / "cond_white.pkl"),
                        help="the official snapshot converted for info_converted_ckpt")
    args = parser.parse_args()
    envs = environments(args.old)
    check_trees(envs)
    with tempfile.TemporaryDirectory() as folder:
        timed = commands(convert_fixture(args.fixture, folder, envs["new"]))
        times = {tree: {name: [] for name in timed} for tree in envs}
        for _ in range(args.repeats):
            for name, argv in timed.items():
                for tree, env in envs.items():
                    times[tree][name].append(run_once(argv, env))
    median = {tree: {name: round(statistics.median(v), 3) for name, v in per.items()} for tree, per in times.items()}
    result = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                          "load_average": [round(x, 2) for x in os.getloadavg()]},
              "repeats": args.repeats, "fixture": args.fixture,
              "seconds_old": median["old"], "seconds_new": median["new"],
              "speedup": {name: round(median["old"][name] / median["new"][name], 2) for name in median["new"]},
              "info_pkl_slowest_s": {tree: max(v for k, v in median[tree].items() if k.startswith("info_pkl_"))
                                     for tree in median},
              "targets": {"help_s": 0.3, "info_s": 1.0}}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
