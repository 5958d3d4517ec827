"""Feature networks for FID / MiFID: a small registry, each network recording its name.

    images uint8 [N, H, W, 3] -> extract_features(network, ...) -> float32 [N, D]

Two networks are registered:

``inception``
    pytorch-fid's port of the TF Inception v3 graph of 2015-12-05 that Kaggle's public board used:
    2048-d ``pool_3`` features. Its input is made as the TF graph made it (:func:`inception_input`):
    the 0..255 pixels of the 64x64 image resized to 299x299 with TF1's ``resize_bilinear``
    (align_corners=False, no half-pixel centres), then ``(x - 128) / 128``; pytorch-fid's own input
    path (PyTorch's half-pixel bilinear resize and ``2x - 1``) is not used. Its weights
    (``pt_inception-2015-12-05-6726825d.pth``) are looked up, in this order, at the configured path
    (``score.inception_weights``), at ``$FID_WEIGHTS``, and in the torch hub cache
    (``torch.hub.get_dir()/checkpoints/``); only when none holds them is a download tried, with a short
    timeout, and a missing file is an error that says where to put it.

``standin``
    A small convolutional net with fixed random weights (drawn from a fixed seed with numpy's PCG64,
    so every machine builds the same weights) that needs no download: it makes the offline demo and
    the tests run end to end. ReLU + global average pooling give non-negative 512-d features, so all-zero
    rows can occur as with Inception. Its FID, distance and MiFID are NOT comparable to Kaggle's
    numbers (nor to Inception ones): use it to compare runs with each other and to catch copies of
    training images, nothing more. On the demo data its distance d is 0 for exact copies, 0.12 for
    blurred, 0.15 for mirrored and 0.23 for noisy or shifted copies, 0.17 for held-out images of the same
    set and 0.54 for noise; Kaggle's Inception gave real generative models 0.15 to 0.25 and the organisers'
    memorizer classes mostly 0.10 to 0.20, so only exact and near-exact copies fall below eps = 0.1 here.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from unittest import mock

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from pipeline.errors import first_line, load_error_text
from pipeline.files import atomic_path
from pipeline.runtime import exact_float32

INCEPTION_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_ENV = "FID_WEIGHTS"  # environment variable naming the Inception weights file
WEIGHTS_CONFIG_KEY = "score.inception_weights"
DOWNLOAD_TIMEOUT = 15.0  # seconds without an answer before a download attempt gives up

STANDIN_SEED = 20190814  # any fixed number; changing it changes every stand-in number
STANDIN_WIDTHS = (32, 64, 128, 256)  # channels of the four stride-2 3x3 convolutions
STANDIN_DIM = 512  # output features (a 1x1 convolution from the last width)
STANDIN_THRESHOLD = 1.5  # last ReLU: standard deviations a response must pass (sparse, selective features)
STANDIN_SCALE = 10.0  # output gain: features of order 0.1..1 as Inception's (see StandinNet)


def unit_interval(images: torch.Tensor) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> float32 [B, 3, H, W] in [0, 1] (x / 255): the stand-in network's input."""
    return images.permute(0, 3, 1, 2).float().div_(255.0)


INCEPTION_SIZE = 299  # the side the TF graph resized every image to


def tf1_resize_indices(in_size: int, out_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """TF1 ``resize_bilinear``'s source rows for one axis (align_corners=False, half_pixel_centers=False).

    Destination ``i`` reads source coordinate ``i * in_size / out_size`` (scale and product in float32, as TF):
    returns (lower int64 [out], upper int64 [out] = min(lower + 1, in_size - 1), lerp float32 [out] in [0, 1)).
    No half-pixel offset: the grid starts at the first pixel's corner and the last rows read the last source
    row twice (the clamp), so the picture is shifted by up to half a source pixel against PyTorch's resize.
    """
    scale = np.float32(in_size) / np.float32(out_size)
    source = np.arange(out_size, dtype=np.float32) * scale
    lower = np.floor(source)
    upper = np.minimum(lower + 1, in_size - 1)
    return (torch.from_numpy(lower.astype(np.int64)), torch.from_numpy(upper.astype(np.int64)),
            torch.from_numpy((source - lower).astype(np.float32)))


def resize_bilinear_tf1(x: torch.Tensor, size: int) -> torch.Tensor:
    """float [B, C, H, W] -> float32 [B, C, size, size], with TF1 ``resize_bilinear``'s arithmetic.

    As TF's kernel: each output row interpolates along x first (``top = a + (b - a) * x_lerp`` on the two
    source rows), then along y (``top + (bottom - top) * y_lerp``), in float32.
    """
    x = x.float()
    _, _, h, w = x.shape
    lo, hi, lerp = (t.to(x.device) for t in tf1_resize_indices(w, size))
    left, right = x.index_select(3, lo), x.index_select(3, hi)
    x = left + (right - left) * lerp  # [B, C, H, size]
    lo, hi, lerp = (t.to(x.device) for t in tf1_resize_indices(h, size))
    top, bottom = x.index_select(2, lo), x.index_select(2, hi)
    return top + (bottom - top) * lerp[:, None]


def inception_input(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """What the first convolution of Kaggle's TF Inception graph saw: uint8 [N, H, W, 3] (H = W = 64 for a
    submission) -> float32 [N, 3, 299, 299], ``(resize_bilinear_tf1(x) - 128) / 128`` with x the 0..255 values.

    The values lie in [-1, 127/128]. A tensor input stays on its device; a numpy array becomes a CPU tensor.
    """
    images = torch.as_tensor(images)
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[3] != 3:
        raise ValueError(f"images must be uint8 [N, H, W, 3], got {images.dtype} {tuple(images.shape)}")
    resized = resize_bilinear_tf1(images.permute(0, 3, 1, 2), INCEPTION_SIZE)
    return (resized - 128.0) / 128.0


class FeatureNetworkError(RuntimeError):
    """A feature network that cannot be built: unknown name, missing or unusable weights."""


@dataclass(frozen=True)
class FeatureNetwork:
    """A ready network.

    name:        its registry name ("inception", "standin")
    module:      its input (what ``prepare`` makes) -> float [B, dim]
    dim:         feature size (2048 for Inception)
    comparable_to_kaggle: True only when its MiFID can be set beside the 2019 public board
    fingerprint: identifies the weights (file name, size and hash; or the stand-in's seed and hash),
                 so cached reference statistics are recomputed when the weights change
    prepare:     uint8 [B, H, W, 3] tensor -> the module's input (default :func:`unit_interval`)
    """

    name: str
    module: nn.Module
    dim: int
    comparable_to_kaggle: bool
    fingerprint: str
    prepare: Callable[[torch.Tensor], torch.Tensor] = unit_interval


@dataclass(frozen=True)
class NetworkEntry:
    name: str
    build: Callable[[str], FeatureNetwork]  # weights path ("" = look it up) -> network
    comparable_to_kaggle: bool
    description: str


NETWORKS: dict[str, NetworkEntry] = {}


def register_network(name: str, *, comparable_to_kaggle: bool, description: str):
    """Decorator: register ``build(weights: str) -> FeatureNetwork`` under ``name`` (no duplicates)."""

    def add(build: Callable[[str], FeatureNetwork]) -> Callable[[str], FeatureNetwork]:
        if name in NETWORKS:
            raise ValueError(f"feature network {name!r} is already registered")
        NETWORKS[name] = NetworkEntry(name, build, comparable_to_kaggle, description)
        return build

    return add


def load_network(name: str, weights: str = "") -> FeatureNetwork:
    """Build the registered network ``name``. ``weights``: a weights file for networks that need one
    ("" = look in the usual places); raises :class:`FeatureNetworkError` naming the known networks or the
    missing file."""
    if name not in NETWORKS:
        known = ", ".join(f"{n} ({e.description})" for n, e in sorted(NETWORKS.items()))
        raise FeatureNetworkError(f"unknown feature network {name!r}; choose one of: {known}")
    network = NETWORKS[name].build(weights)
    network.module.eval().requires_grad_(False)
    return network


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------ Inception


def hub_weights_path() -> Path:
    """Where torch.hub (and so pytorch-fid) keeps the Inception weights: <hub dir>/checkpoints/<file>."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILE


def _weights_url() -> str:
    from pytorch_fid.inception import FID_WEIGHTS_URL

    return FID_WEIGHTS_URL


def _missing_weights_message(reason: str) -> str:
    return (
        f"the Inception weights {INCEPTION_WEIGHTS_FILE} are not available ({reason}). The inception network "
        f"(pytorch-fid's port of the 2015-12-05 TF graph Kaggle scored with) needs them: download "
        f"{_weights_url()} on a machine with internet and either put the file at {hub_weights_path()} "
        f"(the torch hub cache), or set {WEIGHTS_CONFIG_KEY} in params.yaml (or the environment variable "
        f"{WEIGHTS_ENV}) to its path. To run without them, use the stand-in network "
        f"(score.network: standin), whose numbers are not comparable to Kaggle's."
    )


def download_weights(url: str, dest: Path, timeout: float | None = None) -> None:
    """Fetch ``url`` into ``dest`` atomically; OSError (URLError, timeouts) when it cannot.

    timeout: seconds to wait for the connection and for each block (default: DOWNLOAD_TIMEOUT).
    """
    timeout = DOWNLOAD_TIMEOUT if timeout is None else timeout
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, atomic_path(dest) as tmp:
            total = int(response.headers.get("Content-Length") or 0) or None
            with open(tmp, "wb") as fh, tqdm(total=total, unit="B", unit_scale=True, desc=dest.name) as bar:
                for block in iter(lambda: response.read(1 << 20), b""):
                    fh.write(block)
                    bar.update(len(block))
    except http.client.HTTPException as exc:  # a connection cut mid-file
        raise OSError(f"download interrupted: {exc}") from None


def find_inception_weights(configured: str = "", download: bool = True) -> Path:
    """The Inception weights file: ``configured`` path, else $FID_WEIGHTS, else the torch hub cache,
    else downloaded into the hub cache (when ``download``). Raises :class:`FeatureNetworkError` without
    waiting long when none of these works."""
    for path, origin in ((configured, WEIGHTS_CONFIG_KEY), (os.environ.get(WEIGHTS_ENV, ""), f"${WEIGHTS_ENV}")):
        if path:
            path = Path(path).expanduser()
            if not path.is_file():
                raise FeatureNetworkError(_missing_weights_message(f"{origin} names {path}, which is not a file"))
            return path
    hub = hub_weights_path()
    if hub.is_file():
        return hub
    if not download:
        raise FeatureNetworkError(_missing_weights_message(f"not in the torch hub cache {hub.parent}"))
    try:
        download_weights(_weights_url(), hub)
    except (urllib.error.URLError, OSError) as exc:  # URLError, socket timeouts, disk errors are all OSError
        raise FeatureNetworkError(_missing_weights_message(f"not found locally and the download failed: {exc}")) \
            from None
    return hub


class _PoolFeatures(nn.Module):
    """pytorch-fid's InceptionV3 (one output block) -> flat [B, 2048] features."""

    def __init__(self, inception: nn.Module):
        super().__init__()
        self.inception = inception

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inception(x)[0].flatten(1)


@register_network("inception", comparable_to_kaggle=True,
                  description="pytorch-fid Inception v3 pool_3, 2048-d, Kaggle's public-board network")
def build_inception(weights: str = "") -> FeatureNetwork:
    from pytorch_fid import inception as fid_inception

    path = find_inception_weights(weights)
    if path.stat().st_size == 0:
        raise FeatureNetworkError(f"{path} is empty (0 bytes). It should be pytorch-fid's {INCEPTION_WEIGHTS_FILE} "
                                  f"from {_weights_url()} (about 91 MB); replace it.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means the same thing: not a weights file
        raise FeatureNetworkError(
            f"{path} is not a readable PyTorch weights file ({load_error_text(exc)}). "
            f"It should be pytorch-fid's {INCEPTION_WEIGHTS_FILE} from {_weights_url()}; replace it."
        ) from None
    # InceptionV3's constructor fetches the weights itself (load_state_dict_from_url, always from the
    # internet or the hub cache); hand it the state dict already loaded, so a configured path works and
    # the constructor never touches the network.
    try:
        with mock.patch.object(fid_inception, "load_state_dict_from_url", lambda *args, **kwargs: state):
            net = fid_inception.InceptionV3(
                # the input comes from inception_input, already resized and scaled as the TF graph did
                [fid_inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]], resize_input=False, normalize_input=False
            )
    except (RuntimeError, TypeError, AttributeError, KeyError) as exc:
        raise FeatureNetworkError(
            f"{path} does not hold the Inception weights pytorch-fid expects ({first_line(exc)}). "
            f"It should be {INCEPTION_WEIGHTS_FILE} from {_weights_url()}; replace it."
        ) from None
    # the input path is part of what the features depend on: statistics cached with another one are stale
    fingerprint = f"{INCEPTION_WEIGHTS_FILE}:{path.stat().st_size}:{_sha256_file(path)[:16]}:input=tf1-bilinear"
    return FeatureNetwork("inception", _PoolFeatures(net), 2048, True, fingerprint, prepare=inception_input)


# -------------------------------------------------------------------------------------------------- stand-in


class StandinNet(nn.Module):
    """Four stride-2 3x3 convolutions and a 1x1 convolution, each followed by a per-position
    standardisation across channels and a ReLU (the last one thresholded), then global average pooling.

    Input float [B, 3, H, W] in [0, 1] (any H, W; :func:`unit_interval`); output float [B, 512], non-negative.

    Random features are only useful to the cosine distance when they are selective; without the three
    choices below every image looks like a near-copy of every other (d ~ 0.01 between unrelated images):
    the filters sum to zero (no response to flat colour, which all images share), the standardisation
    keeps every layer at unit scale whatever the input, and the last ReLU passes only responses above
    ``threshold`` standard deviations (sparse features, zero rows possible as with Inception's).
    The output is multiplied by ``scale`` so that features are of order 0.1..1, as Inception's: with
    covariances of order 1e-4 scipy's sqrtm takes seconds instead of a fraction of one on the singular
    products that small sample sets give (the cosine distance does not depend on the scale).
    """

    def __init__(self, widths: tuple[int, ...] = STANDIN_WIDTHS, dim: int = STANDIN_DIM,
                 threshold: float = STANDIN_THRESHOLD, scale: float = STANDIN_SCALE):
        super().__init__()
        self.convs = nn.ModuleList()
        c_in = 3
        for c in widths:
            self.convs.append(nn.Conv2d(c_in, c, 3, stride=2, padding=1, bias=False))
            c_in = c
        self.head = nn.Conv2d(c_in, dim, 1, bias=False)
        self.threshold = threshold
        self.scale = scale

    @staticmethod
    def _standardize(x: torch.Tensor) -> torch.Tensor:
        return (x - x.mean(dim=1, keepdim=True)) / (x.std(dim=1, keepdim=True) + 1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = 2 * x - 1  # centred input, as Inception gets
        for conv in self.convs:
            x = torch.relu(self._standardize(conv(x)))
        x = torch.relu(self._standardize(self.head(x)) - self.threshold)
        return self.scale * x.mean(dim=(2, 3))


def standin_weights(net: StandinNet, seed: int = STANDIN_SEED) -> None:
    """Fill ``net`` with fixed random zero-sum He-normal filters.

    They come from numpy's PCG64 generator, not torch's default initialisation, so they are the same on
    every machine and torch version.
    """
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for conv in [*net.convs, net.head]:
            w = rng.standard_normal(tuple(conv.weight.shape))
            w -= w.mean(axis=(1, 2, 3), keepdims=True)
            w *= np.sqrt(2.0 / w[0].size)
            conv.weight.copy_(torch.from_numpy(w.astype(np.float32)))


@register_network("standin", comparable_to_kaggle=False,
                  description="fixed random conv net, 512-d, offline demo only, NOT comparable to Kaggle")
def build_standin(weights: str = "") -> FeatureNetwork:
    del weights  # its weights come from a seed
    net = StandinNet()
    standin_weights(net)
    h = hashlib.sha256()
    for name, tensor in net.state_dict().items():
        h.update(name.encode())
        h.update(tensor.numpy().tobytes())
    settings = f"seed={STANDIN_SEED}:threshold={STANDIN_THRESHOLD}:scale={STANDIN_SCALE}"
    fingerprint = f"standin:{settings}:{h.hexdigest()[:16]}"
    return FeatureNetwork("standin", net, STANDIN_DIM, False, fingerprint)


# ------------------------------------------------------------------------------------------------ extraction


@torch.no_grad()
def extract_features(
    network: FeatureNetwork,
    images: np.ndarray,
    batch_size: int = 100,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> np.ndarray:
    """Features of ``images``: uint8 [N, H, W, 3] RGB (64x64 here) -> float32 [N, network.dim].

    Each batch goes through ``network.prepare`` (Inception: the TF graph's resize and scale) on ``device``. On a GPU the
    network runs in full float32 (``runtime.exact_float32``: no TF32), so features do not depend on the GPU.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
        raise ValueError(f"images must be uint8 [N, H, W, 3], got {images.dtype} {images.shape}")
    if len(images) == 0:
        raise ValueError("no images to extract features from")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    device = torch.device(device)
    module = network.module.to(device).eval()
    out = np.empty((len(images), network.dim), dtype=np.float32)
    with tqdm(total=len(images), desc=f"features ({network.name})", unit="img", disable=not progress) as bar, \
            exact_float32():
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(images[start:start + batch_size]).to(device)
            feats = module(network.prepare(batch))
            if feats.shape != (len(batch), network.dim):
                raise RuntimeError(f"{network.name} gave features of shape {tuple(feats.shape)}, "
                                   f"expected ({len(batch)}, {network.dim})")
            out[start:start + len(batch)] = feats.float().cpu().numpy()
            bar.update(len(batch))
    return out
