"""Stage ``train``: the prepared data set -> one self-contained checkpoint.

    python -m pipeline.train --data data/prepared/dogs64.npz --out models/checkpoint.pt
    torchrun --nproc_per_node 4 -m pipeline.train ...        # several GPUs, same command

Trains the model that ``params.yaml`` names (``train.model``), on the CPU, one GPU or several.
The data set is small (22k x 64 x 64 x 3 bytes), so it lives in memory on the training device and
batches are drawn there, with no DataLoader. Losses go to dvclive (``dvc plots show``), a fixed-seed
sample grid is written every ``sample_every`` steps, and the checkpoint every ``checkpoint_every``
steps and at the end; ``--resume`` continues a killed run from its last checkpoint. With ``train.time_budget_min``
the run measures its speed first and, where the epochs would not fit, plans the steps that do (growth and cosine
cycles laid over them, see ``pipeline.plan``); ``train.epochs: auto`` asks for as many as fit. With
``train.eval_every > 0`` the EMA generator's samples are scored with MiFID every that many steps as the score
stage scores (the network, eps and reference of the ``score`` section: ``--photos`` for Kaggle's reference,
the training set itself for ``crops``; reference statistics cached where the score stage caches them), the
numbers go to dvclive, and the best checkpoint by MiFID is kept in ``--best``.

This module is the loop and the command line; the parts are in ``pipeline/training/``: the step (``step.py``:
``d_step``, ``g_step``), the run and its start (``run.py``), the plan and the time budget (``budget.py``), sample
grids and in-training MiFID (``monitor.py``), resuming (``resume.py``).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from tqdm import tqdm

from pipeline.checkpoint import CheckpointError
from pipeline.config import (ConfigError, TrainConfig, add_config_arguments, config_from_args, epochs_need_budget,
                             load_config, read_params, recipe_of, sample_grid_warning)
from pipeline.errors import error_text
from pipeline.files import Dataset, ensure_writable, load_dataset, require_competition_size
from pipeline.metrics.features import FeatureNetworkError
from pipeline.plan import share_at
from pipeline.runtime import Runtime, setup_runtime
from pipeline.training.budget import due, out_of_time, plan_to_budget, replan, replan_due, run_epochs
from pipeline.training.monitor import EvalSettings, write_progress
from pipeline.training.run import start_run
from pipeline.training.step import as_floats, set_progress, train_step


def train(
    ds: Dataset,
    cfg: TrainConfig,
    out: Path,
    rt: Runtime,
    *,
    resume: bool = False,
    live_dir: Path | None = None,
    logger=None,
    samples_dir: Path | None = None,
    evaluation: EvalSettings | None = None,
    progress: bool = True,
    recipe: str = "",
) -> dict:
    """The stage's core. Trains the steps of the run's plan: what ``cfg.epochs`` asks for, or with a time budget
    (``cfg.time_budget_min``) what fits in it, measured before training (:func:`plan_to_budget`); the budget's
    last-resort stop (:func:`out_of_time`) ends a run whose plan turned out too long after all.

    Numbers are logged with dvclive into ``live_dir``, or into ``logger`` when given: any object with
    dvclive's ``step`` attribute, ``log_metric(name, value)``, ``log_image(name, picture)``, ``summary``
    dict and ``end()`` (the Kaggle kernel, which has no dvclive, passes one). Only rank 0 logs. ``recipe``: the
    name of the recipe ``cfg`` came from, kept in the checkpoint so that the leaderboard can name it.

    ``evaluation`` (and ``cfg.eval_every > 0``): MiFID every ``eval_every`` steps and at the end, the best
    checkpoint in ``evaluation.best_out``. Returns a summary: steps done and planned, epochs done and planned,
    whether the plan was fitted to the budget and whether the budget stopped it, images/s (real images read by
    D: batch_size x d_steps per step and process), last losses, and the best MiFID and its step when evaluating.
    Raises ConfigError for ``epochs: auto`` without a budget, :class:`TimeBudgetError` for a budget too small,
    before any checkpoint is written.
    """
    t_start = time.monotonic()
    epochs_need_budget(cfg)
    run = start_run(ds, cfg, out, rt, resume=resume, samples_dir=samples_dir, evaluation=evaluation, recipe=recipe,
                    progress=progress)
    run.t_start = t_start
    budget_s = cfg.time_budget_min * 60 if cfg.time_budget_min > 0 else math.inf
    if budget_s < math.inf and (run.plan is None or run.step < run.steps):
        plan_to_budget(run, budget_s)
    if rt.is_main:
        if samples_dir and (warning := sample_grid_warning(run.steps, cfg.sample_every)):
            print(f"warning: {warning}", file=sys.stderr)
        if cfg.ema_decay > 0 and cfg.ema_start >= run.steps:
            print(f"warning: train.ema_start {cfg.ema_start} is not below the run's {run.steps} steps: the EMA "
                  "generator will be a plain copy of G (lower train.ema_start, or set it to 0)", file=sys.stderr)
        run.live = logger if logger is not None else _open_live(live_dir, resume and run.step > 0) if live_dir else None
    bar = tqdm(total=run.steps, initial=run.step, desc=f"train {cfg.model}", unit="step",
               disable=not (progress and rt.is_main))
    stopped_by_budget = False
    images_seen, t_loop, last = 0, time.monotonic(), {}
    try:
        while run.step < run.steps:
            # the evaluation the next step would end with, the last step's included (it scores the final G)
            next_eval_s = run.eval_s if run.eval_due(run.step + 1) else 0.0
            over = out_of_time(time.monotonic() - t_start, run.step_s, run.checkpoint_s, next_eval_s, budget_s)
            # under DDP every rank must stop at the same step (else the others wait in a collective forever);
            # the checkpoint and evaluation times are rank 0's, so the ranks ask each other: only with a budget
            if budget_s < math.inf and rt.any_process(over):
                stopped_by_budget = True
                break
            t0 = time.monotonic()
            set_progress(run.p, run.step / run.steps)
            last = train_step(run.p, run.data, cfg, rt, run.step)
            run.step += 1
            took = time.monotonic() - t0
            run.step_s = 0.9 * run.step_s + 0.1 * took if run.step_s else took
            images_seen += cfg.batch_size * cfg.d_steps * rt.world_size
            bar.update(1)
            if due(run.step, cfg.log_every, run.steps):
                run.log(last, images_seen / max(1e-9, time.monotonic() - t_loop), bar)
            if run.costs is not None:  # the step as taken (logging included), and as the measured costs expect it
                run.taken_s += time.monotonic() - t0
                run.expected_s += run.costs.share_s[share_at(run.step - 1, run.steps, len(run.costs.share_s))]
                run.steps_taken += 1
            if run.samples_dir and due(run.step, cfg.sample_every, run.steps):
                run.sample()
            if run.eval_due(run.step):
                run.evaluate(bar)
            if rt.is_main and run.step % cfg.checkpoint_every == 0 and run.step < run.steps:
                run.checkpoint()
            if run.costs is not None and run.step < run.steps and replan_due(run):
                replan(run, budget_s)
                bar.total = run.steps
    finally:
        bar.close()
    set_progress(run.p, min(1.0, run.step / run.steps))
    if rt.is_main:
        run.checkpoint()
        if run.samples_dir:
            if stopped_by_budget and run.step % cfg.sample_every != 0:  # stopped between grids: where it stopped
                run.sample(log=False)
            write_progress(run.samples_dir)
    rt.barrier()
    summary = {
        "steps": run.step,
        "total_steps": run.steps,
        "epochs_asked": cfg.epochs,
        "planned_epochs": run_epochs(run, run.steps),
        "epochs_done": run_epochs(run, run.step),
        "fitted_to_budget": run.plan.fitted,
        "stopped_by_time_budget": stopped_by_budget,
        "seconds": round(time.monotonic() - t_start, 1),
        "images_per_s": round(images_seen / max(1e-9, time.monotonic() - t_loop), 1),
        "device": str(rt.device),
        "precision": rt.precision,
        "world_size": rt.world_size,
        **{k: round(v, 4) for k, v in as_floats(last).items()},
    }
    if run.ev is not None:
        summary.update(best_mifid=run.ev.best_mifid, best_step=run.ev.best_step, eval_seconds=round(run.eval_total_s, 1))
    if run.live is not None:
        for k in ("steps", "images_per_s", "planned_epochs", "epochs_done", "fitted_to_budget"):
            run.live.summary[k] = summary[k]
        # dvclive's end() takes its step from the summary, which a resumed Live read from the killed run's files
        run.live.summary["step"] = run.live.step = run.step
        run.live.end()
    return summary


def summary_line(summary: dict) -> str:
    """What a run did, in a line: steps and epochs done of those planned, whether the plan was fitted to the time
    budget and whether the budget's last-resort stop ended it, time and speed."""
    fitted = ", fitted to the time budget" if summary["fitted_to_budget"] else ""
    stopped = " (stopped by the time budget)" if summary["stopped_by_time_budget"] else ""
    return (f"{summary['steps']}/{summary['total_steps']} steps ({summary['epochs_done']:g} of "
            f"{summary['planned_epochs']:g} planned epochs{fitted}){stopped} in {summary['seconds']} s, "
            f"{summary['images_per_s']} images/s on {summary['device']} ({summary['precision']})")


def _open_live(live_dir: Path, resume: bool):
    """dvclive logger; imported lazily so the kernel (no dvclive on Kaggle) can train without it."""
    try:
        from dvclive import Live
    except ImportError:
        print("note: dvclive is not installed; losses are not logged", file=sys.stderr)
        return None
    return Live(str(live_dir), resume=resume, save_dvc_exp=False, dvcyaml=None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.train",
        description="Train the GAN that params.yaml names (train.model) on the prepared data set and write one "
        "self-contained checkpoint. Runs on the CPU, one GPU, or several under `torchrun -m pipeline.train`.",
    )
    parser.add_argument("--data", required=True, metavar="FILE.npz", help="prepared data set (pipeline.prepare)")
    parser.add_argument("--out", required=True, metavar="CHECKPOINT", help="checkpoint to write (e.g. models/checkpoint.pt)")
    parser.add_argument("--live", metavar="DIR", help="dvclive folder for losses and sample grids (e.g. dvclive)")
    parser.add_argument("--samples", metavar="DIR", help="folder for the fixed-seed sample grids (step_NNNNNNN.png)")
    parser.add_argument("--best", metavar="CHECKPOINT",
                        help="where the best checkpoint by in-training MiFID goes (train.eval_every > 0; "
                        "default: best.pt beside --out)")
    parser.add_argument("--cache", default="data/reference", metavar="DIR",
                        help="cache of the reference statistics for the in-training MiFID, shared "
                        "with the score stage (default: %(default)s)")
    parser.add_argument("--photos", metavar="FILE.npz",
                        help="the photo reference (pipeline.reference), for the in-training MiFID when "
                        "score.reference is photos (with crops the reference is --data)")
    parser.add_argument("--resume", action="store_true", help="continue from --out if it exists")
    parser.add_argument("--device", default="auto", help="auto (GPU if any), cpu, cuda or cuda:N (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_arguments(parser, "train")
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args, "train")
        recipe = recipe_of(read_params(args.params, quiet=True))
        epochs_need_budget(cfg)
        # MiFID during training (train.eval_every > 0): the score section says how to score
        score_cfg = load_config("score", args.params)
        photos = None
        if cfg.eval_every > 0 and score_cfg.reference == "photos":  # loaded now: a missing file fails before training
            from pipeline.reference_set import load_reference

            photos = load_reference("photos", args.photos, None)
        evaluation = EvalSettings(score_cfg, Path(args.cache),
                                  Path(args.best) if args.best else Path(args.out).with_name("best.pt"), photos)
        ds = load_dataset(args.data)
        require_competition_size(ds, args.data, "training (every model generates 64x64 images)")
        # before any training: a checkpoint path that cannot be written would otherwise lose the whole run
        ensure_writable(args.out)
        rt = setup_runtime(cfg.precision, cfg.channels_last, args.device)
    except (ConfigError, ValueError, OSError, RuntimeError) as exc:
        print(f"error: {error_text(exc)}", file=sys.stderr)
        return 2
    try:
        summary = train(
            ds, cfg, Path(args.out), rt, resume=args.resume,
            live_dir=Path(args.live) if args.live else None,
            samples_dir=Path(args.samples) if args.samples else None,
            evaluation=evaluation, progress=not args.no_progress, recipe=recipe,
        )
    # OSError: a sample grid or dvclive folder that cannot be written, a full disk; TimeBudgetError (a ConfigError):
    # a budget too small for the speed measured
    except (CheckpointError, ConfigError, FeatureNetworkError, OSError) as exc:
        print(f"error: {error_text(exc)}", file=sys.stderr)
        return 2
    finally:
        rt.close()
    if rt.is_main:
        print(f"train: {summary_line(summary)}; wrote {args.out}")
        if summary.get("best_step", -1) >= 0:
            print(f"best in-training MiFID {summary['best_mifid']:.4g} at step {summary['best_step']} "
                  f"(evaluations took {summary['eval_seconds']} s); in {evaluation.best_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
