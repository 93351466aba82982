"""One crafted file per class of hostile checkpoint (issue 29): each is refused in one line naming the
file, through the shared loader (`open_model`) and `trigan info`, in bounded time and memory.

The pickles are written opcode by opcode (a few hundred bytes each). All files are checked in one
subprocess with a 3 GiB address-space limit and a timeout, so a hang or a runaway allocation fails
the test instead of the machine."""

from __future__ import annotations

import io
import json
import os
import re
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from conftest import REPO, tiny_config
from trigan.core.checkpoint import save_checkpoint
from trigan.core.generator import Generator

# ---------------------------------------------------------------------------------------------
# Writing pickles by hand

PERSISTENT = b"csrc.torch_utils.persistence\n_reconstruct_persistent_obj\n"


def text(value: str) -> bytes:
    data = value.encode()
    return b"\x8c" + bytes([len(data)]) + data  # SHORT_BINUNICODE


def dict_of(*pairs) -> bytes:
    return b"}(" + b"".join(k + v for k, v in pairs) + b"u"  # EMPTY_DICT MARK ... SETITEMS


def module(class_name: str, children=(), **state_items) -> bytes:
    """An upstream persistent module, as `_reconstruct_persistent_obj({'class_name', 'state'})`."""
    state = dict_of((text("_modules"), dict_of(*((text(k), v) for k, v in children))),
                    *((text(k), v) for k, v in state_items.items()))
    meta = dict_of((text("type"), text("class")), (text("module_src"), text("import os\nos.system('x')")),
                   (text("class_name"), text(class_name)), (text("state"), state))
    return PERSISTENT + meta + b"\x85R"  # TUPLE1 REDUCE


def tri_plane_generator(**state_items) -> bytes:
    synthesis = module("SynthesisNetwork", [("tri_plane_mlp", module("TriPlaneMLP"))])
    return module("Generator", [("synthesis", synthesis)], **state_items)


def snapshot(*pairs, g_ema: bytes | None = None) -> bytes:
    return b"\x80\x04" + dict_of((text("G_ema"), g_ema or tri_plane_generator()), *pairs) + b"."


def laughs(levels: int = 30, width: int = 10) -> bytes:
    """A list of `width` references to a list of `width` references to ... (width^levels leaves)."""
    out = b"]" + text("lol") + b"a" + b"q\x00"  # EMPTY_LIST, APPEND, BINPUT 0
    for level in range(1, levels):  # POP the previous level, build the next from references to it
        out += b"0](" + (b"h" + bytes([level - 1])) * width + b"e"
        out += b"q" + bytes([level])
    return out


def interpolation_bomb(levels: int = 20) -> bytes:
    """A DictConfig whose key k_i is '${k_(i+1)}' three times: 3^levels characters resolved."""
    names = [f"k{i}" for i in range(levels)]
    content = [(text(n), text(("${%s}" % names[i + 1]) * 3)) for i, n in enumerate(names[:-1])]
    content.append((text(names[-1]), text("ha")))
    return b"comegaconf.dictconfig\nDictConfig\n)\x81" + dict_of((text("_content"), dict_of(*content))) + b"b"


def nested_lists(depth: int) -> bytes:
    return b"]" * depth + b"a" * (depth - 1)


def ckpt_with_pickle(path: Path, data_pkl, source=None) -> Path:
    """A real torch.save zip (of `source`, else of a tiny dict) whose data.pkl is replaced by
    `data_pkl` (bytes, or a function of the original data.pkl)."""
    good = io.BytesIO(Path(source).read_bytes()) if source else io.BytesIO()
    if not source:
        torch.save({"format": "trigan-checkpoint"}, good)
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as dst:
        for entry in src.infolist():
            data = src.read(entry)
            if entry.filename.endswith("data.pkl"):
                data = data_pkl(data) if callable(data_pkl) else data_pkl
            dst.writestr(entry.filename, data)
    return path


def ckpt_payload(config: bytes) -> bytes:
    """Protocol-2 data.pkl of {'format', 'version', 'G_ema': {}, 'config': CONFIG}."""
    return (b"\x80\x02}(" + b"X\x06\x00\x00\x00format" + b"X\x11\x00\x00\x00trigan-checkpoint"
            + b"X\x07\x00\x00\x00version" + b"K\x01" + b"X\x05\x00\x00\x00G_ema}" + b"X\x06\x00\x00\x00config"
            + config + b"u.")


def ckpt_laughs(levels: int = 30, width: int = 10) -> bytes:
    out = b"](" + b"]X\x03\x00\x00\x00lola" + b"q\x00"  # every level stays in one outer list
    for level in range(1, levels):
        out += b"](" + (b"h" + bytes([level - 1])) * width + b"e" + b"q" + bytes([level])
    return b"}X\x05\x00\x00\x00model" + out + b"es"


# ---------------------------------------------------------------------------------------------
# The crafted files and what each refusal must say

def write_hostile_files(folder: Path) -> dict:
    """name -> (path, regex the one-line message must match besides the file name)."""
    files = {}

    def add(name, data, expect):
        path = folder / name
        path.write_bytes(data)
        files[name] = (path, expect)

    add("laughs.pkl", snapshot((text("vis"), laughs())), r"refuses to load: .*exceeds")
    add("interpolation.pkl", snapshot(g_ema=tri_plane_generator(cfg=interpolation_bomb())),
        r"refuses to load: .*(interpolation|exceeds)")
    add("module_source.pkl", snapshot(g_ema=tri_plane_generator(_init_kwargs=dict_of((text("c_dim"), text("x"))))),
        r"malformed|corrupt")
    add("memo_index.pkl", b"\x80\x04}r\xf0\xff\xff\xff.", r"corrupt: memo index")
    add("huge_string.pkl", b"\x80\x04\x8d" + struct.pack("<Q", 1 << 40) + b"abc.", r"truncated")
    add("numpy_reconstruct.pkl", b"\x80\x04cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
        b"J\x00\x00\x10\x00J\x00\x00\x10\x00\x86C\x01b\x87R.", r"corrupt|not an EpiGRAF")
    add("nested_config.pkl", snapshot((text("vis"), nested_lists(200_000))), r"refuses to load: .*depth")
    add("huge_resolution.pkl", snapshot(g_ema=tri_plane_generator(_init_kwargs=dict_of(
        (text("img_resolution"), b"J\x00\xca\x9a\x3b"), (text("w_dim"), b"K\x10"), (text("channel_base"), b"M\x00\x01"),
        (text("channel_max"), b"K\x10"), (text("cfg"), dict_of((text("tri_plane"), dict_of(
            (text("res"), b"K\x10"), (text("feat_dim"), b"K\x08")))))))), r"img_resolution")
    add("infinite_width.pkl", snapshot(g_ema=tri_plane_generator(_init_kwargs=dict_of(
        (text("img_resolution"), b"K\x10"), (text("w_dim"), b"G\x7f\xf0\x00\x00\x00\x00\x00\x00")))),
        r"malformed.*(infinity|inf)")
    files["laughs.ckpt"] = (ckpt_with_pickle(folder / "laughs.ckpt", ckpt_payload(ckpt_laughs())),
                            r"refuses to load: .*exceeds")
    files["nested_config.ckpt"] = (ckpt_with_pickle(folder / "nested_config.ckpt",
                                                    ckpt_payload(nested_lists(100_000))), r"refuses to load: .*depth")
    files["memo_index.ckpt"] = (ckpt_with_pickle(folder / "memo_index.ckpt", ckpt_payload(b"}r\xf0\xff\xff\xff")),
                                r"corrupt: memo index")
    files["bytearray.ckpt"] = (ckpt_with_pickle(folder / "bytearray.ckpt", ckpt_payload(
        b"c__builtin__\nbytearray\nJ\x00\x00\x00\x7f\x85R")), r"refuses to load: .*bytearray")
    cfg = tiny_config()
    save_checkpoint(folder / "tiny.ckpt", cfg, Generator(cfg.model))
    # the model's name 'demo' becomes '${x}' (same length: the pickle stays valid)
    ckpt_with_pickle(folder / "interpolation.ckpt", lambda data: data.replace(b"demo", b"${x}", 1),
                     source=folder / "tiny.ckpt")
    files["interpolation.ckpt"] = (folder / "interpolation.ckpt", r"refuses to load: .*interpolation")
    for name in ("fifo.ckpt", "fifo.pkl"):
        os.mkfifo(folder / name)
        files[name] = (folder / name, r"is not a regular file \(a named pipe\)")
    return files


_CHILD = r"""
import contextlib, io, json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
from trigan.cli.main import main
from trigan.core.errors import TriganError
from trigan.core.model_io import open_model
results = {}
for path in sys.argv[1:]:
    try:
        open_model(path)
        loader = "loaded"
    except TriganError as exc:
        loader = "TriganError: " + str(exc)
    except BaseException as exc:
        loader = "other: " + type(exc).__name__ + ": " + str(exc)[:300]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(["info", path])
        except BaseException as exc:
            code = "raised " + type(exc).__name__
    results[path] = {"loader": loader, "code": code, "stderr": err.getvalue()}
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def hostile_results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    files = write_hostile_files(folder)
    env = {**os.environ, "PYTHONPATH": str(REPO.parent)}
    run = subprocess.run([sys.executable, "-c", _CHILD, *(str(p) for p, _ in files.values())],
                         check=False, capture_output=True, text=True, timeout=600, env=env, cwd=REPO)
    assert run.returncode == 0, f"the loader process died (rc {run.returncode}): {run.stderr[-2000:]}"
    results = json.loads(run.stdout.strip().splitlines()[-1])
    return {name: (results[str(path)], path, expect) for name, (path, expect) in files.items()}


HOSTILE = ["laughs.pkl", "interpolation.pkl", "module_source.pkl", "memo_index.pkl", "huge_string.pkl",
           "numpy_reconstruct.pkl", "nested_config.pkl", "huge_resolution.pkl", "infinite_width.pkl",
           "laughs.ckpt", "nested_config.ckpt", "memo_index.ckpt", "bytearray.ckpt", "interpolation.ckpt",
           "fifo.ckpt", "fifo.pkl"]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_file_refused_in_one_line(hostile_results, name):
    result, path, expect = hostile_results[name]
    assert result["loader"].startswith("TriganError: "), result["loader"]
    message = result["loader"][len("TriganError: "):]
    assert str(path) in message and "\n" not in message and re.search(expect, message), message
    assert result["code"] == 2, result
    lines = result["stderr"].strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("trigan: error: ") and str(path) in lines[0], result["stderr"]


def test_crafted_pickles_are_small(tmp_path):
    files = write_hostile_files(tmp_path)
    assert (files["laughs.pkl"][0]).stat().st_size < 1500
    assert (files["interpolation.pkl"][0]).stat().st_size < 1500
