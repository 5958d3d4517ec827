"""Typed, validated configuration: one dataclass per stage, read from its section of params.yaml.

Each stage reads only its own section. Unknown keys, wrong types and out-of-range values are
errors that name the key and the allowed values, raised once at start-up rather than deep inside
a run. Paths never live here: they come from the command line, so that dvc.yaml holds them all.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from pipeline.boxes import SquareMethod
from pipeline.images import Resample

DEFAULT_PARAMS = Path("params.yaml")


class ConfigError(ValueError):
    """A params.yaml section or override that does not describe a valid configuration."""


def _range(lo: float | None = None, hi: float | None = None) -> dict:
    return {"min": lo, "max": hi}


@dataclass(frozen=True)
class DataConfig:
    """Section ``data``: where the raw competition files come from."""

    source: Literal["demo", "kaggle"] = "demo"  # demo: synthesized offline data; kaggle: the real photos
    local_copy: str = ""  # kaggle only: a folder already holding the competition files (skips the download)
    demo_seed: int = 0  # demo only: seed of the synthesized photos


@dataclass(frozen=True)
class PrepareConfig:
    """Section ``prepare``: how bounding boxes become training images.

    Defaults follow the 1st-place solution: every box, boxes with extreme aspect ratio dropped
    (height/width below 0.2 or above 4, i.e. width/height outside 0.25..5), each box resized to
    64x64 as it is (stretch), no margin.
    """

    size: int = field(default=64, metadata=_range(8, 1024))
    square: SquareMethod = "stretch"
    margin: float = field(default=0.0, metadata=_range(0.0, 1.0))
    min_aspect: float = field(default=0.25, metadata=_range(0.0, None))
    max_aspect: float = field(default=5.0, metadata=_range(0.0, None))
    min_side: int = field(default=0, metadata=_range(0, None))
    resample: Resample = "lanczos"
    workers: int = field(default=0, metadata=_range(0, None))  # 0: one per CPU core
    grid_seed: int = 0

    def __post_init__(self) -> None:
        if self.min_aspect > self.max_aspect:
            raise ConfigError(
                f"prepare.min_aspect ({self.min_aspect}) must not exceed prepare.max_aspect ({self.max_aspect})"
            )


# Every stage section, by name. Later stages add theirs here.
SECTIONS: dict[str, type] = {"data": DataConfig, "prepare": PrepareConfig}


def _check_value(section: str, f: dataclasses.Field, hint: Any, value: Any) -> Any:
    key = f"{section}.{f.name}"
    origin = typing.get_origin(hint)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(f"{key}: {value!r} is not allowed; choose one of {', '.join(map(str, choices))}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected a whole number, got {value!r}")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        value = float(value)
    elif hint is str:
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
    else:  # pragma: no cover - a programming error in a config class, not a user error
        raise TypeError(f"{key}: unsupported config type {hint!r}")
    lo, hi = f.metadata.get("min"), f.metadata.get("max")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = f"between {lo} and {hi}" if lo is not None and hi is not None else (
            f"at least {lo}" if lo is not None else f"at most {hi}"
        )
        raise ConfigError(f"{key}: {value!r} is out of range; it must be {bounds}")
    return value


def build_config(section: str, values: dict[str, Any] | None):
    """Validate a section's raw mapping into its dataclass; missing keys take their defaults."""
    if section not in SECTIONS:
        raise ConfigError(f"unknown params section {section!r}; known sections: {', '.join(SECTIONS)}")
    cls = SECTIONS[section]
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"params section {section!r} must be a mapping of keys to values")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(f'{section}.{k}' for k in unknown)}; "
            f"the keys of {section!r} are: {', '.join(fields)}"
        )
    hints = typing.get_type_hints(cls)
    checked = {k: _check_value(section, fields[k], hints[k], v) for k, v in values.items()}
    return cls(**checked)


def read_params(path: str | os.PathLike = DEFAULT_PARAMS) -> dict[str, Any]:
    """The whole params.yaml as a mapping; a missing file is an empty mapping (all defaults)."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must be a mapping of section names to settings")
    return data


def apply_overrides(section: str, values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set key=value`` overrides (key with or without the section prefix; value as YAML)."""
    values = dict(values)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set {section}.margin=0.1")
        key = key.strip()
        if "." in key:
            prefix, key = key.split(".", 1)
            if prefix != section:
                raise ConfigError(f"--set {item!r}: this stage reads section {section!r}, not {prefix!r}")
        values[key] = yaml.safe_load(raw)
    return values


def load_config(section: str, params_path: str | os.PathLike = DEFAULT_PARAMS, overrides: list[str] | None = None):
    """The validated config of ``section`` from ``params_path`` plus command-line overrides."""
    raw = read_params(params_path).get(section) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{params_path}: section {section!r} must be a mapping of keys to values")
    return build_config(section, apply_overrides(section, raw, overrides or []))


def add_config_arguments(parser: argparse.ArgumentParser, section: str) -> None:
    """Add ``--params`` and ``--set``, and list the section's keys and defaults in ``--help``."""
    cls = SECTIONS[section]
    keys = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(cls))
    parser.add_argument(
        "--params", default=str(DEFAULT_PARAMS), metavar="FILE",
        help=f"params file whose {section!r} section configures this stage (default: %(default)s)",
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help=f"override one {section!r} key, repeatable. Keys and defaults: {keys}",
    )


def config_from_args(args: argparse.Namespace, section: str):
    return load_config(section, args.params, args.set)


def as_dict(config) -> dict[str, Any]:
    return dataclasses.asdict(config)
