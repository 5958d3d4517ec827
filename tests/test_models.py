"""Models: the shared interface for every registered model, plus ProGAN's schedule and BigGAN's spectral norm.

Small widths keep the file fast on a CPU wherever the test does not depend on the default size.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import typing

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from pipeline.config import ConfigError, validate_dataclass
from pipeline.models import REGISTRY, build_model, model_entry
from pipeline.models.biggan import BigGANOptions
from pipeline.models.dcgan import DCGANOptions
from pipeline.models.layers import SpectralNorm, cached_spectral_norms, minibatch_stddev, pixel_norm, sn_conv2d
from pipeline.models.progan import ProGANOptions, schedule

NAMES = sorted(REGISTRY)
SMALL = {
    "dcgan": DCGANOptions(z_dim=16, g_width=8, d_width=8),
    "progan": ProGANOptions(z_dim=16, width=16),
    "biggan": BigGANOptions(z_dim=20, shared_dim=16, g_width=4, d_width=4),  # attention at 32 stays on
}
N_CLASSES = 5


def small(name: str, n_classes: int = N_CLASSES, aux: bool = False, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(name, SMALL.get(name), n_classes, aux)


def inputs(G, n: int, n_classes: int, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, G.z_dim, generator=gen)
    y = torch.randint(0, n_classes, (n,), generator=gen) if n_classes else None
    return z, y


def set_progress(fraction: float, *models) -> None:
    for m in models:
        if hasattr(m, "set_progress"):
            m.set_progress(fraction)


def bce_step(G, D, n: int, n_classes: int, lr: float = 1e-3) -> tuple[float, float]:
    """One D step then one G step of the plain non-saturating GAN, written out here."""
    opt_g = torch.optim.Adam(G.parameters(), lr=lr, betas=(0.0, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=lr, betas=(0.0, 0.999))
    real = torch.rand(n, 3, 64, 64) * 2 - 1
    z, y = inputs(G, n, n_classes)
    ones, zeros = torch.ones(n), torch.zeros(n)
    with torch.no_grad():
        fake = G(z, y)
    logits, _ = D(torch.cat([real, fake]), torch.cat([y, y]) if n_classes else None)
    loss_d = F.binary_cross_entropy_with_logits(logits.float(), torch.cat([ones, zeros]))
    opt_d.zero_grad()
    loss_d.backward()
    opt_d.step()
    D.requires_grad_(False)
    fake_logits, _ = D(G(z, y), y)
    loss_g = F.binary_cross_entropy_with_logits(fake_logits.float(), ones)
    opt_g.zero_grad()
    loss_g.backward()
    opt_g.step()
    D.requires_grad_(True)
    return loss_d.item(), loss_g.item()


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


# --- the interface, for every model ------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("n_classes", [0, N_CLASSES])
@pytest.mark.parametrize("aux", [False, True])
@pytest.mark.parametrize("n, train", [(1, False), (3, True)])  # batch 1 in eval mode: batch norm needs a batch
def test_shapes_and_range(name, n_classes, aux, n, train):
    G, D = small(name, n_classes, aux)
    G.train(train), D.train(train)
    assert G.z_dim == (SMALL.get(name) or model_entry(name).options()).z_dim and G.n_classes == n_classes
    z, y = inputs(G, n, n_classes)
    with torch.no_grad():
        x = G(z, y)
        logits, cls = D(x, y)
    assert x.shape == (n, 3, 64, 64) and x.dtype == torch.float32
    assert torch.isfinite(x).all() and x.abs().max() <= 1.0
    assert logits.shape == (n,) and torch.isfinite(logits).all()
    if aux and n_classes:
        assert cls.shape == (n, n_classes) and torch.isfinite(cls).all()
    else:
        assert cls is None


@pytest.mark.parametrize("name", NAMES)
def test_conditional_models_need_labels(name):
    G, D = small(name)
    z, _ = inputs(G, 2, 0)
    with pytest.raises(ValueError, match="conditional"):
        G(z, None)
    with pytest.raises(ValueError, match="conditional"):
        D(torch.zeros(2, 3, 64, 64), None)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("n_classes", [0, N_CLASSES])
def test_one_optimisation_step_changes_both_nets(name, n_classes):
    G, D = small(name, n_classes, aux=n_classes > 0)
    set_progress(0.22, G, D)  # ProGAN: stage 2 mid-way, so a fade-in is being trained
    before_g, before_d = snapshot(G), snapshot(D)
    loss_d, loss_g = bce_step(G, D, 4, n_classes)
    assert math.isfinite(loss_d) and math.isfinite(loss_g)
    for model, before in ((G, before_g), (D, before_d)):
        changed = {k for k, p in model.named_parameters() if not torch.equal(p, before[k])}
        assert changed, f"{type(model).__name__} did not change"
        # every weight that received a non-zero gradient moved
        pushed = {k for k, p in model.named_parameters() if p.grad is not None and p.grad.abs().max() > 0}
        assert pushed <= changed


@pytest.mark.parametrize("name", NAMES)
def test_labels_change_the_output(name):
    G, D = small(name)  # in training mode: DCGAN's untrained nets in eval mode give outputs near 1e-6
    z, _ = inputs(G, 1, 0)
    z = z.repeat(2, 1)
    y = torch.tensor([0, 3])
    with torch.no_grad():
        x = G(z, y)  # same z, different breeds
        logits, _ = D(x[:1].repeat(2, 1, 1, 1), y)  # same image, different breeds
    assert (x[0] - x[1]).abs().max() > 1e-3
    assert (logits[0] - logits[1]).abs() > 1e-4 * logits.abs().max()


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_and_deepcopy(name):
    G, D = small(name, aux=True)
    bce_step(G, D, 4, N_CLASSES)  # moves weights, batch-norm statistics and spectral-norm vectors
    set_progress(0.65, G, D)
    G2, D2 = small(name, aux=True, seed=123)
    G2.load_state_dict(G.state_dict())
    D2.load_state_dict(D.state_dict())
    G3, D3 = copy.deepcopy(G), copy.deepcopy(D)  # how the EMA copy is made, here after training forwards
    z, y = inputs(G, 3, N_CLASSES)
    outputs = []
    for g, d in ((G, D), (G2, D2), (G3, D3)):
        g.eval(), d.eval()
        with torch.no_grad():
            x = g(z, y)
            outputs.append((x, *d(x, y)))
    for other in outputs[1:]:
        for a, b in zip(outputs[0], other):
            assert torch.equal(a, b)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA GPU"))])
def test_bf16_autocast_and_channels_last(name, device):
    G, D = small(name, aux=True)
    G = G.to(device).to(memory_format=torch.channels_last)
    D = D.to(device).to(memory_format=torch.channels_last)
    set_progress(0.46, G, D)  # ProGAN: the 64x64 stage, fading in
    z, y = inputs(G, 4, N_CLASSES)
    z, y = z.to(device), y.to(device)
    with torch.autocast(device_type=device, dtype=torch.bfloat16):
        x = G(z, y)
        logits, cls = D(x.contiguous(memory_format=torch.channels_last), y)
        loss = F.softplus(-logits.float()).mean() + F.cross_entropy(cls.float(), y)
    loss.backward()
    assert x.shape == (4, 3, 64, 64) and torch.isfinite(x).all() and x.abs().max() <= 1.0
    assert torch.isfinite(loss)
    grads = [p.grad for p in G.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


# 1x1 conv weight gradients [o, i, 1, 1] can come back with other (equivalent) strides than the weight's;
# DDP compares strides literally and warns, though the memory layout is the same
@pytest.mark.filterwarnings("ignore:Grad strides do not match bucket view strides")
def test_runtime_wraps_in_ddp_without_deprecation_warnings(tmp_path):
    """Runtime.wrap (torchrun's path) leaves broadcast_buffers at its default: passing it makes torch 2.14 warn
    on every rank that the name is deprecated. ProGAN: the model that also needs find_unused_parameters."""
    import warnings

    from pipeline.runtime import Runtime

    if dist.is_initialized():
        pytest.skip("a process group is already running in this process")
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    try:
        G, D = small("progan")
        rt = Runtime(device=torch.device("cpu"), amp_dtype=None, channels_last=False, rank=0, world_size=2)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            wrapped = rt.wrap(D)
        assert isinstance(wrapped, nn.parallel.DistributedDataParallel) and wrapped.find_unused_parameters
        ours = ("broadcast_buffers", "find_unused_parameters", "device_ids")  # the arguments wrap could pass
        assert not [w for w in caught if issubclass(w.category, (FutureWarning, DeprecationWarning))
                    and any(name in str(w.message) for name in ours)]
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("name", NAMES)
def test_distributed_data_parallel(name, tmp_path):
    """One process of gloo DDP, used as the training loop does: D twice before one backward, then a deepcopy."""
    if dist.is_initialized():
        pytest.skip("a process group is already running in this process")
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    try:
        G, D = small(name)
        set_progress(0.3, G, D)
        unused = getattr(D, "has_unused_parameters", False)  # ProGAN: the layers of later stages idle
        ddp_d = nn.parallel.DistributedDataParallel(D, find_unused_parameters=unused)  # buffers broadcast, the default
        opt = torch.optim.Adam(ddp_d.parameters(), lr=1e-3)
        z, y = inputs(G, 2, N_CLASSES)
        before = {k: v.detach().clone() for k, v in D.named_parameters()}
        for _ in range(2):
            with torch.no_grad():
                fake = G(z, y)
            logits, _ = ddp_d(torch.cat([fake, fake.flip(3)]), torch.cat([y, y]))
            with torch.no_grad():
                D(fake, y)
            opt.zero_grad()
            F.softplus(logits).mean().backward()
            opt.step()
        # (ProGAN's layers of later stages idle: DDP hands them zero gradients, and Adam leaves them as they were)
        grads = {k: v.grad for k, v in D.named_parameters() if v.grad is not None}
        assert grads and all(torch.isfinite(g).all() for g in grads.values())
        trained = [k for k, g in grads.items() if g.abs().sum() > 0]
        assert trained and all(not torch.equal(before[k], D.get_parameter(k)) for k in trained)  # updates reached D
        twin = copy.deepcopy(D)
        assert all(torch.equal(a, b) for a, b in zip(twin.state_dict().values(), D.state_dict().values()))
    finally:
        dist.destroy_process_group()


# --- registry and options -----------------------------------------------------------------------------


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(KeyError) as err:
        model_entry("stylegan9")
    for name in ("biggan", "dcgan", "progan"):
        assert name in str(err.value)


def test_options_of_another_model_are_rejected():
    with pytest.raises(TypeError, match="DCGANOptions"):
        build_model("dcgan", ProGANOptions())
    with pytest.raises(ValueError):
        build_model("dcgan", None, -1)


@pytest.mark.parametrize("name", NAMES)
def test_options_are_frozen_plain_dataclasses(name):
    cls = model_entry(name).options
    assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen
    for f in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls)[f.name]
        assert hint in (int, float, bool, str) or typing.get_origin(hint) is typing.Literal, f.name
        assert f.default is not dataclasses.MISSING, f.name
    with pytest.raises(dataclasses.FrozenInstanceError):
        cls().z_dim = 3  # every model's options name their latent size z_dim
    with pytest.raises(ConfigError, match="whole number"):
        validate_dataclass(cls, {"z_dim": 1.5}, f"train.{name}")
    with pytest.raises(ConfigError, match="out of range"):
        validate_dataclass(cls, {"z_dim": 0}, f"train.{name}")
    assert validate_dataclass(cls, {}, f"train.{name}") == cls()


def test_biggan_attention_resolution_is_a_choice():
    with pytest.raises(ConfigError, match="choose one of"):
        validate_dataclass(BigGANOptions, {"attention_res": 12}, "train.biggan")
    G, D = build_model("biggan", BigGANOptions(g_width=2, d_width=2, attention_res=0), 0)
    assert len(G.attention) == 0 and len(D.attention) == 0


# --- layers -------------------------------------------------------------------------------------------


def test_pixel_norm_by_hand():
    x = torch.tensor([3.0, 4.0]).reshape(1, 2, 1, 1)  # mean square 12.5
    assert torch.allclose(pixel_norm(x).flatten(), torch.tensor([3.0, 4.0]) / 12.5**0.5)


def test_minibatch_stddev_by_hand():
    # two groups of two; group 1: values 0 and 2 everywhere (std 1), group 2: 5 and 5 (std 0)
    x = torch.tensor([0.0, 2.0, 5.0, 5.0]).reshape(4, 1, 1, 1).expand(4, 2, 3, 3)
    out = minibatch_stddev(x, group_size=2)
    assert out.shape == (4, 3, 3, 3)
    assert torch.allclose(out[:, 2, 0, 0], torch.tensor([1.0, 1.0, 0.0, 0.0]), atol=1e-3)
    assert torch.equal(out[:, :2], x)
    assert minibatch_stddev(torch.randn(3, 2, 4, 4), group_size=4).shape == (3, 3, 4, 4)  # group of 3
    assert torch.allclose(minibatch_stddev(torch.randn(1, 2, 4, 4))[:, 2], torch.tensor(1e-4), atol=1e-6)


# --- ProGAN -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fraction, expected", [
    # grow 0.5 over 8 units of 1/16: 4x4 stable for one unit, then fade-in + stable units for 8, 16, 32, and
    # 64x64's fade-in unit; from 0.5 on, 64x64 stable (the paper's proportions at 64x64: 5.4M of 12M images)
    (0.0, (0, 1.0)),      # stage 0 has nothing to fade in
    (0.06, (0, 1.0)),
    (0.0625, (1, 0.0)),   # stage 1 starts with the 8x8 block invisible
    (0.09375, (1, 0.5)),  # half-way through stage 1's fade (0.0625-0.125)
    (0.125, (1, 1.0)),    # fade done; 0.125-0.1875 stable
    (0.18, (1, 1.0)),
    (0.21875, (2, 0.5)),
    (0.4375, (4, 0.0)),   # 64x64 starts fading in
    (0.46875, (4, 0.5)),
    (0.5, (4, 1.0)),      # grown: the rest of training at 64x64
    (1.0, (4, 1.0)),
    (1.5, (4, 1.0)),
    (-0.1, (0, 1.0)),
])
def test_progan_schedule_by_hand(fraction, expected):
    stage, alpha = schedule(fraction, 5)
    assert stage == expected[0] and alpha == pytest.approx(expected[1])


def test_progan_schedule_grows_over_the_fraction_asked():
    assert schedule(0.99, 5, grow=1.0) == (4, pytest.approx(0.92))  # all of training grows: the last unit fades
    assert schedule(0.125, 5, grow=1.0) == (1, 0.0)
    assert schedule(0.3, 1) == (0, 1.0)


def blockiness(x: torch.Tensor, size: int) -> float:
    """The largest spread of values inside any size x size block of [N, 3, 64, 64] images."""
    blocks = x.reshape(len(x), 3, 64 // size, size, 64 // size, size)
    return float((blocks.amax(dim=(3, 5)) - blocks.amin(dim=(3, 5))).max())


def test_progan_grows_with_progress():
    G, D = small("progan")
    z, y = inputs(G, 2, N_CLASSES)
    real = torch.rand(2, 3, 64, 64) * 2 - 1
    # a +-0.5 checkerboard of 1-pixel squares averages to 0 over every 2x2 block: invisible below 64x64
    checker = (torch.arange(64)[:, None] + torch.arange(64)[None, :]) % 2 - 0.5
    with torch.no_grad():
        assert int(G.stage) == 0 and float(G.alpha) == 1.0  # a fresh model is at the start of training
        x0 = G(z, y)
        assert blockiness(x0, 16) == 0.0 and blockiness(x0, 32) > 0  # 4x4 generated, shown as 16x16 blocks
        d0 = D(real, y)[0]
        assert torch.allclose(d0, D(real + checker, y)[0], atol=1e-5)
        set_progress(0.28, G, D)  # stage 2 (16x16), stable (0.25-0.3125)
        assert blockiness(G(z, y), 4) == 0.0 and blockiness(G(z, y), 8) > 0
        set_progress(0.0625, G, D)  # stage 1 at alpha 0: exactly stage 0's output (the new block is invisible)
        assert torch.equal(G(z, y), x0)
        assert torch.allclose(D(real, y)[0], d0, atol=1e-5)
        set_progress(1.0, G, D)
        x4 = G(z, y)
        assert blockiness(x4, 2) > 0
        assert not torch.allclose(D(real, y)[0], D(real + checker, y)[0], atol=1e-5)  # D now sees every pixel


def test_progan_compiles_once_per_stage():
    """Under torch.compile (train.compile) the forward passes specialise on the stage alone: 5 graphs each for
    the whole schedule, none broken (reading the stage and alpha as numbers broke every step and recompiled
    for every alpha, past torch.compile's limit of 8)."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    G, D = small("progan")
    compiled_g, compiled_d = torch.compile(G, backend="eager"), torch.compile(D, backend="eager")
    z, y = inputs(G, 2, N_CLASSES)
    with torch.no_grad():
        for i in range(41):  # every stage, fading in and stable
            set_progress(i / 40, G, D)
            x = compiled_g(z, y)
            assert torch.equal(x, G(z, y)) and torch.equal(compiled_d(x, y)[0], D(x, y)[0])
    assert counters["stats"]["unique_graphs"] == 10  # 5 stages x (G, D)
    assert not counters["graph_break"]
    torch._dynamo.reset()


def test_progan_fade_in_ends_exactly_on_the_new_path():
    """At alpha 1 the blend, always computed past stage 0, gives the new resolution's output bit for bit."""
    for dtype in (torch.float32, torch.bfloat16):
        old, new = torch.randn(1000, dtype=dtype), torch.randn(1000, dtype=dtype)
        G, _ = small("progan")
        set_progress(1.0, G, _)
        assert torch.equal(G.blend(old, new), new)
        set_progress(0.4375, G, _)  # stage 4 at alpha 0
        assert torch.equal(G.blend(old, new), old)


def test_progan_progress_survives_state_dict():
    G, D = small("progan")
    set_progress(0.46875, G, D)  # stage 4, alpha 0.5
    G2, D2 = small("progan", seed=7)
    assert int(G2.stage) == 0
    G2.load_state_dict(G.state_dict())
    D2.load_state_dict(D.state_dict())
    for m in (G2, D2):
        assert int(m.stage) == 4 and float(m.alpha) == 0.5
        assert m.current_stage == 4  # the int the forward pass branches on follows the loaded buffer
    assert {"stage", "alpha"} <= set(G.state_dict()) & set(D.state_dict())


# --- BigGAN -------------------------------------------------------------------------------------------


def test_biggan_every_conv_and_linear_is_spectral_normed():
    G, D = small("biggan", aux=True)
    layers = [(n, m) for model in (G, D) for n, m in model.named_modules()
              if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)) and n != "shared"]
    assert len(layers) > 20
    plain = [n for n, m in layers if not parametrize.is_parametrized(m, "weight")]
    assert not plain


def test_biggan_spectral_norm_keeps_the_top_singular_value_at_one():
    G, D = small("biggan")
    conv = D.blocks[1].conv1  # [8, 4, 3, 3]: a 8 x 36 matrix
    # give the raw weight a known spectrum (top singular value 5, the next 2): the estimate must find it
    u, _, vh = torch.linalg.svd(torch.randn(8, 36), full_matrices=False)
    spectrum = torch.tensor([5.0, 2.0, 1.5, 1.0, 1.0, 0.5, 0.5, 0.5])
    with torch.no_grad():
        conv.parametrizations.weight.original.copy_(((u * spectrum) @ vh).reshape(8, 4, 3, 3))
    D.train()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    for _ in range(5):
        D(x, torch.tensor([0, 1]))
    raw = torch.linalg.matrix_norm(conv.parametrizations.weight.original.detach().flatten(1), ord=2)
    sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2)
    assert raw.item() == pytest.approx(5.0, rel=1e-4) and sigma.item() == pytest.approx(1.0, abs=1e-3)


def test_biggan_at_the_first_place_configuration():
    """recipes/first-place.yaml's BigGAN (the code's defaults are the demo's smaller one)."""
    options = BigGANOptions(z_dim=120, shared_dim=128, g_width=32, d_width=32, attention_res=32)
    G, D = build_model("biggan", options, 120)
    assert G.z_dim == 120 and sum(G.chunks) == 120 and G.chunks == [24] * 5  # hierarchical z: 5 chunks of 24
    assert list(G.attention) == ["2"] and G.blocks[2].conv2.out_channels == 4 * 32  # after the 32x32 block
    assert list(D.attention) == ["0"] and D.blocks[0].conv2.out_channels == 32
    # parameters at this size with 120 breeds: G 8,440,452 (8.4 M), D 4,950,626 (5.0 M)
    assert sum(p.numel() for p in G.parameters()) == 8_440_452
    assert sum(p.numel() for p in D.parameters()) == 4_950_626


@pytest.mark.parametrize("factor", [1, 2, 4, 16])
def test_upsample_nearest_matches_interpolate(factor):
    from pipeline.models.layers import upsample_nearest

    x = torch.randn(3, 5, 4, 6)
    expected = torch.nn.functional.interpolate(x, scale_factor=factor, mode="nearest")
    assert torch.equal(upsample_nearest(x, factor), expected)


# --- spectral norm ------------------------------------------------------------------------------------


def test_spectral_norm_step_is_one_power_iteration_by_hand():
    conv = sn_conv2d(3, 4, 3)
    sn = conv.parametrizations.weight[0]
    raw = conv.parametrizations.weight.original.detach()
    matrix = raw.flatten(1)  # [4, 27]
    u0 = sn._u.clone()
    v = matrix.t() @ u0
    v = v / v.norm()
    u = matrix @ v
    sigma = u.norm()
    u = u / sigma
    weight = conv.weight  # training mode: one iteration
    assert torch.allclose(sn._v, v, atol=1e-6) and torch.allclose(sn._u, u, atol=1e-6)
    assert torch.allclose(weight, raw / sigma, atol=1e-6)
    assert float(torch.vdot(u, matrix @ v)) == pytest.approx(float(sigma), rel=1e-5)  # u^T W v = ||W v||
    conv.eval()
    before = sn._u.clone()
    assert torch.allclose(conv.weight, raw / torch.vdot(sn._u, matrix @ sn._v), atol=1e-6)
    assert torch.equal(sn._u, before)  # eval mode: no iteration


@pytest.mark.parametrize("channels_last", [False, True])
def test_spectral_norm_gradient_is_that_of_u_w_v_with_u_v_constant(channels_last):
    torch.manual_seed(0)
    conv = sn_conv2d(3, 5, 3)
    if channels_last:
        conv = conv.to(memory_format=torch.channels_last)
    sn, raw = conv.parametrizations.weight[0], conv.parametrizations.weight.original
    probe = torch.randn(5, 3, 3, 3)
    (conv.weight * probe).sum().backward()
    ours = raw.grad.clone()
    # the same expression through autograd, with the u, v this evaluation used (the updated buffers)
    w = raw.detach().clone().requires_grad_(True)
    sigma = torch.vdot(sn._u, w.flatten(1) @ sn._v)
    ((w / sigma) * probe).sum().backward()
    assert torch.allclose(ours, w.grad, atol=1e-5)


def test_spectral_norm_state_dict_matches_torchs():
    torch.manual_seed(0)
    ours = sn_conv2d(3, 4, 3)
    theirs = nn.utils.parametrizations.spectral_norm(nn.Conv2d(3, 4, 3))
    assert set(ours.state_dict()) == set(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())  # checkpoints written with torch's spectral norm still load
    assert torch.equal(ours.parametrizations.weight.original, theirs.parametrizations.weight.original)


def test_cached_spectral_norms_compute_once_and_backpropagate(monkeypatch):
    torch.manual_seed(0)
    conv = sn_conv2d(3, 4, 3)
    sn = conv.parametrizations.weight[0]
    x = torch.randn(2, 3, 8, 8)
    reference = copy.deepcopy(conv)
    from pipeline.models import layers
    iterations = []
    original, batched = SpectralNorm._power_iteration, layers._power_iteration_all
    monkeypatch.setattr(SpectralNorm, "_power_iteration", lambda self, m: iterations.append(self) or original(self, m))
    monkeypatch.setattr(layers, "_power_iteration_all",
                        lambda pairs: iterations.extend(s for s, _ in pairs) or batched(pairs))
    with cached_spectral_norms(conv):
        with torch.no_grad():
            first = conv(x)  # the D step's G pass: no grad
        copy.deepcopy(conv)  # G_ema can still be made while a cached weight holds a graph
        conv(x).square().sum().backward()  # the G step: the same cached weight, with its graph
        assert iterations == [sn]  # one power iteration for both passes
    assert sn._cached is None and not sn.cache_enabled
    with cached_spectral_norms(conv, enabled=False):
        conv(x)
    assert iterations == [sn, sn]  # disabled (under torch.compile): an ordinary evaluation
    expected = reference(x)  # uncached: one iteration from the same u, so the same result
    expected.square().sum().backward()
    assert torch.allclose(first, expected.detach(), atol=1e-6)
    assert torch.allclose(conv.parametrizations.weight.original.grad,
                          reference.parametrizations.weight.original.grad, atol=1e-5)
    iterations.clear()
    conv(x), conv(x)  # outside the block every use iterates
    assert iterations == [sn, sn]


def test_batched_power_iteration_matches_one_layer_at_a_time():
    from pipeline.models.layers import _power_iteration_all, _spectral_norms_of
    G, _ = small("biggan")
    twin = copy.deepcopy(G)
    pairs, twin_pairs = _spectral_norms_of([G]), _spectral_norms_of([twin])
    assert len(pairs) > 10 and len({p[1].shape for p in pairs}) > 3  # layers of many shapes in one batch
    batched = _power_iteration_all(pairs)
    probes = [torch.randn_like(w) for w in batched]
    sum((w * p).sum() for w, p in zip(batched, probes)).backward()
    for (sn, raw), (sn1, raw1), w, probe in zip(pairs, twin_pairs, batched, probes):
        alone = sn1._normalized(raw1)  # the layer's own iteration, from the same u
        (alone * probe).sum().backward()
        assert torch.allclose(w, alone, atol=1e-6) and torch.allclose(sn._u, sn1._u, atol=1e-6)
        assert torch.allclose(sn._v, sn1._v, atol=1e-6) and torch.allclose(raw.grad, raw1.grad, atol=1e-5)


def test_to_pixels_by_hand():
    from pipeline.models import to_pixels

    # (x + 1) * 127.5 rounded (half to even: 127.5 -> 128), clamped to [-1, 1] first; CHW -> HWC
    x = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0, 2.0, -3.0]).reshape(1, 1, 1, 7).expand(1, 3, 1, 7)
    pixels = to_pixels(x.to(torch.bfloat16))
    assert str(pixels.dtype) == "uint8" and pixels.shape == (1, 1, 7, 3)
    assert pixels[0, 0, :, 0].tolist() == [0, 64, 128, 191, 255, 255, 0]


@pytest.mark.parametrize("layer", ["conv", "linear"])
def test_equalized_lr_mul_changes_the_speed_not_the_layer(layer):
    """lr_mul: the same layer at initialisation (same seed: same outputs), and Adam's first step (about lr per
    stored weight, whatever the gradient's size) moves the weights in use lr_mul times as far."""
    from pipeline.models.layers import EqualizedConv2d, EqualizedLinear

    def build(lr_mul):
        torch.manual_seed(0)
        return EqualizedConv2d(4, 3, 3, padding=1, lr_mul=lr_mul) if layer == "conv" else EqualizedLinear(4, 3, lr_mul=lr_mul)

    x = torch.randn(2, 4, 5, 5) if layer == "conv" else torch.randn(2, 4)
    moved = {}
    for lr_mul in (1.0, 10.0):
        m = build(lr_mul)
        before = (m.weight * m.scale).detach().clone()
        out = m(x)
        if lr_mul == 1.0:
            reference = out.detach()
        else:
            torch.testing.assert_close(out.detach(), reference)
        opt = torch.optim.Adam(m.parameters(), lr=1e-3)
        out.square().sum().backward()
        opt.step()
        moved[lr_mul] = ((m.weight * m.scale).detach() - before).abs().mean().item()
    assert moved[10.0] == pytest.approx(10 * moved[1.0], rel=1e-3)
