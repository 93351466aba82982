"""benchmarks/gpu_check.py: without CUDA it says so in one line and exits 0; its sections run on the CPU
(device="cpu", the smallest sizes) and return their keys; a failing section is recorded, not raised.

No GPU runs these tests, so each section is run here with device="cpu": the same code as on CUDA, with
the CPU as both sides of every comparison (so the parity figures are exact: 0 difference, 99 dB).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO, THREEDGP_FIXTURES
from trigan.core.rendering import path_unavailable

sys.path.insert(0, str(REPO / "benchmarks"))    # the script is not part of the package
import gpu_check

CPU = torch.device("cpu")
SCRIPT = REPO / "benchmarks" / "gpu_check.py"


@pytest.fixture(autouse=True)
def one_thread():
    """Steady, small figures on a shared CPU; restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def preview_reason():
    return path_unavailable("preview")


def test_without_cuda_the_script_says_so_in_one_line_and_exits_0():
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")          # no CUDA even on a GPU machine
    done = subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 1 and "no CUDA device" in lines[0]
    assert done.stderr == ""


def test_a_raising_section_is_recorded_in_one_line_and_a_missed_tolerance_fails_the_section():
    def broken():
        raise RuntimeError("first line\nsecond line")
    record = gpu_check.run_section("broken", broken)
    assert record["ok"] is False and record["error"] == "RuntimeError: first line" and "seconds" in record
    record = gpu_check.run_section("missed", lambda: {"figure": 1.0, "failures": ["figure too low"]})
    assert record == {"ok": False, "error": "figure too low", "figure": 1.0, "seconds": record["seconds"]}
    assert gpu_check.run_section("fine", lambda: {"figure": 2.0})["ok"] is True


def test_parity_on_the_cpu_compares_every_path_and_discriminator_exactly():
    name = "3dgp/3dgp_uncond_origin"
    result = gpu_check.parity_section(CPU, 8, fixtures={name: THREEDGP_FIXTURES / "3dgp_uncond_origin.pkl"},
                                      demo=None)
    assert result["failures"] == [] and result["tolerances"] == gpu_check.TOLERANCES
    record = result["models"][name]
    expected_paths = {"plain", "accelerated"} | (set() if preview_reason() else {"preview"})
    assert set(record["paths"]) == expected_paths
    for modes in record["paths"].values():
        for c in modes.values():      # the CPU against itself: the same numbers
            assert c == {"rgb_max_abs": 0.0, "rgb_psnr_db": 99.0, "depth_max_abs": 0.0}
    assert record["mlp_vs_upstream_max_abs"] <= record["mlp_vs_upstream_bound"]
    assert set(result["discriminators"]) == {name, "demo_random"}
    for d in result["discriminators"].values():
        assert d["fp32_max_abs"] == 0.0 and d["fp16_max_abs"] == 0.0
        assert d["fp16_blocks"] == 0      # fp16 runs only on CUDA
        assert d["blocks"] > 0 and d["logits_max_abs_cpu"] > 0


def test_a_render_or_logit_outside_its_tolerance_is_named():
    record = {"paths": {"plain": {"fp32": {"rgb_max_abs": 0.5, "rgb_psnr_db": 30.0, "depth_max_abs": 0.1},
                                  "default": {"rgb_max_abs": 0.01, "rgb_psnr_db": 45.0, "depth_max_abs": 0.0}}}}
    assert gpu_check.render_misses("m", record) == ["m plain fp32: 30.0 dB, max abs 0.5"]
    d = {"fp32_max_abs": 0.0, "fp32_bound": 1e-4, "fp16_max_abs": 0.0, "fp16_bound": 0.05, "fp16_blocks": 0}
    assert gpu_check.d_misses("D1", d, CPU) == []
    assert gpu_check.d_misses("D1", d, torch.device("cuda")) == ["D D1: no block ran in fp16 on CUDA"]


def test_gl_preview_section_reports_the_renderer_and_frame_times():
    if preview_reason():
        pytest.skip(f"no headless GL here: {preview_reason()}")
    result = gpu_check.gl_preview_section(CPU, sizes=[32, 48], frames=2)
    assert result["gl_renderer"] and set(result["ms_per_frame"]) == set(result["fps"]) == {"32", "48"}
    assert "failures" not in result        # the NVIDIA requirement applies to CUDA only


def test_exact_render_section_times_both_models():
    result = gpu_check.exact_render_section(CPU, sizes=[16], big_preset="demo", big_size=16, repeats=1)
    assert set(result["demo_ckpt"]["16"]) == {"grid_setup_ms", "ms", "fps", "occupied_fraction", "peak_mib"}
    large = result["large_model"]
    assert large["preset"] == "demo" and large["accelerated"]["ms"] > 0 and large["plain"]["ms"] > 0
    assert large["field_peak_mib"] is None      # peak memory is CUDA's counter


def test_training_section_times_a_step():
    result = gpu_check.training_section(CPU, ["demo"], batch=4, steps=1, overrides=gpu_check.TINY_TRAIN[:13])
    step = result["demo"]
    assert step["batch"] == 4 and step["steps_timed"] == 1 and step["ms_per_step"] > 0
    assert step["fp16_discriminator"] is False


def test_mesh_section_makes_a_coloured_mesh():
    result = gpu_check.mesh_section(CPU, resolution=24)
    assert result["resolution"] == 24 and result["faces"] > 0 and result["colored"] is True


def test_main_prints_one_json_object_and_writes_it(tmp_path, capsys, monkeypatch):
    if preview_reason():
        pytest.skip(f"no headless GL here: {preview_reason()}")
    monkeypatch.setitem(gpu_check.QUICK_SIZES, "preview", [32])
    monkeypatch.setitem(gpu_check.QUICK_SIZES, "orbit_frames", 2)
    out = tmp_path / "check.json"
    code = gpu_check.main(["--device", "cpu", "--quick", "--only", "gl_preview", "--json", str(out)])
    printed = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and len(printed) == 1
    result = json.loads(printed[0])
    assert result == json.loads(out.read_text())
    assert result["ok"] and list(result["sections"]) == ["gl_preview"] and result["machine"]["device"] == "cpu"


def test_unknown_sections_are_refused():
    with pytest.raises(SystemExit):
        gpu_check.main(["--device", "cpu", "--only", "nonsense"])


@pytest.mark.slow
def test_torchrun_section_runs_one_process_and_a_collective(tmp_path):
    result = gpu_check.torchrun_section(CPU, timeout=240)
    assert result["train_rc"] == 0 and result["steps"] == 2 and result["world_size"] == 1
    assert result["collective"] == {"backend": "gloo", "world_size": 1, "all_reduce_sum": 8.0}
    assert "failures" not in result


def test_torchrun_command_is_one_process_on_a_port_of_its_own():
    command = gpu_check.torchrun_command("-m", "trigan.cli.main", "train")
    assert command[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--nproc_per_node=1" in command and command[-3:] == ["-m", "trigan.cli.main", "train"]
    assert Path(sys.executable).exists()
