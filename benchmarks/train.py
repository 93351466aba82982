"""Training speed: images per second and seconds per kimg for a preset (demo by default) on this
machine, measured in one run, with where a step's time goes.

    python benchmarks/train.py                                  # demo preset, synthetic 64^2 data
    python benchmarks/train.py --data shapes.zip --steps 8 training.batch_size=32

Prints one JSON object (machine-readable) and a short summary. A step is a G phase, a D phase and,
every r1_interval steps, an R1 phase; `sec_per_kimg` amortises R1 over its interval.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from trigan.cli.main import main as trigan
from trigan.training import distributed as ddp
from trigan.training.config import load_config
from trigan.training.dataset import open_dataset
from trigan.training.loop import Trainer
from trigan.training.session import fit_config_to_dataset


class PhaseTimer:
    """Wraps the trainer's phases to time them (G render+backward, D, R1)."""

    def __init__(self, trainer: Trainer):
        self.times = {}
        for name in ("render_fakes", "run_D", "step_optimizer", "next_real"):
            original = getattr(trainer, name)
            setattr(trainer, name, self._timed(name, original))

    def _timed(self, name, fn):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - start
            return out
        return wrapper


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--data", help="dataset zip or folder (default: a synthetic one made here)")
    parser.add_argument("--steps", type=int, default=4, help="timed steps without R1 (default 4)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)

    info = ddp.init_distributed(args.device)
    cfg = load_config(args.preset, ["training.num_workers=0", *args.overrides])
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            data = str(Path(tmp) / "synth.zip")
            res = cfg.model.img_resolution
            if trigan(["dataset", "synth", data, "--num", "256", "--resolution", str(res), "--classes",
                       str(max(cfg.model.c_dim, 1)), "--seed", "0"]) != 0:
                return 1
        dataset = open_dataset(data, mirror=cfg.training.mirror, use_labels=cfg.training.use_labels)
        fit_config_to_dataset(cfg, dataset, lambda m: print(m, file=sys.stderr))
        trainer = Trainer(cfg, Path(tmp), dataset, info)
        timer = PhaseTimer(trainer)
        dev = info.device

        trainer.train_step()                       # warm-up (and step 0's R1)
        interval = cfg.training.r1_interval
        plain = []
        timer.times.clear()
        for _ in range(args.steps):
            if interval > 0 and trainer.step % interval == 0:
                trainer.step += 1                  # keep R1 out of the plain steps
            _sync(dev)
            start = time.perf_counter()
            trainer.train_step()
            _sync(dev)
            plain.append(time.perf_counter() - start)
        phases = {k: v / args.steps for k, v in timer.times.items()}
        phases["backward_and_rest"] = max(statistics.median(plain) - sum(phases.values()), 0.0)
        r1_extra = 0.0
        if interval > 0:
            trainer.step = (trainer.step // interval + 1) * interval
            _sync(dev)
            start = time.perf_counter()
            trainer.train_step()
            _sync(dev)
            r1_extra = max(time.perf_counter() - start - statistics.median(plain), 0.0)

    batch = cfg.training.batch_size
    step_s = statistics.median(plain) + (r1_extra / interval if interval > 0 else 0.0)
    result = {
        "preset": args.preset, "device": str(dev), "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
        "batch": batch, "img_resolution": cfg.model.img_resolution, "patch_resolution": cfg.discriminator.patch_resolution,
        "samples_per_ray": cfg.model.render.num_steps + (cfg.model.render.num_fine_steps or cfg.model.render.num_steps),
        "ms_per_step": round(1000 * statistics.median(plain), 1),
        "ms_r1_extra": round(1000 * r1_extra, 1),
        "images_per_sec": round(batch / step_s, 2),
        "sec_per_kimg": round(1000 * step_s / batch, 1),
        "hours_per_100_kimg": round(100 * 1000 * step_s / batch / 3600, 2),
        "ms_per_step_phases": {k: round(1000 * v, 1) for k, v in phases.items()},
    }
    print(json.dumps(result))
    print(f"\n{args.preset} on {dev} ({result['threads']} threads), batch {batch}, "
          f"{result['img_resolution']}^2 images, {result['patch_resolution']}^2 patches: "
          f"{result['images_per_sec']} images/s, {result['sec_per_kimg']} s/kimg "
          f"({result['hours_per_100_kimg']} h per 100 kimg)", file=sys.stderr)
    for name, ms in result["ms_per_step_phases"].items():
        print(f"  {name:16s} {ms:8.1f} ms per step", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
