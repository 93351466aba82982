"""`trigan train`: start, resume, distribute or submit a training run."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

from trigan.cli.flags import float_flag, int_flag
from trigan.core.atomic import atomic_write_text
from trigan.core.config import apply_overrides
from trigan.core.errors import TriganError
from trigan.core.limits import MAX_KIMG
from trigan.training.config import config_from_saved, load_config

# Bounds of the numeric flags (checked while parsing, before anything is read or made). training.kimg
# has the same bound in the config; a billion kimg is far past any schedule.
MAX_NODES = 4096
MAX_GPUS_PER_NODE = 64
MAX_CPUS_PER_TASK = 1024

EPILOG = """\
examples:
  trigan dataset synth shapes.zip --num 4000 --resolution 64 --classes 4
  trigan train --config demo --data shapes.zip --out runs --kimg 200
  trigan train --config epigraf_ffhq512 --data ffhq512.zip --out runs training.gamma=0.1 training.batch_size=32
  trigan train --resume runs/00000-demo-shapes              continue exactly where it stopped
  trigan train --resume runs/00000-demo-shapes --kimg 500   ... and train longer than planned
  trigan train --config demo --data shapes.zip --init runs/00000-demo-shapes/latest.ckpt --kimg 50 \
      training.blur_init_sigma=0     fine-tune: a new run that starts from a checkpoint's weights
  trigan convert network-snapshot-002000.pkl 3dgp.ckpt --all          an upstream 3DGP (or EpiGRAF) run ...
  trigan train --config 3dgp.ckpt --init 3dgp.ckpt --data imagenet256.zip training.distill.features=f.memmap
                                     ... goes on in trigan with its own architecture and recipe
  torchrun --nproc_per_node=4 -m trigan.cli.main train --config epigraf_ffhq512 --data ffhq512.zip --out runs
  trigan train --slurm --nodes 2 --gpus-per-node 4 --partition gpu --submit --config epigraf_ffhq512 --data ffhq512.zip --out runs

Everything (flags, config, dataset, the output folder) is checked before the run directory is made:
a refused run leaves nothing behind, nor does one that fails before its first checkpoint.
A new run starts with a pre-flight check of the config against the data (pose conditioning, yaw
centre, gamma for the patch size, resolution, labels): each warning is one line with its fix,
printed and kept in the run's log.txt; --strict refuses to start instead. A run that
fails later (a full or read-only disk, divergence) says why in one line and in status.json
(phase "failed"); latest.ckpt keeps the last good state.

A run directory holds config.yaml, status.json (phase, kimg, images/s, ETA, losses; polled by the
viewer), stats.jsonl, metrics.jsonl, log.txt, samples/ and latest.ckpt / best.ckpt. Ctrl-C or
SIGTERM stops after the current step and writes latest.ckpt; --resume continues exactly.
Under torchrun the global batch (training.batch_size) is split over the processes and only rank 0
writes. --slurm writes RUN/slurm.sbatch, which runs torchrun on the allocated nodes and resumes the
run, so resubmitting the same script continues it.
"""


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train a model (EpiGRAF recipe) on a dataset; resume, torchrun, SLURM",
        description="Train a tri-plane GAN with EpiGRAF's patch-wise recipe, writing a run directory.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides, e.g. training.gamma=0.1 model.render.num_steps=32")
    p.add_argument("--config", default="demo", metavar="PRESET",
                   help="model and training preset name, YAML file, or a .ckpt whose stored config to use "
                        "(e.g. one converted from an upstream run with `trigan convert --all`; default: demo)")
    p.add_argument("--data", metavar="DATA", help="dataset zip or folder (see `trigan dataset`)")
    p.add_argument("--out", default="runs", metavar="RUNS", help="folder that holds run directories (default: runs)")
    p.add_argument("--kimg", type=float_flag("--kimg", 0, MAX_KIMG, lo_open=True, unit="thousands of images"),
                   metavar="K", help="train until K thousand real images have been shown")
    p.add_argument("--desc", help="a word added to the run directory's name")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its latest.ckpt")
    p.add_argument("--init", metavar="CKPT",
                   help="start a new run from the weights of CKPT (fine-tuning): G and G_ema from it, D too "
                        "when it holds one (a G_ema-only file gives a fresh D); schedules start at 0")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1 ...")
    p.add_argument("--strict", action="store_true",
                   help="refuse to start a new run when the pre-flight check warns (known ways to waste a run: "
                        "pose conditioning off for posed data, yaw not zero-centred, gamma, resolution, labels)")
    slurm = p.add_argument_group("SLURM (write, and with --submit submit, an sbatch script)")
    slurm.add_argument("--slurm", action="store_true", help="prepare the run and write RUN/slurm.sbatch")
    slurm.add_argument("--submit", action="store_true", help="also submit it with sbatch")
    slurm.add_argument("--nodes", type=int_flag("--nodes", 1, MAX_NODES), default=1)
    slurm.add_argument("--gpus-per-node", type=int_flag("--gpus-per-node", 1, MAX_GPUS_PER_NODE), default=1)
    slurm.add_argument("--cpus-per-task", type=int_flag("--cpus-per-task", 1, MAX_CPUS_PER_TASK), default=8)
    slurm.add_argument("--mem", default="64G", help="memory per node (default 64G)")
    slurm.add_argument("--time", default="1-00:00:00", help="time limit (default 1 day)")
    slurm.add_argument("--partition")
    slurm.add_argument("--account")
    slurm.add_argument("--constraint")
    slurm.add_argument("--setup", action="append", default=[], metavar="LINE",
                       help="a shell line run before training on the node, e.g. 'source venv/bin/activate' (repeatable)")
    p.set_defaults(run=run)


def run(args) -> int:
    if args.submit and not args.slurm:
        raise TriganError("--submit goes with --slurm")
    if args.init is not None:
        if args.resume is not None:
            raise TriganError("--init starts a new run from a checkpoint's weights; --resume continues a run: "
                              "pass one of them")
        if not Path(args.init).is_file():
            what = "not a file" if Path(args.init).exists() else "no such checkpoint"
            raise TriganError(f"{args.init}: {what} (--init takes a trigan .ckpt file, e.g. RUN/latest.ckpt)")
    if args.resume is None and args.data is None:
        raise TriganError("pass --data DATA to start a run, or --resume RUN_DIR to continue one")
    if args.slurm:
        return _prepare_slurm(args)
    return _train(args)


def _overrides(args) -> list:
    extra = list(args.overrides)
    if args.kimg is not None:     # bounded by its argparse type
        extra.append(f"training.kimg={args.kimg!r}")
    if args.init is not None:
        extra.append(f"training.init={Path(args.init).resolve()}")
    return extra


def _base_config(config: str, overrides):
    """A preset, a YAML file, or a trigan checkpoint's own config (model, discriminator and
    training recipe: what `trigan convert --all` wrote for an upstream run), plus overrides."""
    if Path(config).suffix != ".ckpt":
        return load_config(config, overrides)
    # This loads torch and the core (see cli/main.py).
    from trigan.core.checkpoint import load_checkpoint  # noqa: PLC0415
    stored = config_from_saved(load_checkpoint(config).config, what=f"{config}: config")
    stored.training.init = None       # the checkpoint's own history; --init sets this run's
    return apply_overrides(stored, overrides, what=config)


def _open_dataset(cfg, data_override=None):
    from trigan.training.dataset import open_dataset  # noqa: PLC0415 (loads torch: see cli/main.py)
    data = data_override or cfg.training.data
    if data_override:
        cfg.training.data = str(data_override)
    return open_dataset(data, mirror=cfg.training.mirror, use_labels=cfg.training.use_labels)


def _prepare(args, info, writer_log=print):
    from trigan.training.run_dir import active_owner, code_version, new_run_dir, write_command  # noqa: PLC0415 (loads torch: see cli/main.py)
    """(cfg, run_dir, dataset, resumed): the run directory made (fresh) or read (resume), after
    everything that can be refused has been checked."""
    # These load torch and the core (see cli/main.py).
    from trigan.training import distributed as ddp  # noqa: PLC0415
    from trigan.training.session import (  # noqa: PLC0415
        check_run_setup,
        fit_config_to_dataset,
        load_run_config,
        save_run_config,
    )

    log = writer_log if info.is_main else (lambda *_: None)
    if args.resume:
        run_dir = Path(args.resume)
        cfg = load_run_config(run_dir, _overrides(args))
        owner = active_owner(run_dir) if info.is_main else None
        if owner:
            raise TriganError(f"{run_dir}: is being trained right now by {owner}; stop it first "
                              "(Ctrl-C or kill -TERM PID writes a checkpoint)")
        dataset = _open_dataset(cfg, args.data)
        fit_config_to_dataset(cfg, dataset, log)
        check_run_setup(cfg, dataset, info)
        if info.is_main:
            save_run_config(run_dir, cfg)
            write_command(run_dir, ["train", *sys.argv[2:]] if sys.argv[1:2] == ["train"] else sys.argv[1:], resumed=True)
        return cfg, run_dir, dataset, True
    cfg = _base_config(args.config, _overrides(args))
    cfg.training.data = str(Path(args.data).resolve()) if Path(args.data).exists() else args.data
    dataset = _open_dataset(cfg)
    _preflight(cfg, args.strict, log if info.is_main else None)     # the config as asked, before fitting
    fit_config_to_dataset(cfg, dataset, log)
    check_run_setup(cfg, dataset, info)
    run_dir = None
    if info.is_main:
        run_dir = new_run_dir(args.out, args.config, args.data, args.desc)
        with discarded_unless_started(run_dir):
            save_run_config(run_dir, cfg)
            write_command(run_dir, sys.argv[1:], resumed=False)
            atomic_write_text(run_dir / "version.json", json.dumps(code_version(), indent=1))
    run_dir = Path(ddp.broadcast_object(info, None if run_dir is None else str(run_dir)))
    return cfg, run_dir, dataset, False


def _preflight(cfg, strict: bool, log) -> None:
    """Known ways to waste a run (training/preflight.py), one line each with the fix: logged as
    "warning: ..." (printed, and kept in the run's log.txt and status.json), or with --strict printed
    as errors and the run refused before anything is written. log is None on the other processes of
    a distributed run: they refuse alike but say nothing."""
    from trigan.training.preflight import dataset_facts, preflight, strict_error  # noqa: PLC0415 (loads torch)

    warnings = preflight(cfg, dataset_facts(cfg.training.data))
    if strict and warnings:
        if log is not None:
            for w in warnings:
                print(f"trigan: error: pre-flight: {w}", file=sys.stderr, flush=True)
        raise TriganError(strict_error(warnings))
    if log is not None:
        for w in warnings:
            log(f"warning: {w}")


@contextmanager
def discarded_unless_started(run_dir):
    """Around the making of a fresh run: if it fails before its first checkpoint (latest.ckpt),
    the run folder goes (it holds nothing but what this command wrote), so that a refused run
    leaves no half-made folder behind. Pass None where this process does not own the folder."""
    try:
        yield
    except BaseException:
        if run_dir is not None and not (Path(run_dir) / "latest.ckpt").exists():
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def _train(args) -> int:
    # These load torch and the core (see cli/main.py).
    from trigan.training import distributed as ddp  # noqa: PLC0415
    from trigan.training.session import Session  # noqa: PLC0415

    info = ddp.init_distributed(args.device)
    notes = []

    def note(line: str) -> None:
        """Printed now, and kept for the run's status.json: a monitor shows what the data changed."""
        print(line, flush=True)
        notes.append(line)

    try:
        cfg, run_dir, dataset, resumed = _prepare(args, info, writer_log=note)
        if info.is_main:
            print(f"run: {run_dir}  ({len(dataset)} images{' with mirrors' if cfg.training.mirror else ''}, "
                  f"{cfg.model.img_resolution}^2, {cfg.model.c_dim} classes; {info.world_size} process(es) on "
                  f"{info.device}; batch {cfg.training.batch_size}; until {cfg.training.kimg:g} kimg)", flush=True)
        with discarded_unless_started(run_dir if info.is_main and not resumed else None):
            phase = Session(cfg, run_dir, info, resume=resumed, notes=notes).run(dataset)
        return 0 if phase in ("done", "stopped") else 1
    finally:
        ddp.shutdown(info)


def _prepare_slurm(args) -> int:
    from trigan.training import distributed as ddp  # noqa: PLC0415 (loads torch: see cli/main.py)
    from trigan.training.run_dir import RunWriter  # noqa: PLC0415 (loads torch: see cli/main.py)
    from trigan.training.slurm import SlurmOptions, sbatch_script, submit, write_sbatch  # noqa: PLC0415 (with run_dir)

    info = ddp.DistInfo()
    opts = SlurmOptions(nodes=args.nodes, gpus_per_node=args.gpus_per_node, cpus_per_task=args.cpus_per_task,
                        mem=args.mem, time=args.time, partition=args.partition, account=args.account,
                        constraint=args.constraint, setup=list(args.setup))
    sbatch_script(["--resume", "RUN"], Path("RUN"), opts)   # refuses bad options before the run is made
    cfg, run_dir, dataset, resumed = _prepare(args, info)
    run_dir = Path(run_dir).resolve()
    opts.job_name = f"trigan-{run_dir.name}"
    with discarded_unless_started(None if resumed else run_dir):
        script = write_sbatch(run_dir / "slurm.sbatch", sbatch_script(["--resume", str(run_dir)], run_dir, opts))
        RunWriter(run_dir, tensorboard=False).update_status(phase="queued", kimg=0.0, total_kimg=cfg.training.kimg,
                                                            run_dir=str(run_dir))
    print(f"run: {run_dir}\nsbatch script: {script}")
    if args.submit:
        job = submit(script)
        print(f"submitted job {job}; follow it in {run_dir / 'status.json'} or with `trigan view {run_dir}`")
    else:
        print(f"submit with: sbatch {script}   (submitting it again later resumes the run)")
    return 0
