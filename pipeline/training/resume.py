"""Resuming a killed run: the random streams a checkpoint keeps, and loading its state into the parts."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

import torch

from pipeline.checkpoint import CheckpointError, load_checkpoint, load_weights
from pipeline.config import TrainConfig
from pipeline.errors import first_line
from pipeline.runtime import Runtime, unwrap
from pipeline.training.step import DeviceData, Parts


def rng_states(data: DeviceData) -> dict:
    """The generators a step draws from besides torch's CPU one (which the checkpoint keeps itself): the data
    set's (batches, fake labels) and, on a GPU, the device's (latents, real_noise, DiffAugment). Kept in the
    checkpoint so that --resume continues the same random streams instead of replaying them from the start."""
    cuda = data.device.type == "cuda"
    return {"data": data.generator.get_state(), "cuda": torch.cuda.get_rng_state(data.device) if cuda else None}


def restore_rng(ck: dict, data: DeviceData, cfg: TrainConfig, rt: Runtime, step: int) -> None:
    """Put back the random streams of checkpoint ``ck`` (see :func:`rng_states`). One process: exactly, so a
    resumed run draws what the uninterrupted run would have. Several: the checkpoint holds rank 0's streams
    only, so each rank starts new ones, distinct per rank and step (no replay of the first steps' batches)."""
    rng = ck["extra"].get("rng")
    if rt.world_size == 1 and rng is not None:
        torch.set_rng_state(ck["rng_cpu"])
        data.generator.set_state(rng["data"])
        if rng["cuda"] is not None and data.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], data.device)
        return
    seed = ((cfg.seed * 1_000_003 + step) * 1000 + rt.rank) % 2**63
    torch.manual_seed(seed)
    data.generator.manual_seed(seed)


def resume_from(path: Path, p: Parts, cfg: TrainConfig, breeds: list[str], data: DeviceData, rt: Runtime) -> tuple[int, dict]:
    """Load the state of ``path`` into ``p``; returns the step it reached and the checkpoint's ``extra``."""
    ck = load_checkpoint(path, map_location="cpu")
    recipe = ck["extra"].get("recipe")
    # under a recipe, params.yaml's values are not the whole story: say which recipe the checkpoint came from
    hint = f" It was trained under recipe {recipe!r} (params.yaml's `recipe`)." if recipe else ""
    if ck["model"] != cfg.model or ck["n_classes"] != p.n_classes:
        raise CheckpointError(
            f"{path} holds a {ck['model']!r} model with {ck['n_classes']} classes, but params ask for "
            f"{cfg.model!r} with {p.n_classes}; remove the file or change the params to resume.{hint}"
        )
    if list(ck["breeds"]) != list(breeds):
        raise CheckpointError(f"{path} was trained on other breeds than this data set; remove it to start afresh.")
    saved = dict(ck["model_options"], aux_classifier=ck["aux_classifier"])
    wanted = dict(asdict(cfg.model_options), aux_classifier=p.aux)
    changed = [f"{k}: {saved.get(k)!r} in the checkpoint, {wanted.get(k)!r} now" for k in sorted(set(saved) | set(wanted))
               if saved.get(k) != wanted.get(k)]
    if changed:
        raise CheckpointError(
            f"{path} was trained with other model settings ({'; '.join(changed)}). Put them back in params.yaml "
            "to resume (aux_classifier comes from train.aux_class_weight > 0), or remove the file to start afresh."
            f"{hint}"
        )
    if ck["opt_g"] is None or ck["opt_d"] is None:
        raise CheckpointError(f"{path} has no optimizer states (a checkpoint for sampling only); it cannot be resumed.")
    # a step is one global batch (batch_size per process x processes): another global batch makes the saved
    # step count mean another number of images, so the run would see more or less data than its epochs say
    old_batch = ck["train_config"].get("batch_size")
    old_world = ck["extra"].get("world_size")  # None: not recorded (a checkpoint written outside a training run)
    if rt.is_main and (old_batch not in (None, cfg.batch_size) or old_world not in (None, rt.world_size)):
        def global_batch(batch, world) -> str:
            return f"batch {batch if batch is not None else '?'} x {world or '?'} process{'' if world == 1 else 'es'}"

        print(f"warning: {path} was trained at {global_batch(old_batch, old_world)}, this run uses "
              f"{global_batch(cfg.batch_size, rt.world_size)}: its {ck['step']} steps count as steps of the new "
              "global batch", file=sys.stderr)
    load_weights(unwrap(p.G), ck["G"], ck)
    load_weights(unwrap(p.D), ck["D"], ck)
    if p.G_ema is not None:
        load_weights(p.G_ema, ck["G_ema"] if ck["G_ema"] is not None else ck["G"], ck)
    try:
        p.opt_g.load_state_dict(ck["opt_g"])
        p.opt_d.load_state_dict(ck["opt_d"])
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: its optimizer states do not fit the model ({first_line(exc)}); "
                              "remove the file to start afresh.") from None
    if p.lecam is not None:
        saved = ck["extra"].get("lecam")
        if saved:
            p.lecam.load_state_dict(saved)
        elif rt.is_main:
            print(f"note: {path} has no LeCam averages (trained with train.lecam_weight 0); they start afresh",
                  file=sys.stderr)
    restore_rng(ck, data, cfg, rt, int(ck["step"]))
    return int(ck["step"]), ck["extra"]
