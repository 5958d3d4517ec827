"""One self-contained checkpoint file per run, written atomically and loaded safely.

It holds G, D and G_ema weights, both optimizer states, the step reached, the model's name and
options, the breed names and the training config: everything needed to resume training or to
generate images, and nothing that needs unpickling arbitrary objects (``weights_only=True``).
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.errors import first_line, load_error_text
from pipeline.files import atomic_path
from pipeline.models import build_model, model_entry
from pipeline.runtime import unwrap

FORMAT = "generative-dogs-checkpoint"
# 2: no learning-rate scheduler states (the cosine warm restarts are a function of the step); the plan of the run
# (``extra["plan"]``: the steps its schedules are laid over, see pipeline.plan)
VERSION = 2


class CheckpointError(ValueError):
    """A file that is not a usable checkpoint of this project."""


def save_checkpoint(path: str | os.PathLike, **contents) -> None:
    """Write a checkpoint of ``contents`` (the arguments of :func:`checkpoint_payload`) to ``path`` atomically
    (temporary file, then rename)."""
    payload = checkpoint_payload(**contents)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def checkpoint_payload(
    *,
    G: nn.Module,
    D: nn.Module,
    G_ema: nn.Module | None,
    opt_g: torch.optim.Optimizer | None,
    opt_d: torch.optim.Optimizer | None,
    step: int,
    total_steps: int,
    model: str,
    model_options,
    n_classes: int,
    aux_classifier: bool,
    breeds: list[str],
    train_config: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything a checkpoint holds, as the dict that is saved (tensors shared with the models, not copied)."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "model": model,
        "model_options": dataclasses.asdict(model_options),
        "n_classes": int(n_classes),
        "aux_classifier": bool(aux_classifier),
        "breeds": [str(b) for b in breeds],
        "step": int(step),
        "total_steps": int(total_steps),
        "train_config": train_config,
        "G": unwrap(G).state_dict(),
        "D": unwrap(D).state_dict(),
        "G_ema": unwrap(G_ema).state_dict() if G_ema is not None else None,
        "opt_g": opt_g.state_dict() if opt_g is not None else None,
        "opt_d": opt_d.state_dict() if opt_d is not None else None,
        "rng_cpu": torch.get_rng_state(),
        "extra": extra or {},
    }


# What every checkpoint holds, and the type each entry must have (a file written by another version of this
# code, or edited by hand, gets an error that names the entry instead of a KeyError deep in a stage).
PAYLOAD_TYPES: dict[str, type | tuple[type, ...]] = {
    "model": str, "model_options": dict, "n_classes": int, "aux_classifier": bool, "breeds": list, "step": int,
    "total_steps": int, "train_config": dict, "G": dict, "D": dict, "G_ema": (dict, type(None)),
    "opt_g": (dict, type(None)), "opt_d": (dict, type(None)), "extra": dict,
}


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and check a checkpoint. Never unpickles code: ``torch.load(weights_only=True)``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint here. Train one with `python -m pipeline.train` (or `dvc repro train`).")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes), not a checkpoint; delete it and train again.")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({load_error_text(exc)}). "
            "It may be truncated or from another program; delete it and train again."
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a PyTorch file but not a checkpoint of this project (no {FORMAT!r} marker).")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {payload.get('version')}, this code reads version {VERSION}.")
    for key, kind in PAYLOAD_TYPES.items():
        if key not in payload or not isinstance(payload[key], kind) or (kind is int and isinstance(payload[key], bool)):
            found = "missing" if key not in payload else f"a {type(payload[key]).__name__}"
            raise CheckpointError(f"{path}: the checkpoint's {key!r} is {found}; this file is damaged or was not "
                                  "written by pipeline.train. Delete it and train again.")
    try:
        model_entry(payload["model"])
    except KeyError as exc:
        raise CheckpointError(f"{path}: {first_line(exc)}; this code cannot rebuild its model.") from None
    return payload


def options_from(payload: dict[str, Any]):
    """The model's options dataclass, rebuilt and range-checked from the checkpoint's plain dict."""
    from pipeline.config import ConfigError, validate_dataclass

    entry = model_entry(payload["model"])
    try:
        return validate_dataclass(entry.options, payload["model_options"], f"{payload['model']} model_options")
    except ConfigError as exc:
        raise CheckpointError(f"{exc}; this checkpoint does not fit the model code here.") from None


def samples_ema(payload: dict[str, Any], ema: bool = True) -> bool:
    """Whether :func:`generator_from` rebuilds G_ema (asked for, and kept by training) rather than G."""
    return ema and payload["G_ema"] is not None


def generator_from(payload: dict[str, Any], ema: bool = True) -> nn.Module:
    """Rebuild only the generator that samples, on the CPU, in eval mode without gradients: G_ema's weights
    when ``ema`` and the checkpoint has them, else G's.

    For the stages that only sample (generate, the kernel, the report): one (G, D) pair built instead of
    :func:`models_from`'s two, each with an initialisation that the weights then replace (0.47 s instead of
    0.94 s for the 1st-place BigGAN on the 2-core machine).
    """
    G, _ = build_model(payload["model"], options_from(payload), payload["n_classes"], payload["aux_classifier"])
    load_weights(G, payload["G_ema"] if samples_ema(payload, ema) else payload["G"], payload)
    return G.eval().requires_grad_(False)


def models_from(payload: dict[str, Any]) -> tuple[nn.Module, nn.Module, nn.Module]:
    """Rebuild (G, D, G_ema) on the CPU with the checkpoint's weights. G_ema is G's copy when there was no EMA."""
    G, D = build_model(payload["model"], options_from(payload), payload["n_classes"], payload["aux_classifier"])
    load_weights(G, payload["G"], payload)
    load_weights(D, payload["D"], payload)
    return G, D, generator_from(payload)


def load_weights(module: nn.Module, state: dict[str, Any], payload: dict[str, Any]) -> None:
    """``module.load_state_dict(state)``, a mismatch reported as a :class:`CheckpointError`."""
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint weights do not fit model {payload['model']!r}: {' '.join(str(exc).split())[:300]}") from None
