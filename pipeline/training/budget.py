"""The plan and the time budget: how many steps a run takes, measured before it trains and revised as it goes
(pure arithmetic in :mod:`pipeline.plan`; here, the measuring and the decisions, rank 0's for every process)."""

from __future__ import annotations

import contextlib
import copy
import io
import sys
import time
from dataclasses import replace
from typing import TYPE_CHECKING

import torch

from pipeline.checkpoint import checkpoint_payload
from pipeline.config import ConfigError
from pipeline.images import png_bytes
from pipeline.plan import Costs, Plan, cycle_steps, fit_steps, fits, make_plan, steps_to_epochs
from pipeline.runtime import unwrap
from pipeline.training.monitor import GIF_MAX_FRAMES
from pipeline.training.resume import rng_states
from pipeline.training.step import DeviceData, Parts, set_progress, train_step

if TYPE_CHECKING:  # the run's own module imports this one
    from pipeline.training.run import Run


def due(step: int, every: int, last: int) -> bool:
    """Whether something done every ``every`` steps (log, grid, evaluation) happens after step ``step``
    (1-based: the number of steps done); the last step ``last`` always counts."""
    return step % every == 0 or step == last


def out_of_time(elapsed: float, step_s: float, checkpoint_s: float, eval_s: float, budget_s: float) -> bool:
    """Whether to stop before the next step, in seconds: the run has used ``elapsed`` of ``budget_s``, and the
    next step, if taken, must still leave room for a slow step and the final checkpoint (each counted twice:
    times vary) and for the evaluation that step would start (``eval_s``, 0 when none is due)."""
    return elapsed + 2 * step_s + 2 * checkpoint_s + eval_s > budget_s


class TimeBudgetError(ConfigError):
    """A time budget too small to train in at the speed measured."""


PROBE_STEPS = 3  # steps timed at each point where the speed is measured, after one that warms up (not timed)
SCALE_AFTER = 20  # steps taken before their speed may revise the measured one (fewer: too noisy to act on)


def epochs_plan(run: Run, asked: int | None) -> Plan | None:
    """The plan of the ``asked`` steps that ``train.epochs`` asks for, cut to whole cosine cycles (see
    :func:`plan.cosine_plan`); None for ``epochs: auto`` (:func:`plan_to_budget` makes it)."""
    if asked is None:
        return None
    return make_plan(asked, asked, False, run_cycle(run), at_least=run.stages)


def resumed_plan(run: Run, saved: dict | None, asked: int | None) -> Plan | None:
    """The plan a resumed run goes on with: the checkpoint's, when ``train.epochs`` and
    ``train.cosine_restart_epochs`` ask for what they asked then (the same run, budget-fitted or not); a new one of
    the steps asked for when they changed."""
    if saved is not None:
        plan = Plan.from_dict(saved)
        if plan.asked == asked and plan.lr_cycle == run_cycle(run):
            return plan
    return epochs_plan(run, asked)


def run_cycle(run: Run) -> int:
    """``train.cosine_restart_epochs`` in steps of this run (0: no restarts)."""
    return cycle_steps(run.cfg.cosine_restart_epochs, len(run.data) / (run.cfg.batch_size * run.rt.world_size))


def apply_plan(run: Run, plan: Plan) -> None:
    """Lay the run's schedules over ``plan``: growth over its steps, the cosine warm restarts at its period."""
    run.plan, run.steps = plan, plan.steps
    run.p.lr_period = plan.lr_period


@contextlib.contextmanager
def undone(p: Parts, data: DeviceData):
    """Inside: training steps that leave no trace. On leaving, the weights and buffers of G, D and G_ema, both
    optimizers' and loss scalers' states and the random streams are put back as they were on entering."""
    saved = copy.deepcopy({"G": unwrap(p.G).state_dict(), "D": unwrap(p.D).state_dict(),
                           "G_ema": p.G_ema.state_dict() if p.G_ema is not None else None,
                           "opt_g": p.opt_g.state_dict(), "opt_d": p.opt_d.state_dict(),
                           "scaler_g": p.scaler_g.state_dict(), "scaler_d": p.scaler_d.state_dict(),
                           "rng_cpu": torch.get_rng_state(), "rng": rng_states(data)})
    try:
        yield
    finally:
        unwrap(p.G).load_state_dict(saved["G"])  # a progressive model's stage comes back with its buffers
        unwrap(p.D).load_state_dict(saved["D"])
        if p.G_ema is not None:
            p.G_ema.load_state_dict(saved["G_ema"])
        p.opt_g.load_state_dict(saved["opt_g"])
        p.opt_d.load_state_dict(saved["opt_d"])
        p.scaler_g.load_state_dict(saved["scaler_g"])
        p.scaler_d.load_state_dict(saved["scaler_d"])
        torch.set_rng_state(saved["rng_cpu"])
        data.generator.set_state(saved["rng"]["data"])
        if saved["rng"]["cuda"] is not None:
            torch.cuda.set_rng_state(saved["rng"]["cuda"], data.device)


def probe_shares(stages: int) -> int:
    """How many equal shares of training the speed is measured in: one for a model that does not grow; two per
    stage for one that does. ProGAN grows in the first half of training: with one share per stage its 32x32 steps
    were timed as 16x16 ones, and the slowdown the run then saw was put on its 64x64 steps too, which shrank a
    10-minute plan to 72% of it; with two per stage each of its stages has a share's middle in it."""
    return 1 if stages <= 1 else 2 * stages


def measure_costs(run: Run) -> Costs:
    """Time the run's work before it starts, for its time budget: training steps in the middle of
    :func:`probe_shares` equal shares of training (:data:`PROBE_STEPS` at each after one that warms up, compiles
    or tunes; on the run's own models, then undone), a sample grid (rendered at the end of growth and encoded, not
    written) and a checkpoint (serialised in memory). Every process takes the steps (under DDP they synchronise);
    the grid and the checkpoint are rank 0's."""
    p, cfg, rt = run.p, run.cfg, run.rt
    n = probe_shares(run.stages)
    share_s = []
    grid_s = checkpoint_s = 0.0
    with undone(p, run.data):
        for share in range(n):
            set_progress(p, (share + 0.5) / n)  # however the model lays its stages over training
            train_step(p, run.data, cfg, rt, run.step)
            rt.synchronize()
            t0 = time.monotonic()
            for _ in range(PROBE_STEPS):
                train_step(p, run.data, cfg, rt, run.step)
            rt.synchronize()
            share_s.append((time.monotonic() - t0) / PROBE_STEPS)
        if rt.is_main and run.samples_dir:
            t0 = time.monotonic()
            png_bytes(run.grid.render(run.sampler, f"{cfg.model} step {run.step}"))
            grid_s = time.monotonic() - t0
    if rt.is_main:
        t0 = time.monotonic()
        torch.save(checkpoint_payload(**run.contents(None)), io.BytesIO())
        checkpoint_s = time.monotonic() - t0
    run.checkpoint_s = max(run.checkpoint_s, checkpoint_s)  # the last-resort stop counts it from the start
    return Costs(tuple(share_s), grid_s=grid_s, checkpoint_s=checkpoint_s,
                 sample_every=cfg.sample_every if run.samples_dir else 0, checkpoint_every=cfg.checkpoint_every,
                 eval_every=cfg.eval_every if run.ev is not None else 0,
                 gif_frames=GIF_MAX_FRAMES if run.samples_dir else 0)


def current_costs(run: Run) -> Costs:
    """The measured costs revised by what the run has seen since: the time its steps took beyond the measured
    (once there are :data:`SCALE_AFTER` of them; as seconds per step on top, see ``plan.Costs``), the latest
    checkpoint, grid and evaluation (an evaluation's time is known only after the first)."""
    c = run.costs
    extra = c.extra_s
    if run.steps_taken >= SCALE_AFTER:
        extra = max(0.0, (run.taken_s - run.expected_s) / run.steps_taken)
    return replace(c, extra_s=extra, checkpoint_s=max(c.checkpoint_s, run.checkpoint_s), grid_s=max(c.grid_s, run.grid_s),
                   eval_s=run.eval_s, recent_step_s=run.step_s)


def plan_to_budget(run: Run, budget_s: float) -> None:
    """Measure the run's speed and, where the steps planned (none yet for ``epochs: auto``) would not fit in what is
    left of ``budget_s`` seconds since ``run.t_start``, plan the steps that do. Every process takes rank 0's plan.
    Raises :class:`TimeBudgetError` when the budget holds no step, or fewer than one per growth stage."""
    rt = run.rt
    run.costs = measure_costs(run)
    limit = run.plan.steps if run.plan is not None else None
    need = max(run.stages, run.step + 1)  # a step per growth stage, and one more than done already ...
    need = min(need, limit) if limit is not None else need  # ... unless the epochs ask for fewer
    fit = elapsed_s = 0.0
    if rt.is_main:
        elapsed_s = time.monotonic() - run.t_start
        fit = fit_steps(budget_s - elapsed_s, run.step, limit, run.costs)
    fit, elapsed_s, step_s = rt.from_main([fit, elapsed_s, run.costs.step_s])
    fit = int(fit)
    if fit < need:
        raise TimeBudgetError(budget_error(run, budget_s, elapsed_s, step_s, need))
    asked = run.plan.asked if run.plan is not None else None
    fitted = limit is None or fit < limit
    if fitted:
        apply_plan(run, make_plan(fit, asked, True, run_cycle(run), at_least=need))
    if rt.is_main:
        told = f"{step_s:.3g} s a step as measured"
        if not fitted:
            print(f"time budget {budget_s / 60:.4g} min, {told}: the {run.steps - run.step:,} steps left fit")
        else:
            of = (f"of the {asked:,} that train.epochs {run.cfg.epochs:g} asks for" if asked is not None
                  else "for train.epochs auto")
            print(f"time budget {budget_s / 60:.4g} min, {told}: planned {run.steps:,} steps "
                  f"({run_epochs(run, run.steps):g} epochs) {of}; growth and learning-rate cycles are laid over them")


def budget_error(run: Run, budget_s: float, elapsed_s: float, step_s: float, need: int) -> str:
    """Why the budget holds too few steps, with the numbers."""
    what = (f"{need} steps, one per stage that {run.cfg.model} grows through" if run.stages > 1 and need == run.stages
            else "one more step" if run.step > 0 else "a single step")
    return (f"the time budget of {budget_s / 60:.4g} min ({budget_s:.3g} s, train.time_budget_min) is too small for "
            f"{what}: {elapsed_s:.3g} s went to setting up and measuring the speed, a step takes {step_s:.3g} s as "
            "measured, and the final checkpoint and the room the budget's last-resort stop keeps come on top. Raise "
            "train.time_budget_min, or set it to 0 for no budget.")


def replan(run: Run, budget_s: float) -> None:
    """Shrink the plan when what is left of it would no longer fit in the budget at the speed seen so far (the
    steps slower than measured, the first evaluation's time now known), to the steps that do; never grow it, so
    that progress never goes backwards. Every process takes rank 0's decision."""
    rt = run.rt
    steps = run.steps
    if rt.is_main:
        costs = current_costs(run)
        left = budget_s - (time.monotonic() - run.t_start)
        if not fits(left, run.step, steps, costs, margin=0.0):  # behind the plan's margin, not merely into it
            steps = max(fit_steps(left, run.step, steps, costs), run.step + 1)
    steps = int(rt.from_main([steps])[0])
    if steps < run.steps:
        apply_plan(run, make_plan(steps, run.plan.asked, True, run_cycle(run), at_least=run.step + 1))
        steps = run.steps
        if rt.is_main:
            print(f"time budget: re-planned to {steps:,} steps ({run_epochs(run, steps):g} epochs) at step "
                  f"{run.step:,}: the steps, evaluations and checkpoints so far took longer than measured",
                  file=sys.stderr)


def replan_due(run: Run) -> bool:
    """Whether to check the plan after this step: after a logged step, an evaluation or a checkpoint (the same
    steps in every process)."""
    cfg, step = run.cfg, run.step
    return (due(step, cfg.log_every, run.steps) or step % cfg.checkpoint_every == 0
            or (cfg.eval_every > 0 and step % cfg.eval_every == 0))


def run_epochs(run: Run, steps: int) -> float:
    """``steps`` of this run in epochs (passes over its data set)."""
    return steps_to_epochs(steps, len(run.data), run.cfg.batch_size, run.rt.world_size)
