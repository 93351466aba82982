"""Run the test suite under CPU kernel choices other than this machine's own (`make test-portability`).

torch picks its CPU kernels at run time: ATen by instruction set, oneDNN (convolutions) by
instruction set, MKL (matrix products) by instruction set and CPU vendor, and all of them split
work by thread count. Kernels differ in how they split and order the sums, so the same maths gives
results that differ in the last bits from one machine to the next, and, on one machine, from one
batch shape to the next. A test that compares such results bit for bit passes where it was written
and fails on a user's first `make test` elsewhere (it happened: a Xeon with AVX-512). This script
runs the suite once per variant below, so such a test fails here first.

    python tests/portability/run.py                       every variant, the whole suite
    python tests/portability/run.py --variant avx2-1thread -- -m "not gui" -x
    python tests/portability/run.py --list

Everything after `--` goes to pytest. The exit status is 0 when every variant passed.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SHIM_SOURCE = HERE / "mkl_intel_path.c"

# name -> (environment, what it changes). "{shim}" is replaced by the path of the compiled shim.
VARIANTS = {
    "mkl-intel": (
        {"LD_PRELOAD": "{shim}"},
        "MKL's Intel kernels (AVX-512 where the CPU has it); on AMD CPUs MKL otherwise runs generic ones"),
    "avx2-1thread": (
        {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
         "OMP_NUM_THREADS": "1"},
        "AVX2 kernels in ATen, oneDNN and MKL, one thread"),
    "generic-1thread": (
        {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
         "MKL_CBWR": "COMPATIBLE", "OMP_NUM_THREADS": "1"},
        "no vector kernels in ATen, SSE4 in oneDNN and MKL, one thread"),
    "mkl-intel-3threads": (
        {"LD_PRELOAD": "{shim}", "TRIGAN_TEST_THREADS": "3"},
        "MKL's Intel kernels and 3 torch threads (work split three ways; tests/conftest.py sets them)"),
}


def build_shim(folder: Path) -> tuple[str | None, str]:
    """(path of the compiled MKL shim, "") or (None, why it cannot be built here)."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        return None, f"MKL shims need x86-64 Linux (this is {sys.platform} {platform.machine()})"
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if compiler is None:
        return None, "no C compiler (cc/gcc) to build the MKL shim"
    out = folder / "libmkl_intel_path.so"
    proc = subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(out), str(SHIM_SOURCE)],
                          check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        return None, f"building the MKL shim failed: {proc.stderr.strip().splitlines()[-1:]}"
    return str(out), ""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="variants:\n" + "\n".join(f"  {k:20s} {v[1]}" for k, v in VARIANTS.items()))
    parser.add_argument("--variant", action="append", choices=list(VARIANTS),
                        help="run only this variant (repeatable; default: all)")
    parser.add_argument("--list", action="store_true", help="list the variants and their settings, run nothing")
    parser.add_argument("pytest_args", nargs="*", help="arguments for pytest (after --)")
    args = parser.parse_args(argv)
    if args.list:
        for name, (env, what) in VARIANTS.items():
            print(f"{name}: {what}\n    {' '.join(f'{k}={v}' for k, v in env.items())}")
        return 0
    names = args.variant or list(VARIANTS)
    results = []
    with tempfile.TemporaryDirectory(prefix="trigan-portability-") as tmp:
        shim, why_not = build_shim(Path(tmp))
        for name in names:
            env_changes, what = VARIANTS[name]
            if any("{shim}" in v for v in env_changes.values()) and shim is None:
                print(f"== {name}: skipped ({why_not})", flush=True)
                results.append((name, "skipped", 0.0))
                continue
            env = dict(os.environ)
            env.update({k: v.replace("{shim}", shim or "") for k, v in env_changes.items()})
            settings = " ".join(f"{k}={v}" for k, v in env_changes.items() if k != "LD_PRELOAD")
            print(f"== {name}: {what}" + (f" [{settings}]" if settings else ""), flush=True)
            start = time.monotonic()
            code = subprocess.call([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args.pytest_args],
                                   cwd=REPO, env=env)
            results.append((name, "passed" if code == 0 else f"FAILED (pytest exit {code})",
                            time.monotonic() - start))
    print("\nportability runs:")
    for name, outcome, seconds in results:
        print(f"  {name:20s} {outcome:24s} {seconds / 60:5.1f} min")
    return 0 if all(outcome in ("passed", "skipped") for _, outcome, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
