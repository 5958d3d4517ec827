"""One training run between its steps (:class:`Run`: the parts, the data, the outputs, the logger, the plan) and
how it starts (:func:`start_run`: fresh or resumed)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.checkpoint import save_checkpoint
from pipeline.config import TrainConfig
from pipeline.files import Dataset
from pipeline.images import save_png
from pipeline.plan import Costs, Plan
from pipeline.runtime import Runtime, unwrap
from pipeline.training.budget import apply_plan, due, epochs_plan, resumed_plan
from pipeline.training.monitor import (EvalSettings, Evaluator, SampleGrid, drop_samples_after, make_evaluator,
                                       sample_path)
from pipeline.training.resume import resume_from, rng_states
from pipeline.training.step import DeviceData, Parts, as_floats, build_parts, growth_stages, total_steps


@dataclass
class Run:
    """One training run between its steps: the parts being trained, the data, where the outputs go and who
    logs. ``train`` drives it; its methods are what happens at the intervals of ``cfg`` (log, sample grid,
    evaluation, checkpoint). Only rank 0 has ``live``, ``samples_dir`` and ``ev``; the others train."""

    p: Parts
    cfg: TrainConfig
    rt: Runtime
    data: DeviceData
    out: Path  # the checkpoint
    breeds: list[str]
    label_counts: list[int]  # crops per breed, kept so generate draws breeds as often as training saw them
    steps: int  # total steps of the run: those of ``plan`` (0 until an ``epochs: auto`` run has one)
    step: int = 0  # steps done
    recipe: str = ""  # the recipe the config came from ("" when not known), kept for the leaderboard
    plan: Plan | None = None  # None only until an ``epochs: auto`` run is fitted to its budget
    grid: SampleGrid | None = None
    samples_dir: Path | None = None
    live: object = None  # dvclive's Live or the kernel's logger; None: no logging
    ev: Evaluator | None = None
    best_out: Path | None = None  # where the best checkpoint by MiFID goes (with ``ev``)
    last_eval: dict | None = None  # the latest evaluation's metrics
    # seconds, for the time budget: a step (moving average), the latest checkpoint, evaluation and sample grid
    step_s: float = 0.0
    checkpoint_s: float = 0.0
    eval_s: float = 0.0
    eval_total_s: float = 0.0
    grid_s: float = 0.0
    # a budgeted run's measured costs (rank 0's), and its steps in this process: their seconds as taken (periodic
    # work left out) and as the measured costs expected them, whose ratio tells how the speed has held up
    costs: Costs | None = None
    t_start: float = 0.0  # time.monotonic() when train() started: the budget counts from there
    taken_s: float = 0.0
    expected_s: float = 0.0
    steps_taken: int = 0

    @property
    def sampler(self) -> nn.Module:
        """The generator that draws grids and is scored: the EMA one when training keeps it."""
        return self.p.G_ema or unwrap(self.p.G)

    @property
    def stages(self) -> int:
        return growth_stages(self.p)

    def contents(self, evaluation: dict | None) -> dict:
        """What a checkpoint of this step holds: the arguments of ``checkpoint.save_checkpoint``."""
        p = self.p
        return dict(
            G=p.G, D=p.D, G_ema=p.G_ema, opt_g=p.opt_g, opt_d=p.opt_d, step=self.step, total_steps=self.steps,
            model=self.cfg.model, model_options=self.cfg.model_options, n_classes=p.n_classes, aux_classifier=p.aux,
            breeds=self.breeds, train_config={k: v for k, v in asdict(self.cfg).items() if k != "model_options"},
            extra={"label_counts": self.label_counts,
                   "recipe": self.recipe,
                   "plan": self.plan.as_dict() if self.plan else None,  # so that --resume continues it
                   "eval": evaluation,  # in-training MiFID: the best so far and this step's (None: off)
                   "rng": rng_states(self.data),
                   "lecam": p.lecam.state_dict() if p.lecam is not None else None,  # LeCam's anchors, resumed
                   "world_size": self.rt.world_size},  # with batch_size, what one step means (for --resume)
        )

    def save(self, path: Path, evaluation: dict | None) -> None:
        save_checkpoint(path, **self.contents(evaluation))

    def checkpoint(self) -> None:
        """Write ``out``, timed for the budget. What it keeps of the evaluations: the best so far (for
        --resume) and the latest one's numbers."""
        t0 = time.monotonic()
        record = None
        if self.ev is not None:
            record = self.ev.state()
            if self.last_eval is not None:
                record["last"] = {k: self.last_eval[k] for k in ("fid", "distance", "mifid")}
        self.save(self.out, record)
        self.checkpoint_s = time.monotonic() - t0

    def log(self, losses: dict[str, torch.Tensor], images_per_s: float, bar) -> None:
        """Losses averaged over the ranks, to the progress bar and the logger."""
        logged = {k: self.rt.all_mean(v) for k, v in as_floats(losses).items()}
        bar.set_postfix(loss_d=f"{logged['loss_d']:.3f}", loss_g=f"{logged['loss_g']:.3f}", img_s=f"{images_per_s:.0f}")
        if self.live is not None:
            self.live.step = self.step
            for k, v in logged.items():
                self.live.log_metric(f"train/{k}", v)
            self.live.log_metric("train/images_per_s", images_per_s)

    def sample(self, log: bool = True) -> None:
        """The fixed-seed grid of this step into ``samples_dir`` (and to the logger), timed for the budget."""
        t0 = time.monotonic()
        picture = self.grid.render(self.sampler, f"{self.cfg.model} step {self.step}")
        save_png(sample_path(self.samples_dir, self.step), picture)
        if log and self.live is not None:
            self.live.log_image("samples.png", picture)
        self.grid_s = time.monotonic() - t0

    def evaluate(self, bar) -> None:
        """Score the sampling generator, log it, and write the best checkpoint when it is the best so far."""
        t0 = time.monotonic()
        metrics = self.ev.run(self.sampler, self.step, self.rt.device)
        if self.live is not None:
            self.live.step = self.step
            for key in ("fid", "distance", "mifid"):
                self.live.log_metric(f"eval/{key}", metrics[key])
        if metrics["best"]:
            self.save(self.best_out, {"step": self.step, "mifid": metrics["mifid"], "fid": metrics["fid"],
                                      "distance": metrics["distance"], **self.ev.state()})
        self.last_eval = metrics
        self.eval_s = time.monotonic() - t0
        self.eval_total_s += self.eval_s
        bar.write(f"step {self.step}: MiFID {metrics['mifid']:.4g} (FID {metrics['fid']:.4g}, "
                  f"d {metrics['distance']:.4f}){' best so far' if metrics['best'] else ''}, {self.eval_s:.1f} s")

    def eval_due(self, step: int) -> bool:
        return self.ev is not None and due(step, self.cfg.eval_every, self.steps)


def start_run(ds: Dataset, cfg: TrainConfig, out: Path, rt: Runtime, *, resume: bool,
              samples_dir: Path | None, evaluation: EvalSettings | None, progress: bool, recipe: str = "") -> Run:
    """Build the models for ``ds``, put the data on the device, load the checkpoint with --resume and take its plan
    (see :func:`resumed_plan`); then set up what rank 0 writes: the evaluator (which scores from the step reached)
    and the sample folder (cleared of grids after that step). Logging starts once the run has its plan."""
    torch.manual_seed(cfg.seed + rt.rank)
    breeds = [str(b) for b in ds.breeds]
    data = DeviceData(ds, rt.device, cfg.seed * 1000 + rt.rank)
    p = build_parts(cfg, len(breeds), rt, steps_per_epoch=len(data) / (cfg.batch_size * rt.world_size))
    run = Run(p, cfg, rt, data, out, breeds, np.bincount(ds.labels, minlength=len(breeds)).tolist(), 0,
              recipe=recipe)
    asked = total_steps(cfg, len(data), rt.world_size)
    plan = epochs_plan(run, asked)
    extra = {}
    if resume and out.exists():
        run.step, extra = resume_from(out, p, cfg, breeds, data, rt)
        plan = resumed_plan(run, extra.get("plan"), asked)
        if rt.is_main:
            left = plan is not None and run.step >= plan.steps
            print(f"resuming from {out} at step {run.step} of {plan.steps if plan else 'as many as fit the budget'}"
                  + ("; nothing left to train (raise train.epochs to train on)" if left else ""))
    if plan is not None:
        apply_plan(run, plan)
    if evaluation is not None and rt.is_main:
        run.best_out = evaluation.best_out
        if run.step == 0:
            evaluation.best_out.unlink(missing_ok=True)  # a fresh run: a best.pt of another run must not survive
        if cfg.eval_every > 0:
            run.ev = make_evaluator(ds, cfg, evaluation, unwrap(p.G).z_dim, p.n_classes, rt.device, progress)
            run.ev.restore((extra.get("eval") or {}) if run.step > 0 else None)
    run.grid = SampleGrid(unwrap(p.G).z_dim, p.n_classes, breeds, cfg.sample_breeds, rt.device, seed=cfg.seed)
    if rt.is_main:
        run.samples_dir = samples_dir
        if samples_dir and samples_dir.is_dir():
            drop_samples_after(samples_dir, run.step)
    return run
