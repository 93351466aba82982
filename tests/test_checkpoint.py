"""Checkpoint format: bit-exact round trip, atomic saves, clear errors for bad files."""

import os
import pickle

import pytest
import torch

from conftest import tiny_config
from trigan.cli.main import main
from trigan.core.checkpoint import build_generator, load_checkpoint, load_generator, save_checkpoint
from trigan.core.errors import CheckpointError, TriganError
from trigan.core.generator import Generator
from trigan.core.model_io import open_model
from trigan.core.selection import parse_int_list


@pytest.fixture
def saved(tmp_path, tiny_cfg):
    G = Generator(tiny_cfg.model).eval()
    for p in G.parameters():   # make every tensor distinctive, including zero-initialised ones
        p.data.normal_()
    path = save_checkpoint(tmp_path / "model.ckpt", tiny_cfg, G, progress={"kimg": 12.5, "tick": 3},
                           metrics={"fid2k": 31.4}, G=G.state_dict())
    return path, G


def one_line(exc_info):
    return "\n" not in str(exc_info.value)


def test_round_trip_is_bit_exact(saved):
    path, G = saved
    G2, ckpt = load_generator(path)
    own, loaded = G.state_dict(), G2.state_dict()
    assert own.keys() == loaded.keys()
    assert all(torch.equal(own[k], loaded[k]) for k in own)
    assert ckpt.progress == {"kimg": 12.5, "tick": 3} and ckpt.metrics == {"fid2k": 31.4}
    assert ckpt.config == load_checkpoint(path).config
    assert set(ckpt.extra) == {"G"}
    with torch.no_grad():
        ws = G.map_latents(G.latents([3]), G.labels([1], 1))
        a = G.render(G.field_from_ws(ws), G.default_camera(), 8)
        b = G2.render(G2.field_from_ws(ws), G2.default_camera(), 8)
    assert torch.equal(a.rgb, b.rgb)


def test_checkpoint_loads_with_weights_only(saved):
    path, _ = saved
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == "trigan-checkpoint" and isinstance(payload["config"], dict)
    assert payload["config"]["model"]["triplane"]["resolution"] == 16


def test_config_inside_the_checkpoint_describes_the_model(saved):
    path, _ = saved
    model = open_model(path)
    assert model.format == "trigan checkpoint"
    assert model.config.model.triplane.feat_dim == 8 and model.G.c_dim == 4


def test_save_is_atomic_when_writing_fails(tmp_path, tiny_cfg, saved):
    path, G = saved
    before = path.read_bytes()

    class Unserialisable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(path, tiny_cfg, G, D={"x": Unserialisable()})
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.ckpt"]   # no temp file left


@pytest.mark.parametrize("kind", ["garbage", "truncated", "empty", "text"])
def test_corrupt_files_give_one_line_errors(tmp_path, saved, kind):
    path, _ = saved
    bad = tmp_path / f"{kind}.ckpt"
    data = path.read_bytes()
    bad.write_bytes({"garbage": os.urandom(5000), "truncated": data[: len(data) // 2], "empty": b"",
                     "text": b"model: demo\n"}[kind])
    with pytest.raises(CheckpointError) as exc:
        open_model(bad)
    assert bad.name in str(exc.value) and one_line(exc)


def test_truncated_file_says_so(tmp_path, saved):
    path, _ = saved
    bad = tmp_path / "cut.ckpt"
    data = path.read_bytes()
    bad.write_bytes(data[: len(data) - 100])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(bad)


def test_bare_state_dict_is_not_a_checkpoint(tmp_path, tiny_cfg):
    bad = tmp_path / "weights.pt"
    torch.save(Generator(tiny_cfg.model).state_dict(), bad)
    with pytest.raises(CheckpointError, match="not a trigan checkpoint") as exc:
        load_checkpoint(bad)
    assert one_line(exc)


def test_pickled_objects_are_refused_without_running_them(tmp_path):
    marker = tmp_path / "ran"
    bad = tmp_path / "evil.ckpt"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"format": "trigan-checkpoint", "version": 1, "config": {}, "G_ema": {}, "x": Payload()}, bad)
    with pytest.raises(CheckpointError, match="refuses to load"):
        load_checkpoint(bad)
    assert not marker.exists()


def test_plain_pickle_is_pointed_to_the_pickle_importer(tmp_path):
    bad = tmp_path / "x.ckpt"
    bad.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(bad)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        open_model(tmp_path / "nope.ckpt")
    with pytest.raises(CheckpointError, match="a folder without best.ckpt or latest.ckpt"):
        open_model(tmp_path)


def test_weights_that_do_not_fit_the_config_are_named(tmp_path, tiny_cfg):
    other = tiny_config(**{"model.c_dim": 7})
    path = save_checkpoint(tmp_path / "m.ckpt", tiny_cfg, Generator(other.model))
    with pytest.raises(CheckpointError) as exc:
        load_generator(path)
    msg = str(exc.value)
    assert "m.ckpt" in msg and "mapping.embed.weight" in msg and "wrong shape" in msg and one_line(exc)


def test_missing_and_unexpected_keys_are_reported(tiny_cfg):
    sd = Generator(tiny_cfg.model).state_dict()
    sd.pop("mapping.w_avg")
    sd["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="1 missing .e.g. mapping.w_avg.; 1 unexpected .e.g. extra.weight."):
        build_generator(tiny_cfg.model, sd, source="x")


def test_invalid_config_inside_a_checkpoint(tmp_path, tiny_cfg, saved):
    path, G = saved
    payload = torch.load(path, weights_only=True)
    payload["config"]["model"]["triplane"]["resolution"] = "huge"
    bad = tmp_path / "badcfg.ckpt"
    torch.save(payload, bad)
    with pytest.raises(CheckpointError, match="badcfg.ckpt") as exc:
        load_checkpoint(bad)
    assert one_line(exc)


def test_a_run_directory_opens_its_best_or_latest_snapshot(tmp_path, tiny_cfg):
    G = Generator(tiny_cfg.model)
    run = tmp_path / "run"
    save_checkpoint(run / "latest.ckpt", tiny_cfg, G, progress={"kimg": 2.0})
    assert open_model(run).progress["kimg"] == 2.0          # no best yet: latest
    save_checkpoint(run / "best.ckpt", tiny_cfg, G, progress={"kimg": 1.0})
    assert open_model(run).progress["kimg"] == 1.0
    assert open_model(run, latest=True).progress["kimg"] == 2.0
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="without best.ckpt or latest.ckpt"):
        open_model(tmp_path / "empty")


def test_number_lists_parse_ranges_and_reject_nonsense():
    assert parse_int_list("0-3,7", "seeds") == [0, 1, 2, 3, 7]
    assert parse_int_list(" 5 , 2-3, 5", "seeds") == [5, 2, 3]
    for bad, msg in [("a", "not a number"), ("3-1", "backwards"), ("", "expected numbers"), ("-2", "out of range")]:
        with pytest.raises(TriganError, match=msg):
            parse_int_list(bad, "seeds")
    with pytest.raises(TriganError, match="out of range"):
        parse_int_list("0-16", "classes", maximum=15)


def test_convert_slims_a_training_checkpoint_or_run_folder_to_g_ema(tmp_path, tiny_cfg, capsys):
    G, D = Generator(tiny_cfg.model).eval(), Generator(tiny_cfg.model)
    run = tmp_path / "run"
    run.mkdir()
    save_checkpoint(run / "latest.ckpt", tiny_cfg, G, progress={"kimg": 3.0}, G=D, G_opt={"lr": torch.ones(3)})
    for src in (run / "latest.ckpt", run):
        dst = tmp_path / f"slim_{src.name}.ckpt"
        assert main(["convert", str(src), str(dst)]) == 0
        slim = load_checkpoint(dst)
        assert slim.extra == {} and slim.progress["kimg"] == 3.0
        assert all(torch.equal(slim.G_ema[k], v) for k, v in G.state_dict().items())
        assert set(slim.G_ema) == set(G.state_dict())
    assert main(["convert", str(run), str(tmp_path / "x.ckpt"), "--all"]) == 2
    assert "--all is for EpiGRAF" in capsys.readouterr().err
