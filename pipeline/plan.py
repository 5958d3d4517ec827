"""How many steps a training run takes, and the learning-rate schedule laid over them. Pure functions, no torch.

A run's *plan* is the number of G steps that everything depending on the length of training is laid over: a
progressive model's growth and fade-in (``set_progress(step / planned)``) and the cosine warm restarts. Without a
time budget it is what ``train.epochs`` asks for. With one (``train.time_budget_min``), the train stage measures its
own speed before training and, where the epochs would not fit in the budget (or with ``epochs: auto``), plans the
steps that do fit instead, so that a run cut short by its budget still ends grown to 64x64 and at the end of a
learning-rate cycle. It may shrink the plan later (after the first evaluation, whose time it could not know, or when
the steps run slower than measured), never grow it, so that progress never goes backwards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

AUTO = "auto"  # train.epochs: as many as fit the time budget
PLAN_MARGIN = 0.05  # a planned run's work is counted 5% longer than measured: step times vary


@dataclass(frozen=True)
class Plan:
    """The steps of a run: ``steps`` planned; ``asked`` what ``train.epochs`` asks for (None: ``auto``, the budget
    decides); ``fitted``: cut to fit the time budget; ``lr_period``: the cosine warm restarts' period that tiles
    ``steps`` (0: none), made from cycles of ``lr_cycle`` steps as ``train.cosine_restart_epochs`` asks for
    (see :func:`cosine_plan`)."""

    steps: int
    asked: int | None
    fitted: bool = False
    lr_period: int = 0
    lr_cycle: int = 0

    def as_dict(self) -> dict:
        return {"steps": self.steps, "asked": self.asked, "fitted": self.fitted, "lr_period": self.lr_period,
                "lr_cycle": self.lr_cycle}

    @classmethod
    def from_dict(cls, d: dict) -> Plan:
        return cls(int(d["steps"]), None if d["asked"] is None else int(d["asked"]), bool(d["fitted"]),
                   int(d["lr_period"]), int(d["lr_cycle"]))


def make_plan(steps: int, asked: int | None, fitted: bool, cycle: int, at_least: int = 1) -> Plan:
    """A plan of about ``steps`` steps: cut to a whole number of cosine cycles when ``cycle`` asks for restarts
    (:func:`cosine_plan`, which keeps at least ``at_least`` steps)."""
    steps, period = cosine_plan(steps, cycle, at_least)
    return Plan(steps, asked, fitted, period, cycle)


def asked_steps(epochs: float | str, n_images: int, batch_size: int, world_size: int = 1) -> int | None:
    """G steps for ``epochs`` passes over ``n_images`` at ``batch_size`` per process and ``world_size`` processes
    (at least 1); None for ``epochs: auto``."""
    if epochs == AUTO:
        return None
    return max(1, math.ceil(epochs * n_images / (batch_size * world_size)))


def steps_to_epochs(steps: int, n_images: int, batch_size: int, world_size: int = 1) -> float:
    """Epochs (passes over ``n_images``) that ``steps`` G steps make, rounded to 3 decimals."""
    return round(steps * batch_size * world_size / n_images, 3)


# ------------------------------------------------------------------------------- cosine warm restarts


def cosine_plan(planned: int, cycle: int, at_least: int = 1) -> tuple[int, int]:
    """(steps, period) of cosine warm restarts over a plan of ``planned`` steps asked for cycles of ``cycle`` steps:
    ``cycle`` stretched so that a whole number of cycles fills the plan, the plan cut to that whole number (the
    ``planned % period`` steps left over are fewer than one per cycle); one cycle over the whole plan when not even one
    fits, or when the cut would leave fewer than ``at_least`` steps. ``cycle`` 0: no restarts, (planned, 0).
    """
    if cycle <= 0:
        return planned, 0
    if cycle >= planned:
        return planned, planned
    period = planned // (planned // cycle)
    steps = planned - planned % period
    return (steps, period) if steps >= at_least else (planned, planned)


def cosine_factor(step: int, period: int) -> float:
    """The learning rate of 0-based ``step`` as a fraction of the base rate: ``(1 + cos(pi t / period)) / 2`` with
    ``t = step % period``, falling from 1 at the start of each cycle to near 0 at its last step and back to 1 at the
    next. The values of torch's CosineAnnealingWarmRestarts(T_0=period, eta_min=0) stepped once per step; 1 (a
    constant rate) when ``period`` is 0."""
    if period <= 0:
        return 1.0
    return (1.0 + math.cos(math.pi * (step % period) / period)) / 2.0


def cycle_steps(cosine_restart_epochs: float, steps_per_epoch: float) -> int:
    """``train.cosine_restart_epochs`` in steps (at least 1); 0 when it is 0 (no restarts)."""
    if cosine_restart_epochs <= 0:
        return 0
    return max(1, round(cosine_restart_epochs * steps_per_epoch))


# ------------------------------------------------------------------------------- fitting the budget


@dataclass(frozen=True)
class Costs:
    """What a run's time is made of, in seconds, as measured (rank 0's numbers under DDP).

    share_s: a training step at each of n equal shares of the plan, in order, as measured in its middle: a
    progressive model's steps get dearer as it grows (ProGAN's at 64x64 cost 10 times those at 4x4 on a CPU), so
    it is measured at two points per stage (``train.probe_shares``); one entry for a model that does not grow. scale: how much
    slower (> 1) or faster every step runs than ``share_s`` says. extra_s: seconds each step takes on top of
    that, measured on the steps taken so far (the loop's own work: progress bar, logging, set_progress): added, not
    multiplied, so that cheap early steps running slower than measured do not make a progressive model's dear
    late steps count that many times slower. grid_s, checkpoint_s, eval_s: one sample grid, checkpoint
    and evaluation (0: none is made, or its time is not known yet); sample_every, checkpoint_every, eval_every:
    their intervals in steps (0: none). Grids and evaluations come at every multiple of their interval and after the
    last step; checkpoints at every multiple before it and once after it. gif_frames: the frames of the progress
    GIF written at the end (each counted as one grid's time). recent_step_s: the speed the budget's last-resort stop
    reads (its moving average of the steps taken; 0 before any).
    """

    share_s: tuple[float, ...]
    scale: float = 1.0
    extra_s: float = 0.0
    grid_s: float = 0.0
    checkpoint_s: float = 0.0
    eval_s: float = 0.0
    sample_every: int = 0
    checkpoint_every: int = 0
    eval_every: int = 0
    gif_frames: int = 0
    recent_step_s: float = 0.0

    @property
    def step_s(self) -> float:
        """A step's mean time over the shares: what a whole plan costs per step."""
        return self.scale * sum(self.share_s) / len(self.share_s) + self.extra_s


def share_at(step: int, planned: int, n: int) -> int:
    """Which of ``n`` equal shares of a plan of ``planned`` steps 0-based ``step`` falls in (0-based)."""
    return min(step * n // planned, n - 1)


def share_start(share: int, planned: int, n: int) -> int:
    """The first step (0-based) of ``share`` when ``planned`` steps are split into ``n`` equal shares: the first
    whose fraction of training ``step / planned`` reaches ``share / n``."""
    return -(-share * planned // n)


def steps_seconds(done: int, planned: int, share_s: tuple[float, ...]) -> float:
    """Seconds that steps ``done`` .. ``planned - 1`` take, each at the time of the share of the plan it falls in."""
    n = len(share_s)
    total = 0.0
    for i, s in enumerate(share_s):
        lo = max(done, share_start(i, planned, n))
        hi = min(planned, share_start(i + 1, planned, n))
        total += max(0, hi - lo) * s
    return total


def events(done: int, planned: int, every: int, at_end: bool) -> int:
    """How many of the steps done + 1 .. ``planned`` (counted 1-based, as steps done) are multiples of ``every``,
    plus the last one when ``at_end`` and it is not a multiple itself. ``every`` 0: none."""
    if every <= 0 or planned <= done:
        return 0
    return planned // every - done // every + (1 if at_end and planned % every else 0)


def run_seconds(done: int, planned: int, costs: Costs) -> float:
    """Seconds from now, ``done`` steps into a plan of ``planned``, to its end: the steps left, the grids,
    evaluations and checkpoints due on the way, the final checkpoint and the progress GIF."""
    if planned <= done:
        return 0.0
    return (costs.scale * steps_seconds(done, planned, costs.share_s) + (planned - done) * costs.extra_s
            + events(done, planned, costs.sample_every, at_end=True) * costs.grid_s
            + events(done, planned, costs.eval_every, at_end=True) * costs.eval_s
            + (events(done, planned - 1, costs.checkpoint_every, at_end=False) + 1) * costs.checkpoint_s
            + costs.gif_frames * costs.grid_s)


def headroom_s(costs: Costs) -> float:
    """Seconds kept free at the end of a plan for the budget's last-resort stop (``train.out_of_time``), which
    before each step wants room for two steps and two checkpoints: so much again on top of the last step and the
    final checkpoint that the plan counts, which absorbs a slow step or two at the end. A step here is one of the
    last share, or the recent speed if that is slower."""
    return 2 * max(costs.scale * costs.share_s[-1] + costs.extra_s, costs.recent_step_s) + 2 * costs.checkpoint_s


def fits(left_s: float, done: int, planned: int, costs: Costs, margin: float = PLAN_MARGIN) -> bool:
    """Whether a plan of ``planned`` steps, ``done`` of them done, ends within ``left_s`` seconds: its remaining work
    counted ``1 + margin`` times, plus :func:`headroom_s`."""
    return run_seconds(done, planned, costs) * (1.0 + margin) + headroom_s(costs) <= left_s


def fit_steps(left_s: float, done: int, limit: int | None, costs: Costs, margin: float = PLAN_MARGIN) -> int:
    """The longest plan, at most ``limit`` steps (None: no limit), that :func:`fits` in ``left_s`` seconds with
    ``done`` steps done; ``done`` when not even one more step fits. (A plan's time grows with its length, so the
    longest is found by bisection.)"""
    if limit is None:  # no plan can be longer than the steps that fit at the fastest share's speed
        fastest = costs.scale * min(costs.share_s) + costs.extra_s
        limit = done + (math.ceil(left_s / fastest) if fastest > 0 else 10**12) + 1
    if limit <= done or not fits(left_s, done, done + 1, costs, margin):
        return done
    lo, hi = done + 1, limit  # lo fits; find the last that does
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(left_s, done, mid, costs, margin):
            lo = mid
        else:
            hi = mid - 1
    return lo
