"""Fuzz the restricted unpickler (EpiGRAF/3DGP .pkl) and the trigan checkpoint reader: seeded random
and structured mutations of small real-format files (byte flips, truncations, splices, opcode swaps,
forged length fields; for the .ckpt also mutations of data.pkl inside the zip). Every case must load
or raise a TriganError with a one-line message naming the file: never another exception, and the
whole run stays under a 3 GiB address-space limit and a timeout (a hang or a runaway allocation
fails the test). Run with -s to see how many cases were tried, refused and loaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import REPO

_CHILD = r"""
import io, json, pickletools, random, resource, sys, tempfile, zipfile
from pathlib import Path
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
sys.path.insert(0, sys.argv[1])
from test_hostile_checkpoints import snapshot, text, dict_of, tri_plane_generator
from conftest import tiny_config
from trigan.core.checkpoint import load_checkpoint, save_checkpoint
from trigan.core.epigraf_pickle import read_epigraf_pickle
from trigan.core.errors import TriganError
from trigan.core.generator import Generator

rng = random.Random(29)
folder = Path(tempfile.mkdtemp())
cfg_node = (b"comegaconf.dictconfig\nDictConfig\n)\x81"
            + dict_of((text("_content"), dict_of((text("a"), text("x${b}")), (text("b"), text("y"))))) + b"b")
pkl = snapshot((text("vis"), b"](K\x01K\x02" + text("z") + b"e"), (text("stats"), dict_of((text("cur_nimg"), b"K\x05"))),
               g_ema=tri_plane_generator(cfg=cfg_node))
cfg = tiny_config()
save_checkpoint(folder / "tiny.ckpt", cfg, Generator(cfg.model), progress={"kimg": 1.0})
ckpt = (folder / "tiny.ckpt").read_bytes()
with zipfile.ZipFile(io.BytesIO(ckpt)) as z:
    entries = [(e.filename, z.read(e)) for e in z.infolist()]
data_pkl = next(d for n, d in entries if n.endswith("data.pkl"))
OPCODES = [op.code.encode("latin-1") for op in pickletools.opcodes]

def length_fields(data):
    try:
        return [(pos + 1, op.arg.n) for op, arg, pos in pickletools.genops(data)
                if op.arg is not None and op.arg.n in (1, 4, 8) and pos is not None]
    except Exception:
        return []

def mutate(data):
    data = bytearray(data)
    kind = rng.choice(["flip", "truncate", "splice", "opcode", "length", "flip"])
    if kind == "flip":
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif kind == "truncate":
        data = data[:rng.randrange(len(data))]
    elif kind == "splice":
        a, b = sorted(rng.randrange(len(data)) for _ in range(2))
        at = rng.randrange(len(data))
        data[at:at] = data[a:b]
    elif kind == "opcode":
        data[rng.randrange(len(data))] = rng.choice(OPCODES)[0]
    else:
        fields = length_fields(bytes(data))
        if fields:
            pos, n = rng.choice(fields)
            data[pos:pos + n] = rng.choice([b"\xff" * n, b"\x7f" + b"\xff" * (n - 1), b"\x00" * (n - 1) + b"\x10"])
    return bytes(data)

def rezip(pickle_bytes):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for name, d in entries:
            z.writestr(name, pickle_bytes if name.endswith("data.pkl") else d)
    return out.getvalue()

counts = {"tried": 0, "refused": 0, "loaded": 0}
failures = []
cases = [("pkl", read_epigraf_pickle, lambda: mutate(pkl))] * 1200
cases += [("ckpt", load_checkpoint, lambda: rezip(mutate(data_pkl)))] * 500
cases += [("ckpt", load_checkpoint, lambda: mutate(ckpt))] * 300
for i, (suffix, reader, make) in enumerate(cases):
    path = folder / f"case{i}.{suffix}"
    path.write_bytes(make())
    counts["tried"] += 1
    try:
        reader(path)
        counts["loaded"] += 1
    except TriganError as exc:
        message = str(exc)
        if "\n" in message or str(path) not in message:
            failures.append(f"case {i}: not one line naming the file: {message[:300]!r}")
        counts["refused"] += 1
    except BaseException as exc:
        failures.append(f"case {i} ({suffix}): {type(exc).__name__}: {str(exc)[:300]}")
    path.unlink()
print(json.dumps({"counts": counts, "failures": failures[:20]}))
"""


def test_fuzzed_checkpoints_load_or_refuse_in_one_line():
    env = {**os.environ, "PYTHONPATH": str(REPO.parent)}
    run = subprocess.run([sys.executable, "-c", _CHILD, str(REPO / "tests")], check=False, capture_output=True,
                         text=True, timeout=300, env=env, cwd=REPO / "tests")
    assert run.returncode == 0, f"the fuzz process died (rc {run.returncode}): {run.stderr[-3000:]}"
    report = json.loads(run.stdout.strip().splitlines()[-1])
    print(f"\nreader fuzz: {report['counts']}")
    assert report["counts"]["tried"] == 2000
    assert report["failures"] == [], report["failures"]
