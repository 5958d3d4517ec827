"""Typed, validated configuration: one dataclass per stage, read from its section of params.yaml.

Each stage reads only its own section. Unknown keys, wrong types and out-of-range values are
errors that name the key and the allowed values, raised once at start-up rather than deep inside
a run. Paths never live here: they come from the command line, so that dvc.yaml holds them all.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
import sys
import types
import typing
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

# config imports nothing of the pipeline at module level (a leaf: every stage imports it): the choices that
# prepare's modules take are spelled here, and pipeline.boxes / pipeline.photos import them from here
SquareMethod = Literal["stretch", "expand", "pad"]  # how a box becomes a square (pipeline.boxes.plan_crop)
Resample = Literal["lanczos", "bicubic", "bilinear", "box"]  # PIL's antialiased filters (pipeline.photos)

DEFAULT_PARAMS = Path("params.yaml")


class ConfigError(ValueError):
    """A params.yaml section or override that does not describe a valid configuration."""


def _range(lo: float | None = None, hi: float | None = None) -> dict:
    return {"min": lo, "max": hi}


SEED_MAX = 2**32 - 1  # what every random generator used here (numpy's legacy ones included) accepts
SEED = _range(0, SEED_MAX)


@dataclass(frozen=True)
class DataConfig:
    """Section ``data``: where the raw competition files come from."""

    source: Literal["demo", "kaggle"] = "demo"  # demo: synthesized offline data; kaggle: the real photos
    local_copy: str = ""  # kaggle only: a folder already holding the competition files (skips the download)
    demo_seed: int = field(default=0, metadata=SEED)  # demo only: seed of the synthesized photos


@dataclass(frozen=True)
class PrepareConfig:
    """Section ``prepare``: how bounding boxes become training images.

    Defaults (the demo's, params.yaml's) follow the 1st-place solution: every box, boxes with extreme aspect
    ratio dropped (height/width below 0.2 or above 4, i.e. width/height outside 0.25..5), each box resized to
    64x64 as it is (stretch), no margin.
    """

    size: int = field(default=64, metadata=_range(8, 1024))  # other sizes: for looking only; train and score need 64
    square: SquareMethod = "stretch"
    margin: float = field(default=0.0, metadata=_range(0.0, 1.0))
    min_aspect: float = field(default=0.25, metadata=_range(0.0, None))
    max_aspect: float = field(default=5.0, metadata=_range(0.0, None))
    min_side: int = field(default=0, metadata=_range(0, None))
    resample: Resample = "lanczos"
    workers: int = field(default=0, metadata=_range(0, None))  # 0: one per CPU core
    grid_seed: int = field(default=0, metadata=SEED)

    def __post_init__(self) -> None:
        if self.min_aspect > self.max_aspect:
            raise ConfigError(
                f"prepare.min_aspect ({self.min_aspect}) must not exceed prepare.max_aspect ({self.max_aspect})"
            )


@dataclass(frozen=True)
class TrainConfig:
    """Section ``train``: the model, its loss and its optimisation. The defaults are params.yaml's, the demo's: a
    small conditional DCGAN that learns the demo's dogs in minutes on a CPU. The winners' settings are recipes
    (``recipes/*.yaml``, README "Recipes"), e.g. ``recipes/first-place.yaml``.

    The chosen model's own options come from ``train.<model>`` (e.g. ``train.biggan.g_width``) and end
    up, validated, in ``model_options``.
    """

    model: str = "dcgan"  # a name in pipeline.models.REGISTRY
    conditional: bool = True  # condition G and D on the breed
    loss: str = "bce"  # a name in pipeline.losses.LOSSES: bce, hinge, rals
    label_smoothing: float = field(default=0.1, metadata=_range(0.0, 0.5))  # bce only: real target 1 - this
    aux_class_weight: float = field(default=0.0, metadata=_range(0.0, None))  # > 0: D also classifies the breed
    batch_size: int = field(default=32, metadata=_range(1, 4096))  # per process
    # passes over the data set, counted in G updates (epochs x images / batch_size of them); with d_steps > 1,
    # D reads d_steps times as many real images. "auto": as many as fit time_budget_min (which it needs); with a
    # budget, a number of epochs that would not fit is cut to the steps that do (pipeline.plan)
    epochs: float | Literal["auto"] = field(default=40.0, metadata=_range(0.0, None))
    lr_g: float = field(default=3e-4, metadata=_range(0.0, 1.0))
    lr_d: float = field(default=3e-4, metadata=_range(0.0, 1.0))
    beta1: float = field(default=0.0, metadata=_range(0.0, 0.9999))
    beta2: float = field(default=0.999, metadata=_range(0.0, 0.9999))
    d_steps: int = field(default=1, metadata=_range(1, 10))  # D updates per G update
    cosine_restart_epochs: float = field(default=0.0, metadata=_range(0.0, None))  # as epochs counts them; 0: constant lr
    ema_decay: float = field(default=0.999, metadata=_range(0.0, 0.99999))  # 0: no EMA (G_ema = G)
    # 0: the EMA warms up from the first step (ema.ema_decay_at). N > 0: G_ema is a copy of G for the first N steps,
    # then averages at ema_decay (BigGAN-PyTorch's ema_start; 5th place: 30,000 at 0.9999)
    ema_start: int = field(default=0, metadata=_range(0, None))
    # LeCam regularisation (Tseng et al. 2021): this times the anchored penalty on D's logits (losses.lecam_penalty)
    # added to D's loss; 0: off. The paper's value with BigGAN: 0.3
    lecam_weight: float = field(default=0.0, metadata=_range(0.0, None))
    augment: str = ""  # DiffAugment policy, e.g. "color,translation,cutout"; "" = none
    hflip: bool = True  # random horizontal flips of the real images
    # random rotations of the real images: up to rotate_degrees either way, each image with probability rotate_p
    # (3rd place: 5 degrees, p 0.3); 0: none
    rotate_degrees: float = field(default=0.0, metadata=_range(0.0, 45.0))
    rotate_p: float = field(default=1.0, metadata=_range(0.0, 1.0))
    # uniform noise in [-real_noise, real_noise] added to real images on the [-1, 1] scale (one level: 2/255)
    real_noise: float = field(default=0.0, metadata=_range(0.0, 1.0))
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: see runtime.pick_amp_dtype
    channels_last: bool = True  # GPU only
    compile: bool = False  # torch.compile the models (GPU)
    # torch.compile's mode: reduce-overhead adds CUDA graphs, which replay a pass's kernels without
    # launching each one (a BigGAN step is launch-bound on a GPU; BENCHMARKS.md)
    compile_mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = "default"
    # 0: none. Otherwise training measures its speed first and plans the steps that fit (growth, cosine cycles and
    # all, laid over them) when the epochs would not; a last-resort stop still ends it cleanly in time
    time_budget_min: float = field(default=0.0, metadata=_range(0.0, None))
    checkpoint_every: int = field(default=200, metadata=_range(1, None))  # steps
    sample_every: int = field(default=25, metadata=_range(1, None))  # steps between sample grids
    log_every: int = field(default=10, metadata=_range(1, None))  # steps between logged losses
    sample_breeds: int = field(default=12, metadata=_range(1, 120))  # conditional grids: one row per breed
    # MiFID of the EMA generator against the training set during training (network etc.: the score section).
    # Off unless asked for (it needs the feature network and the reference statistics); on a GPU every
    # EVAL_EVERY_GPU steps should cost under 5% of the run (bench/eval_bench.py measures it)
    eval_every: int = field(default=0, metadata=_range(0, None))  # steps between evaluations; 0 = off
    eval_images: int = field(default=2000, metadata=_range(2, 100_000))  # generated images per evaluation
    seed: int = field(default=0, metadata=SEED)
    model_options: Any = field(default=None, metadata={"internal": True})  # from train.<model>


MAX_SAMPLE_GRIDS = 1000  # more sample grids than this in one run is time and disk spent on pictures


def sample_grid_warning(steps: float, sample_every: int) -> str | None:
    """A warning when ``steps`` of training at ``train.sample_every`` would draw over MAX_SAMPLE_GRIDS grids
    (about 1 MB each at 12 breeds); None otherwise."""
    grids = steps / sample_every
    if grids <= MAX_SAMPLE_GRIDS:
        return None
    return (f"train.sample_every {sample_every} draws about {grids:,.0f} sample grids in {steps:,.0f} steps "
            f"(about 1 MB each); e.g. train.sample_every={max(1, round(steps / 200))} keeps it near 200")


def epochs_need_budget(cfg: TrainConfig) -> None:
    """``train.epochs: auto`` trains as many epochs as fit the time budget, so it needs one: a ConfigError naming
    both keys when ``train.time_budget_min`` is 0. Checked when a run starts rather than with the section: the
    Kaggle kernel gives training a budget of its own (from kernel.time_budget_min), where auto needs no train one."""
    if cfg.epochs == "auto" and cfg.time_budget_min <= 0:
        raise ConfigError("train.epochs: auto trains as many epochs as fit train.time_budget_min, which is 0 (no "
                          "budget); set train.time_budget_min to the minutes training may take, or train.epochs to a "
                          "number")


EVAL_EVERY_GPU = 5000  # recommended train.eval_every on a GPU (1st-place schedule: 89,867 steps, 18 evaluations)


def _build_train(values: dict[str, Any] | None) -> TrainConfig:
    """The train section: its own keys, plus one sub-section per registered model."""
    from pipeline.augment import parse_policy  # these import torch: only the train-side stages pay for it
    from pipeline.losses import LOSSES
    from pipeline.models import REGISTRY

    if values is not None and not isinstance(values, dict):
        raise ConfigError(f"params section 'train' must be a mapping of keys to values, got {values!r}")
    values = dict(values or {})
    nested = {name: values.pop(name) for name in list(values) if name in REGISTRY}
    cfg = validate_dataclass(TrainConfig, values, "train")
    if cfg.model not in REGISTRY:
        raise ConfigError(f"train.model: {cfg.model!r} is not a known model; choose one of {', '.join(sorted(REGISTRY))}")
    try:
        parse_policy(cfg.augment)
    except ValueError as exc:
        raise ConfigError(f"train.augment: {exc}") from None
    if cfg.loss not in LOSSES:
        raise ConfigError(f"train.loss: {cfg.loss!r} is not a known loss; choose one of {', '.join(sorted(LOSSES))}")
    # every model sub-section is checked, so a typo under a model not in use is still caught
    options = {name: validate_dataclass(REGISTRY[name].options, sub, f"train.{name}") for name, sub in nested.items()}
    chosen = options.get(cfg.model) or REGISTRY[cfg.model].options()
    return dataclasses.replace(cfg, model_options=chosen)


MIN_TRUNCATION = 0.05  # smallest truncation threshold other than 0 (off); see GenerateConfig


@dataclass(frozen=True)
class GenerateConfig:
    """Section ``generate``: how a checkpoint is sampled into images.zip."""

    n: int = field(default=10_000, metadata=_range(1, None))  # Kaggle wants exactly 10,000
    truncation: float = field(default=0.8, metadata=_range(0.0, None))  # resample |z| >= this; 0 = off (1st place: 0.8)
    label_sampling: Literal["proportional", "uniform"] = "proportional"  # breeds as in the training set, or evenly
    use_ema: bool = True  # sample the EMA generator
    batch_size: int = field(default=100, metadata=_range(1, 100_000))  # 500: GBs of attention maps, slower on a CPU (BENCHMARKS.md)
    seed: int = field(default=0, metadata=SEED)
    # bf16: G runs under bf16 autocast, much faster on CPUs with AMX, pixels within a few levels of fp32's (BENCHMARKS.md)
    precision: Literal["fp32", "bf16"] = "fp32"

    def __post_init__(self) -> None:
        if 0 < self.truncation < MIN_TRUNCATION:
            raise ConfigError(
                f"generate.truncation: {self.truncation} is too small; use 0 (no truncation) or at least "
                f"{MIN_TRUNCATION}. Latents are redrawn until they fit: at {MIN_TRUNCATION} one normal draw in 25 "
                "does, and below that drawing 10,000 images' latents takes longer and longer")


@dataclass(frozen=True)
class ScoreConfig:
    """Section ``score``: how a submission zip is scored (MiFID against a reference set of training images).

    ``inception`` is the network Kaggle's public board used (its weights must be on disk or downloadable);
    ``standin`` needs no download but its numbers are not comparable to Kaggle's. ``photos`` is the reference
    Kaggle's scorer used (every training photo, whole, squashed to 64x64); ``crops`` is the prepared training set.
    """

    network: Literal["inception", "standin"] = "standin"  # a name in pipeline.metrics.features.NETWORKS
    reference: Literal["photos", "crops"] = "photos"  # photos: Kaggle's reference; crops: data/prepared/dogs64.npz
    eps: float = field(default=0.1, metadata=_range(0.0, 1.0))  # memorization threshold: public 0.1, private 0.25
    batch_size: int = field(default=100, metadata=_range(1, 100_000))  # images per feature-network pass
    inception_weights: str = ""  # path of pt_inception-2015-12-05-6726825d.pth; "" = $FID_WEIGHTS or the hub cache
    expected_images: int = field(default=10_000, metadata=_range(1, None))  # images the zip must hold (Kaggle: 10,000)
    chunk: int = field(default=1024, metadata=_range(1, None))  # generated rows per block of the distance computation
    # how Tr sqrtm(sigma_gen sigma_ref) is taken (pipeline.metrics.mifid.FRECHET_METHODS): eigh, from eigenvalues,
    # equals sqrtm, Kaggle's literal algorithm, far below any leaderboard difference, and is much faster (BENCHMARKS.md)
    frechet: Literal["sqrtm", "eigh"] = "eigh"


@dataclass(frozen=True)
class ReportConfig:
    """Section ``report``: what the memorization report shows (it scores with the ``score`` section)."""

    closest: int = field(default=16, metadata=_range(1, 1000))  # generated images closest to a training crop, shown
    breeds: int = field(default=12, metadata=_range(1, 120))  # rows of the per-breed grid: the most frequent breeds


KAGGLE_RUN_LIMIT_MIN = 540.0  # Kaggle stops a kernel after 9 hours


def slugify(title: str) -> str:
    """The URL slug Kaggle derives from a kernel title: ASCII, lower case, runs of anything else -> one dash.

    "Dog GANs: BigGAN (v2)" -> "dog-gans-biggan-v2". Kaggle links a kernel's slug to its title, so the
    id written in kernel-metadata.json must be this slug for the title to stick.
    """
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")


@dataclass(frozen=True)
class KernelConfig:
    """Section ``kernel``: the Kaggle kernel built from this experiment (``python -m pipeline.kernel``).

    The kernel runs prepare -> train -> generate on Kaggle with the prepare, train and generate sections
    of the same params file; these keys only say how it is published and how its time is shared out.
    """

    title: str = "Generative Dog Images GAN pipeline"  # the kernel's title; its URL slug is derived from it
    slug: str = ""  # "" = derived from the title (Kaggle links the two; a different slug draws a warning)
    username: str = ""  # Kaggle user that owns the kernel; "" = the user of your credentials at push time
    private: bool = True  # is_private in kernel-metadata.json
    kernel_type: Literal["script", "notebook"] = "script"  # a .py script or a one-cell .ipynb notebook
    time_budget_min: float = field(default=510.0, metadata=_range(1.0, KAGGLE_RUN_LIMIT_MIN))  # whole run
    reserve_min: float = field(default=20.0, metadata=_range(0.0, KAGGLE_RUN_LIMIT_MIN))  # kept for generate + zip
    keep_checkpoint: bool = False  # also write checkpoint.pt to the kernel's output (for `kaggle kernels output`)

    def __post_init__(self) -> None:
        if len(self.title.strip()) < 5:
            raise ConfigError(f"kernel.title: {self.title!r} is too short; Kaggle wants at least 5 characters")
        if not slugify(self.title):
            raise ConfigError(f"kernel.title: {self.title!r} has no letters or digits to make a URL slug from")
        if self.slug and not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", self.slug):
            raise ConfigError(f"kernel.slug: {self.slug!r} is not a URL slug; use lower-case letters, digits and "
                              f"single dashes, e.g. {slugify(self.title)!r} (or \"\" to derive it from the title)")
        if self.username and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", self.username):
            raise ConfigError(f"kernel.username: {self.username!r} is not a Kaggle user name "
                              "(letters, digits, - and _)")
        if self.reserve_min >= self.time_budget_min:
            raise ConfigError(f"kernel.reserve_min ({self.reserve_min}) must be less than kernel.time_budget_min "
                              f"({self.time_budget_min}): training needs some of the time")

    @property
    def kernel_slug(self) -> str:
        return self.slug or slugify(self.title)


# Every stage section, by name. Later stages add theirs here.
SECTIONS: dict[str, type] = {
    "data": DataConfig, "prepare": PrepareConfig, "train": TrainConfig, "generate": GenerateConfig,
    "score": ScoreConfig, "report": ReportConfig,
}
SECTIONS["kernel"] = KernelConfig  # its own line, so other stages' additions above merge cleanly


def _check_value(section: str, f: dataclasses.Field, hint: Any, value: Any) -> Any:
    key = f"{section}.{f.name}"
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):  # a value or some words, e.g. float | Literal["auto"]
        words = [w for h in typing.get_args(hint) if typing.get_origin(h) is Literal for w in typing.get_args(h)]
        if isinstance(value, str) and value in words:
            return value
        (other,) = [h for h in typing.get_args(hint) if typing.get_origin(h) is not Literal]
        try:
            return _check_value(section, f, other, value)
        except ConfigError as exc:
            raise ConfigError(f"{exc} (or {' or '.join(map(str, words))})") from None
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
        if isinstance(value, str):
            # YAML 1.1 (PyYAML, and DVC's `-S train.lr_g=1e-4`) reads 1e-4 as a string: it needs a dot (1.0e-4)
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{key}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):  # NaN passes every comparison below, and infinity is never meant
            raise ConfigError(f"{key}: {value!r} is not a finite number")
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


def validate_dataclass(cls: type, values: dict[str, Any] | None, prefix: str):
    """Check ``values`` against the fields of dataclass ``cls`` and build it; ``prefix`` names the keys."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"params {prefix!r} must be a mapping of keys to values, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(f'{prefix}.{k}' for k in unknown)}; "
            f"the keys of {prefix!r} are: {', '.join(fields)}"
        )
    hints = typing.get_type_hints(cls)
    checked = {k: _check_value(prefix, fields[k], hints[k], v) for k, v in values.items()}
    return cls(**checked)


def build_config(section: str, values: dict[str, Any] | None):
    """Validate a section's raw mapping into its dataclass; missing keys take their defaults."""
    if section not in SECTIONS:
        raise ConfigError(f"unknown params section {section!r}; known sections: {', '.join(SECTIONS)}")
    if section == "train":
        return _build_train(values)
    return validate_dataclass(SECTIONS[section], values, section)


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error: PyYAML keeps the
    last one silently, so an edit further up a long params.yaml would do nothing."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one mapping", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_params(path: str | os.PathLike | None = None, quiet: bool = False) -> dict[str, Any]:
    """The whole params file as a mapping. ``path`` None: params.yaml in the current folder, where a missing
    file means every built-in default (with a notice on stderr unless ``quiet``); a path the user named that
    does not exist is an error (a typo must not silently train with other settings)."""
    required = path is not None
    path = Path(path) if required else DEFAULT_PARAMS
    if not path.exists():
        if required:
            raise ConfigError(f"{path}: no such params file (given with --params); check the path, or leave "
                              f"--params out to read {DEFAULT_PARAMS} in the current folder")
        if not quiet:
            print(f"note: no {path} in {Path.cwd()}: every setting takes its built-in default "
                  "(run from the repository root to use its params.yaml)", file=sys.stderr)
        return {}
    return _read_yaml(path)


def _read_yaml(path: Path) -> dict[str, Any]:
    """A params or recipe file as a mapping: ConfigError naming the file when it is not UTF-8 YAML holding one."""
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8") from None
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
        prefix, _, rest = key.partition(".")
        if rest and prefix == section:
            key = rest
        elif rest and prefix in SECTIONS:
            raise ConfigError(f"--set {item!r}: this stage reads section {section!r}, not {prefix!r}")
        # anything else is a key of this section, nested or not: train.biggan.g_width or biggan.g_width
        *parents, leaf = key.split(".")
        node = values
        for part in parents:  # e.g. train.biggan.g_width=64
            child = node.get(part)
            node[part] = dict(child) if isinstance(child, dict) else {}
            node = node[part]
        node[leaf] = yaml.safe_load(raw)
    return values


def load_config(section: str, params_path: str | os.PathLike | None = None, overrides: list[str] | None = None,
                quiet: bool = False):
    """The validated config of ``section`` from ``params_path`` (None: params.yaml here, if there is one), its
    recipe applied (:func:`resolve_section`), plus command-line overrides. Under a recipe other than the demo a
    line on stderr says which (unless ``quiet``)."""
    params = read_params(params_path)
    if not isinstance(params.get(section) or {}, dict):
        raise ConfigError(f"{params_path or DEFAULT_PARAMS}: section {section!r} must be a mapping of keys to values")
    notes: list[str] = []
    raw = resolve_section(params, section, notes=notes)
    if not quiet:
        for note in notes:
            print(f"{section}: {note}", file=sys.stderr)
    return build_config(section, apply_overrides(section, raw, overrides or []))


# --- recipes ------------------------------------------------------------------------------------------------------
# A recipe is a named set of prepare, train and generate values in recipes/<name>.yaml (the winners' settings, ...),
# picked by params.yaml's top-level key `recipe` (`dvc exp run -S recipe=first-place`). params.yaml stays the demo,
# and its values are the code's defaults; so a value of params.yaml that differs from its default is one the user
# set (`-S train.epochs=60`, or an edit), and it wins over the recipe. Everything else the recipe sets, it sets.

RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"
RECIPE_SECTIONS = ("prepare", "train", "generate")  # what a recipe holds: how the images are made, learned, drawn
DEMO_RECIPE = "demo"  # recipes/demo.yaml sets nothing: params.yaml as it is


def recipe_names(folder: Path = RECIPES_DIR) -> list[str]:
    """The recipes there are: the stems of ``folder``'s .yaml files, sorted."""
    return sorted(p.stem for p in folder.glob("*.yaml"))


def recipe_of(params: dict[str, Any]) -> str:
    """The recipe a whole params mapping picks (its ``recipe`` key; the demo when it has none)."""
    name = params.get("recipe", DEMO_RECIPE)
    if name is None or name == "":
        return DEMO_RECIPE
    if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name):
        raise ConfigError(f"recipe: {name!r} is not a recipe name (a file name in recipes/ without .yaml, e.g. "
                          f"first-place)")
    return name


def read_recipe(name: str, folder: Path = RECIPES_DIR) -> dict[str, dict[str, Any]]:
    """The sections of recipe ``name`` (``folder/<name>.yaml``) as raw mappings, one per RECIPE_SECTIONS.

    An unknown name lists the known ones; a file that is not a mapping of exactly those sections is refused with
    the file named (DVC tracks each section of the recipe, so every recipe names all three, ``{}`` for none).
    The values themselves are checked by :func:`resolve_section`, which knows each section's keys."""
    path = folder / f"{name}.yaml"
    if not path.is_file():
        known = recipe_names(folder)
        raise ConfigError(f"recipe: {name!r} is not a known recipe (no {path}); the recipes are: "
                          f"{', '.join(known) or 'none'} (e.g. dvc exp run -S recipe={known[0] if known else 'NAME'})")
    data = _read_yaml(path)
    missing = [s for s in RECIPE_SECTIONS if s not in data]
    other = [s for s in data if s not in RECIPE_SECTIONS]
    if other or missing:
        raise ConfigError(f"{path}: a recipe holds exactly the sections {', '.join(RECIPE_SECTIONS)} ({{}} for none); "
                          + "; ".join(filter(None, [other and f"it has {', '.join(map(str, other))}",
                                                    missing and f"it lacks {', '.join(missing)}"])))
    for section, values in data.items():
        if values is not None and not isinstance(values, dict):
            raise ConfigError(f"{path}: section {section!r} must be a mapping of keys to values, got {values!r}")
    return {section: dict(data[section] or {}) for section in RECIPE_SECTIONS}


def recipe_title(title: str, recipe: str) -> str:
    """A kernel title that names ``recipe``: ``title`` itself where it does, else ``"<title>: <recipe>"``."""
    return title if recipe == DEMO_RECIPE or recipe in title else f"{title}: {recipe}"


def section_defaults(section: str) -> dict[str, Any]:
    """Every key of ``section`` with its default (the train section: with one mapping per registered model)."""
    cls = SECTIONS[section]
    defaults = {f.name: f.default for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    if section == "train":
        from pipeline.models import REGISTRY  # imports torch: only the train-side stages pay for it

        defaults.update({name: dataclasses.asdict(spec.options()) for name, spec in REGISTRY.items()})
    return defaults


def _plain(value: Any) -> Any:
    """A raw YAML value as the config reads it, for telling a user's value from a default: PyYAML reads ``3e-4`` as
    a string and an empty value as None, which the config takes as the number and as ""."""
    if value is None:
        return ""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _layer(mine: dict, recipe: dict, defaults: dict, prefix: str, yours: list[str]) -> dict:
    """``recipe`` over the defaults, and over that every value of ``mine`` that is not its default; the keys where
    one of ``mine`` overrode a different recipe value are appended to ``yours``."""
    merged = dict(mine)
    for key in dict.fromkeys([*mine, *recipe]):
        default = defaults.get(key)
        if isinstance(default, dict):  # a model's sub-section: key by key
            for source, where in ((mine, "params.yaml"), (recipe, "the recipe")):
                if not isinstance(source.get(key) or {}, dict):
                    raise ConfigError(f"{prefix}{key} in {where} must be a mapping of keys to values, "
                                      f"got {source[key]!r}")
            merged[key] = _layer(mine.get(key) or {}, recipe.get(key) or {}, default, f"{prefix}{key}.", yours)
        elif key in mine and (key not in defaults or _plain(mine[key]) != _plain(default)):
            if key in recipe and _plain(recipe[key]) != _plain(mine[key]):
                yours.append(f"{prefix}{key}: {mine[key]!r} (the recipe: {recipe[key]!r})")
        elif key in recipe:
            merged[key] = recipe[key]
    return merged


def resolve_section(params: dict[str, Any], section: str, folder: Path = RECIPES_DIR,
                    notes: list[str] | None = None) -> dict[str, Any]:
    """The raw ``section`` of a whole params mapping with its recipe applied (:func:`recipe_of`).

    A recipe sets the keys it names, except where params.yaml holds a value other than the key's default: that
    one is the user's, and wins. Sections that recipes do not hold come back as they are. The recipe's values
    are validated here, so that a wrong one is refused naming the key and the recipe's file. ``notes``, if given,
    gets one line saying which recipe is in force and which of params.yaml's values overrode it."""
    raw = params.get(section) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"params section {section!r} must be a mapping of keys to values, got {raw!r}")
    name = recipe_of(params)
    if section not in RECIPE_SECTIONS or name == DEMO_RECIPE:
        return dict(raw)
    recipe = read_recipe(name, folder)[section]
    try:
        build_config(section, recipe)
    except ConfigError as exc:
        raise ConfigError(f"{folder / f'{name}.yaml'}: {exc}") from None
    yours: list[str] = []
    merged = _layer(raw, recipe, section_defaults(section), f"{section}.", yours)
    if notes is not None:
        notes.append(f"recipe {name} ({folder.name}/{name}.yaml)" +
                     (f"; params.yaml overrides it: {', '.join(yours)}" if yours else ""))
    return merged


def add_config_arguments(parser: argparse.ArgumentParser, section: str) -> None:
    """Add ``--params`` and ``--set``, and list the section's keys and defaults in ``--help``."""
    cls = SECTIONS[section]
    here = _section_here(section)  # what params.yaml in this folder sets, shown beside the built-in defaults
    keys = ", ".join(
        f"{f.name}={f.default!r}" + (f" (params.yaml: {here[f.name]!r})" if f.name in here and here[f.name] != f.default
                                     else "")
        for f in dataclasses.fields(cls) if not f.metadata.get("internal"))
    recipe = (f" Its top-level key 'recipe' picks a recipe of recipes/ ({', '.join(recipe_names())}), whose "
              f"{section!r} values apply where the file keeps the defaults" if section in RECIPE_SECTIONS else "")
    parser.add_argument(
        "--params", metavar="FILE",
        help=f"params file whose {section!r} section configures this stage (default: {DEFAULT_PARAMS}, or the "
        f"built-in defaults where there is none).{recipe}",
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help=f"override one {section!r} key, repeatable. Keys, their built-in defaults and, where it differs, the "
        f"value {DEFAULT_PARAMS} here sets: {keys}",
    )


def _section_here(section: str) -> dict[str, Any]:
    """The raw ``section`` of params.yaml in the current folder, for --help only: {} when there is none or it
    cannot be read (the stage itself reports that when it runs)."""
    try:
        values = read_params(quiet=True).get(section)
    except (ConfigError, OSError):
        return {}
    return values if isinstance(values, dict) else {}


def option_overrides(**options: Any) -> list[str]:
    """Command-line options that stand for params keys, as ``--set`` overrides (``key=value``) of the options
    given (not None), so they are checked as the keys are: ``option_overrides(n=args.n, seed=args.seed)``."""
    return [f"{key}={value}" for key, value in options.items() if value is not None]


def config_from_args(args: argparse.Namespace, section: str):
    return load_config(section, args.params, args.set)


def as_dict(config) -> dict[str, Any]:
    return dataclasses.asdict(config)
