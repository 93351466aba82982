"""A training session: set up a run (fresh or resumed), drive the Trainer through ticks, write what
a monitor reads, stop cleanly on a signal, roll back on divergence.

A tick is a progress report every `tick_kimg` thousand images: one line in stats.jsonl and the log,
a status.json update, TensorBoard scalars when installed. Every `snapshot_ticks` ticks (or
`snapshot_minutes`, whichever comes first) latest.ckpt is replaced atomically; metrics, when
configured, pick best.ckpt; sample grids and short orbit videos go to samples/.

However a run ends, status.json says so: "done"; "stopped" (a signal, or a second Ctrl-C that aborts
at once: then its kimg is latest.ckpt's, where --resume continues); "failed" with the one-line
reason (divergence, a full or read-only disk, a bug). latest.ckpt is only ever replaced atomically.
A stop signal makes the phase "stopping" at once; the run finishes its step, logs the partial tick,
writes latest.ckpt and ends "stopped", without the extras of a run's end (metrics, sample grid,
video: minutes on a CPU; a grid or video in progress is given up between batches or frames).
A resume applies the config's optimiser hyper-parameters to the loaded optimisers (logged), drops
the ticks that stats.jsonl logged after the checkpoint (they are trained again) and sweeps the
temporaries of writers that died mid-write.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import torch
from omegaconf import OmegaConf

from trigan.core.atomic import atomic_path, atomic_write_text, sweep_stale_temporaries, writing
from trigan.core.config import config_to_dict
from trigan.core.errors import ConfigError, TriganError, one_line
from trigan.core.images import grid_shape, save_png
from trigan.core.metrics import FeatureExtractor
from trigan.training import distributed as ddp
from trigan.training.config import Config, load_config, validate_config
from trigan.training.dataset import ImageDataset
from trigan.training.evaluation import check_metric_setup, evaluate_metrics
from trigan.training.loop import BEST, LATEST, SNAPSHOTS, Trainer, TrainingDiverged, check_training_setup
from trigan.training.run_dir import RunWriter
from trigan.training.visuals import SampleSet, SamplingStopped, save_reals_grid

STATUS_EVERY_S = 5.0


# -------------------------------------------------------------------------------------------------
# Config <-> run directory

def save_run_config(run_dir: Path, cfg: Config) -> None:
    atomic_write_text(Path(run_dir) / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(config_to_dict(cfg))))


def load_run_config(run_dir: Path, overrides=()) -> Config:
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise TriganError(f"{run_dir}: not a training run (no config.yaml); pass a folder made by `trigan train`")
    # The same reader as a preset file: size-checked, interpolations refused (a run folder may come
    # from elsewhere), then the overrides, all bounds-checked.
    return load_config(str(path), overrides)


def fit_config_to_dataset(cfg: Config, dataset: ImageDataset, log: Callable[[str], None]) -> Config:
    """What the data decides (as upstream): image resolution, number of classes, the mean pose;
    checks that the model's camera prior has what it needs."""
    m, d = cfg.model, cfg.discriminator
    if dataset.resolution != m.img_resolution:
        log(f"note: the images are {dataset.resolution}^2; model.img_resolution {m.img_resolution} -> {dataset.resolution}")
        m.img_resolution = dataset.resolution
        d.num_additional_start_blocks = max(0, int(round(math.log2(dataset.resolution / d.patch_resolution))))
    if d.patch_resolution > m.img_resolution:
        raise ConfigError(f"discriminator.patch_resolution={d.patch_resolution} is larger than the "
                          f"{m.img_resolution}^2 images")
    classes = dataset.num_classes if (cfg.training.use_labels and dataset.has_labels) else 0
    if classes != m.c_dim:
        log(f"note: the dataset has {classes} classes{'' if cfg.training.use_labels else ' in use'}; "
            f"model.c_dim {m.c_dim} -> {classes}")
        m.c_dim = classes
        names = list(dataset.meta.get("class_names") or [])
        m.class_names = names if len(names) == classes else []
    elif not m.class_names and dataset.meta.get("class_names") and len(dataset.meta["class_names"]) == classes:
        m.class_names = list(dataset.meta["class_names"])
    if m.camera.dist == "custom" or d.camera_cond or m.mapping.camera_cond:
        if not dataset.has_camera_angles:
            raise ConfigError(f"{dataset.path}: has no camera_angles in dataset.json, but model.camera.dist="
                              f"{m.camera.dist!r}{' and pose conditioning' if d.camera_cond or m.mapping.camera_cond else ''} "
                              "need them; use a dataset with poses or set model.camera.dist to a prior")
        m.camera.mean_pose = [float(v) for v in dataset.mean_camera_pose()]
    # The data changed sizes (resolution, classes): the bounds and the memory check apply to the result.
    return validate_config(cfg, what=f"the config fitted to {dataset.path}")


def check_run_setup(cfg: Config, dataset: ImageDataset, info: ddp.DistInfo) -> None:
    """Everything about a run that can be refused before anything is built or written (`trigan
    train` calls it before it makes the run folder; Session.run again)."""
    check_metric_setup(list(cfg.training.metrics), cfg.training.inception)
    check_training_setup(cfg, dataset, info.world_size)


# -------------------------------------------------------------------------------------------------

class Session:
    def __init__(self, cfg: Config, run_dir: Path, info: ddp.DistInfo, resume: bool,
                 progress_every_step: bool = False, notes: Sequence[str] = ()):
        """notes: what the setup changed that a person should see beside the run (e.g. the
        resolution the dataset imposed); they go to status.json and log.txt."""
        self.cfg, self.run_dir, self.info, self.resume = cfg, Path(run_dir), info, resume
        self.notes = [str(n) for n in notes]
        self.writer = RunWriter(self.run_dir, enabled=info.is_main)
        self.progress_every_step = progress_every_step
        self._stop_signal: Optional[str] = None
        self._aborting = False   # a second Ctrl-C is ending the run: further ones wait for that
        self._checkpoint_kimg: Optional[float] = None   # what latest.ckpt holds (where a resume continues)
        self._extractor = None   # the metrics' feature network, loaded at the first evaluation

    # -- signals ----------------------------------------------------------------------------------
    def _on_signal(self, signum, frame):
        if os.getpid() != self._pid:
            return  # a data-loading worker forked with this handler: the main process decides
        name = signal.Signals(signum).name
        if self._aborting:
            return  # a third Ctrl-C would cut short the status that the second one is writing
        if self._stop_signal is not None and signum == signal.SIGINT:
            self._aborting = True
            raise KeyboardInterrupt  # a second Ctrl-C: stop now, the last checkpoint stays
        self._stop_signal = name
        if self.info.is_main:
            print(f"{name}: stopping after this step and writing a checkpoint (Ctrl-C again to abort)", flush=True)
        self.writer.announce_stopping()

    @property
    def stopping(self) -> bool:
        """A stop was asked for (this process's signal): the run is on its way out."""
        return self._stop_signal is not None

    def _install_signals(self):
        self._pid = os.getpid()
        previous = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                previous[sig] = signal.signal(sig, self._on_signal)
            except ValueError:  # not the main thread (e.g. a test harness): no handlers
                pass
        return previous

    # -- helpers ----------------------------------------------------------------------------------
    def log(self, message: str) -> None:
        self.writer.log(message)

    def _last_word(self, line: str, **status) -> None:
        """The final status and log line of a run that is failing or aborting: best effort, since
        the disk may be what failed (the command's own error line still says why)."""
        self.writer.final_status(**status)
        try:
            self.writer.log(line)
        except OSError:
            pass

    def _sample_set(self, trainer: Trainer):
        num = max(1, self.cfg.training.samples)
        rows, cols = grid_shape(num, self.cfg.model.img_resolution)
        poses = trainer.conditioning.angles
        idx = torch.linspace(0, len(poses) - 1, num).round().long()
        angles = poses[idx] if self.cfg.model.camera.dist == "custom" else None
        return SampleSet.create(trainer.G_ema, num, seed=self.cfg.training.seed, camera_angles=angles,
                                rows=rows, cols=cols)

    def _save_samples(self, trainer: Trainer, video: bool) -> None:
        """The sample grid (and the orbit video) of G_ema now. Pictures are extras: a stop asked for
        meanwhile gives them up at once (between batches or frames, leaving no file), since a grid
        and a video of the demo model take minutes on a CPU and the person is waiting for the stop."""
        if not self.info.is_main or self.stopping:
            return
        kimg = trainer.cur_nimg / 1000
        self.writer.update_status(phase="sampling")
        path = self.run_dir / "samples" / f"fakes_{int(round(kimg * 1000)):09d}.png"
        try:
            grid = self._samples.render_grid(trainer.G_ema, batch=8, stop=lambda: self.stopping)
            with writing(path):
                save_png(grid, path)
            self.writer.update_status(last_sample=str(path.relative_to(self.run_dir)))
            if video:
                vpath = path.with_suffix(".mp4")
                with writing(vpath):
                    self._samples.render_orbit_video(trainer.G_ema, vpath, frames=32, fps=16, batch=8,
                                                     stop=lambda: self.stopping)
                self.writer.update_status(last_video=str(vpath.relative_to(self.run_dir)))
        except SamplingStopped:
            self.log(f"stopping: skipped the samples of kimg {kimg:.3f}")

    def _save_reals(self, dataset: ImageDataset) -> None:
        num = max(1, self.cfg.training.samples)
        rows, cols = grid_shape(num, self.cfg.model.img_resolution)
        idx = np.linspace(0, len(dataset.names) - 1, min(num, len(dataset.names))).round().astype(int)
        images = torch.stack([dataset[int(i)]["image"] for i in idx])
        if len(images) < rows * cols:
            images = torch.cat([images, torch.zeros(rows * cols - len(images), *images.shape[1:], dtype=images.dtype)])
        path = self.run_dir / "samples" / "reals.png"
        with writing(path):
            save_reals_grid(images, path, rows, cols)

    def _evaluate(self, trainer: Trainer) -> Dict[str, float]:
        names = list(self.cfg.training.metrics)
        if not names:
            return {}
        self.writer.update_status(phase="evaluating")
        results = {}
        if self.info.is_main:
            if self._extractor is None:
                self._extractor = FeatureExtractor.load(self.cfg.training.inception, device=trainer.G_ema.device)
            results = evaluate_metrics(trainer.G_ema, trainer.dataset, names, self._extractor,
                                       cache_dir=self.run_dir / "cache", seed=self.cfg.training.seed)
            record = {"kimg": trainer.cur_nimg / 1000, **results}
            self.writer.append_jsonl("metrics.jsonl", record)
            self.writer.scalars({f"Metrics/{k}": v for k, v in results.items()}, trainer.cur_nimg / 1000)
            self.log("metrics: " + ", ".join(f"{k} {v:.3f}" for k, v in results.items()))
        return ddp.broadcast_object(self.info, results)

    def _checkpoint(self, trainer: Trainer, metrics: Dict[str, float]) -> None:
        self.writer.update_status(phase="checkpointing")
        improved = trainer.record_metrics(metrics)
        trainer.save(self.run_dir / LATEST)
        self._checkpoint_kimg = trainer.cur_nimg / 1000
        if self.cfg.training.keep_snapshots:
            # snapshots/snapshot_<images seen>.ckpt: a moment of the run that can be viewed, exported
            # or branched from after latest.ckpt has moved on.
            self._copy_latest(Path(SNAPSHOTS) / f"snapshot_{trainer.cur_nimg:09d}.ckpt")
        if improved:
            self._copy_latest(Path(BEST))
            self.log(f"best {self.cfg.training.metrics[0]} so far: {trainer.best_metric:.3f} -> {BEST}")
        trainer.note_good_checkpoint()
        self._last_snapshot_time = time.time()

    def _copy_latest(self, name: Path) -> None:
        """RUN/name: a copy of the latest.ckpt just written (bytes, not a link: replacing latest later
        never touches the copy), written atomically by the main process."""
        if self.info.is_main:
            path = self.run_dir / name
            path.parent.mkdir(exist_ok=True)
            with atomic_path(path, durable=True) as tmp:
                shutil.copyfile(self.run_dir / LATEST, tmp)
        ddp.barrier(self.info)

    def _rollback(self, trainer: Trainer, why: str) -> None:
        failures = trainer.note_divergence()
        limit = self.cfg.training.max_rollbacks
        if failures > limit:
            raise TrainingDiverged(f"training diverged ({why}) {failures} times in a row after "
                                   f"rolling back to {self.run_dir / LATEST}; giving up (training.max_rollbacks="
                                   f"{limit}); try a lower learning rate or a larger gamma")
        self.writer.update_status(phase="rolling_back")
        kimg_was = trainer.cur_nimg / 1000
        trainer.roll_back(self.run_dir / LATEST)
        self._drop_records_after_checkpoint(trainer, announce=False)   # the rollback line says it
        self.log(f"rollback {failures}/{limit}: {why} at kimg {kimg_was:.1f}; restored {LATEST} "
                 f"(kimg {trainer.cur_nimg / 1000:.1f}) and continue with new random draws")
        self.writer.append_jsonl("stats.jsonl", {"event": "rollback", "reason": why, "kimg": kimg_was,
                                                 "restored_kimg": trainer.cur_nimg / 1000})

    # -- the run ----------------------------------------------------------------------------------
    def run(self, dataset: ImageDataset, step_hook: Optional[Callable[[Trainer], None]] = None) -> str:
        """Train to training.kimg or until stopped. Returns the final phase ('done' or 'stopped').
        A failure sets phase "failed" (with its one-line reason) and is raised on; a second Ctrl-C
        sets "stopped" and raises KeyboardInterrupt."""
        check_run_setup(self.cfg, dataset, self.info)
        trainer = Trainer(self.cfg, self.run_dir, dataset, self.info, self.writer)
        self.trainer = trainer
        previous = {}
        try:
            # Before _start: a Stop while the run starts (loading, the first checkpoint and grid take
            # a while) is a clean stop too, not a kill that leaves the phase "starting".
            previous = self._install_signals()
            self._start(trainer, dataset)
            phase = self._train_loop(trainer, step_hook)
            kimg = trainer.cur_nimg / 1000
            if phase == "done":
                self.log(f"done: {kimg:.3f} kimg in {format_clock_duration(trainer.train_seconds)}")
                self.writer.update_status(phase=phase, kimg=kimg, eta_seconds=0, message=None)
            else:
                self.writer.update_status(phase=phase, kimg=kimg, eta_seconds=None,
                                          message=f"stopped by {self._stop_signal or 'another process'} at kimg "
                                                  f"{kimg:.3f} of {self.cfg.training.kimg:g}; resume continues it")
            return phase
        except KeyboardInterrupt:
            self._aborting = True
            self._on_abort(trainer)
            raise
        except Exception as exc:
            # Also a bug's: the monitor must not show a dead run as training (its traceback stays).
            self._last_word(f"failed: {one_line(exc)}", phase="failed", message=one_line(exc))
            raise
        finally:
            trainer.close_data()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.writer.close()

    def _on_abort(self, trainer: Trainer) -> None:
        """A second Ctrl-C (or one before the handlers are in place): the run ends now, without a new
        checkpoint; status.json says where a resume continues."""
        held = self._checkpoint_kimg
        where = (f"{LATEST} holds kimg {held:.3f}, where --resume continues" if held is not None
                 else f"no {LATEST} was written")
        message = f"aborted by Ctrl-C at kimg {trainer.cur_nimg / 1000:.3f}; {where}"
        fields = {"phase": "stopped", "message": message, "eta_seconds": None}
        if held is not None:
            fields["kimg"] = held
        self._last_word(message, **fields)

    def _start(self, trainer: Trainer, dataset: ImageDataset) -> None:
        """Sweep what killed writers left, load latest.ckpt (resume) or the init weights, write the
        first checkpoint of a fresh run."""
        t = self.cfg.training
        latest = self.run_dir / LATEST
        if self.info.is_main:
            self._sweep_temporaries()
        # Rank 0 decides what exists: another rank looking a moment later could see the file
        # rank 0 has just written and take a different path (and miss a collective).
        has_latest = ddp.broadcast_object(self.info, latest.is_file())
        if self.resume and has_latest:
            trainer.load(latest)
            self._checkpoint_kimg = trainer.cur_nimg / 1000
            self.log(f"resumed from {latest} at kimg {trainer.cur_nimg / 1000:.3f} (step {trainer.step})")
            for change in trainer.optimizer_changes:
                self.log(f"resume: {change}")
            self._drop_records_after_checkpoint(trainer)
            if trainer.widened_inputs:
                old, new = trainer.widened_inputs
                self.log(f"D's input widened from {old} to {new} channels: the new channel's weights start "
                         "at 0 and D learns to read it from here on")
            if trainer.fresh_outline_d:
                self.log("the outline D (training.outline) is new to this run: it starts untrained here")
        elif t.init:
            # Only a run's first start takes the init weights; from then on latest.ckpt holds its own.
            self.log(trainer.init_from(Path(t.init)))
        self.writer.update_status(phase="starting", kimg=trainer.cur_nimg / 1000, total_kimg=t.kimg,
                                  world_size=self.info.world_size, device=str(self.info.device),
                                  run_dir=str(self.run_dir), started_at=time.time(), message=None,
                                  img_resolution=self.cfg.model.img_resolution, notes=self.notes)
        for note in self.notes:
            self.writer.log(note, echo=False)     # `trigan train` printed them already
        if self.info.is_main:
            self._samples = self._sample_set(trainer)
            if not (self.run_dir / "samples" / "reals.png").exists():
                self._save_reals(dataset)
        if not has_latest:
            trainer.save(latest)   # the first good state: what a divergence rolls back to
            self._checkpoint_kimg = trainer.cur_nimg / 1000
            self._save_samples(trainer, video=False)
        self._last_snapshot_time = time.time()

    def _sweep_temporaries(self) -> None:
        """Temporaries of atomic writes that a kill interrupted (the files they were replacing are
        intact); those of a writer still alive stay."""
        swept = []
        for folder in (self.run_dir, self.run_dir / SNAPSHOTS, self.run_dir / "samples"):
            swept += sweep_stale_temporaries(folder)
        if swept:
            self.log(f"removed {len(swept)} temporary file(s) of writes cut short by a kill: "
                     + ", ".join(p.name for p in swept[:3]) + (" ..." if len(swept) > 3 else ""))

    def _drop_records_after_checkpoint(self, trainer: Trainer, announce: bool = True) -> None:
        """stats.jsonl and metrics.jsonl without what was logged after the checkpoint just loaded:
        those ticks are trained again and logged anew, so that each is in the file once."""
        nimg = trainer.cur_nimg

        def after_tick(record) -> bool:
            tick = record.get("tick")
            return isinstance(tick, int) and not isinstance(tick, bool) and tick > trainer.tick

        def after_images(record) -> bool:
            kimg = record.get("kimg")
            return (isinstance(kimg, (int, float)) and not isinstance(kimg, bool) and math.isfinite(kimg)
                    and round(kimg * 1000) > nimg)

        dropped = self.writer.drop_records("stats.jsonl", after_tick)
        dropped_metrics = self.writer.drop_records("metrics.jsonl", after_images)
        if announce and (dropped or dropped_metrics):
            self.log(f"dropped {dropped} line(s) of stats.jsonl and {dropped_metrics} of metrics.jsonl logged after "
                     f"kimg {nimg / 1000:.3f}: those ticks are trained again")

    def _train_loop(self, trainer: Trainer, step_hook) -> str:
        """Steps and ticks until training.kimg or a stop signal; returns "done" or "stopped"."""
        t = self.cfg.training
        total_nimg = int(round(t.kimg * 1000))
        phase = "training"
        tick_start_nimg, tick_start_time = trainer.cur_nimg, time.time()
        last_status = 0.0
        sums: Dict[str, float] = {}
        count = 0
        self.writer.update_status(phase="training")
        while trainer.cur_nimg < total_nimg:
            if count == 0 and ddp.any_true(self.info, self.stopping):
                # Asked to stop between steps (while the run started, or during a tick's samples or
                # checkpoint): no step is in progress, so none is begun; the state is checkpointed.
                self.writer.stopping = True
                if self._checkpoint_kimg != trainer.cur_nimg / 1000:
                    self._checkpoint(trainer, {})
                self._log_stopped(trainer)
                return "stopped"
            step_start = time.time()
            if step_hook is not None:
                step_hook(trainer)
            losses = trainer.train_step()
            trainer.add_train_time(time.time() - step_start)
            bad = not all(math.isfinite(v) for v in losses.values())
            if ddp.any_true(self.info, bad):
                self._rollback(trainer, "non-finite loss " + ", ".join(f"{k}={v}" for k, v in losses.items()
                                                                       if not math.isfinite(v)))
                tick_start_nimg, tick_start_time, sums, count = trainer.cur_nimg, time.time(), {}, 0
                continue
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + v
            count += 1

            done = trainer.cur_nimg >= total_nimg
            stop = ddp.any_true(self.info, self.stopping)
            if stop:
                self.writer.stopping = True      # also when another process got the signal
            tick_done = trainer.cur_nimg >= tick_start_nimg + t.tick_kimg * 1000
            now = time.time()
            rate = (trainer.cur_nimg - tick_start_nimg) / max(now - tick_start_time, 1e-9)
            if now - last_status > STATUS_EVERY_S or self.progress_every_step:
                last_status = now
                self.writer.update_status(
                    phase="training", kimg=trainer.cur_nimg / 1000, step=trainer.step, images_per_sec=rate,
                    eta_seconds=eta_seconds(total_nimg - trainer.cur_nimg, rate),
                    losses={k: v / count for k, v in sums.items()}, rollbacks=trainer.rollbacks)
            # A run's last stretch is a tick of its own, however short (a run shorter than one tick
            # still gets its line in stats.jsonl, and its curves a point).
            if not (tick_done or done or stop):
                continue

            # ---- end of a tick --------------------------------------------------------------
            if ddp.any_true(self.info, not trainer.weights_finite()):
                self._rollback(trainer, "non-finite weights")
                tick_start_nimg, tick_start_time, sums, count = trainer.cur_nimg, time.time(), {}, 0
                continue
            trainer.end_tick()
            elapsed = now - tick_start_time
            kimg = trainer.cur_nimg / 1000
            means = {k: v / max(count, 1) for k, v in sums.items()}
            record = {"tick": trainer.tick, "kimg": kimg, "step": trainer.step, "time": trainer.train_seconds,
                      "sec_per_tick": elapsed, "sec_per_kimg": elapsed / max((trainer.cur_nimg - tick_start_nimg) / 1000, 1e-9),
                      "images_per_sec": rate, **means, **trainer.schedules(),
                      "cpu_mem_gb": _cpu_mem_gb(), "gpu_mem_gb": _gpu_mem_gb(self.info.device),
                      "rollbacks": trainer.rollbacks}
            self.writer.append_jsonl("stats.jsonl", record)
            self.writer.scalars({f"Loss/{k}": v for k, v in means.items()}, kimg)
            self.writer.scalars({f"Progress/{k}": v for k, v in trainer.schedules().items()}, kimg)
            self.writer.scalars({"Timing/images_per_sec": rate}, kimg)
            eta = eta_seconds(total_nimg - trainer.cur_nimg, rate)
            self.log(f"tick {trainer.tick:<4d} kimg {kimg:8.3f}  {rate:7.1f} img/s  "
                     + "  ".join(f"{k} {v:.3f}" for k, v in means.items())
                     + f"  eta {format_clock_duration(eta)}")

            # The end of a finished run has its metrics, samples and video; a stopped one only its
            # checkpoint: the person who asked for the stop waits for it, and the extras of the demo
            # model on a CPU (a grid and a 32-frame video) took minutes.
            final = done or stop
            metrics = {}
            if t.metrics and not stop and (final or trainer.tick % max(t.metric_ticks, 1) == 0):
                metrics = self._evaluate(trainer)
            # Wall time differs between processes: agree, since saving is collective.
            snapshot_due = ddp.any_true(self.info, trainer.tick % max(t.snapshot_ticks, 1) == 0
                                        or time.time() - self._last_snapshot_time > t.snapshot_minutes * 60)
            if final or snapshot_due or metrics:
                self._checkpoint(trainer, metrics)
            if not stop and (final or trainer.tick % max(t.image_ticks, 1) == 0):
                video = t.video_ticks > 0 and (final or trainer.tick % t.video_ticks == 0)
                self._save_samples(trainer, video=video)
            self.writer.update_status(phase="training", kimg=kimg, step=trainer.step, images_per_sec=rate,
                                      eta_seconds=eta, losses=means, last_metric=trainer.last_metric or None,
                                      best_metric=trainer.best_metric, rollbacks=trainer.rollbacks)
            tick_start_nimg, tick_start_time, sums, count = trainer.cur_nimg, time.time(), {}, 0
            if stop and not done:
                phase = "stopped"
                self._log_stopped(trainer)
                break
        return "done" if phase == "training" else phase

    def _log_stopped(self, trainer: Trainer) -> None:
        self.log(f"stopped by {self._stop_signal or 'another process'} at kimg {trainer.cur_nimg / 1000:.3f}; "
                 f"resume with: trigan train --resume {self.run_dir}")


def eta_seconds(remaining_nimg: float, images_per_sec: float) -> Optional[float]:
    """Seconds until the run's last image at this speed; None while the speed is unknown. The last
    step overshoots the total by up to a batch: nothing is left then, not a negative time (which
    read "-1d 23h59m")."""
    if not (math.isfinite(images_per_sec) and images_per_sec > 0):
        return None
    return max(0.0, float(remaining_nimg)) / images_per_sec


def format_clock_duration(s: Optional[float]) -> str:
    """Seconds as the run's log shows a duration or an ETA, to the second below a day ("0h07m05s")
    and to the minute above ("1d 01h01m"); "unknown" for None, a negative or a non-finite value.
    (core.summary.format_duration is the shorter form of the viewer and `trigan info`.)"""
    if s is None or not math.isfinite(s) or s < 0:
        return "unknown"
    s = int(s)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return f"{d}d {h:02d}h{m:02d}m" if d else f"{h:d}h{m:02d}m{s:02d}s"


def _cpu_mem_gb() -> float:
    try:
        import resource  # noqa: PLC0415 (Unix only)
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    except ImportError:
        return float("nan")


def _gpu_mem_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 30
    return 0.0
