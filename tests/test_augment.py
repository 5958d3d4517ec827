"""DiffAugment ops on tiny images: the explicit helpers by hand, the random ops by their properties."""

from __future__ import annotations

import pytest
import torch

from pipeline.augment import (
    AUGMENTATIONS,
    adjust_brightness,
    adjust_contrast,
    adjust_saturation,
    cutout,
    diff_augment,
    flip_samples,
    parse_policy,
    rand_cutout,
    rand_translation,
    random_hflip,
    translate,
)

OPS = {op.__name__: op for ops in AUGMENTATIONS.values() for op in ops}


def images(n=4, c=3, h=8, w=8, seed=0, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, c, h, w, generator=g) * 2 - 1).to(dtype)


def gen(seed=0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- explicit helpers, by hand -----------------------------------------------------------------------


def test_brightness_adds():
    x = images()
    assert torch.allclose(adjust_brightness(x, 0.25), x + 0.25)
    per_sample = torch.tensor([0.0, 0.1, -0.2, 0.5])
    out = adjust_brightness(x, per_sample)
    for i in range(4):
        assert torch.allclose(out[i], x[i] + per_sample[i])


def test_saturation():
    x = images()
    grey = adjust_saturation(x, 0.0)
    mean = x.mean(dim=1, keepdim=True)
    assert torch.allclose(grey, mean.expand_as(x))  # every channel equals the pixel's channel mean
    assert torch.allclose(adjust_saturation(x, 1.0), x, atol=1e-6)
    # factor 2 doubles the deviation from the channel mean: a pixel (0.2, 0.4, 0.6) -> (0.0, 0.4, 0.8)
    px = torch.tensor([0.2, 0.4, 0.6]).view(1, 3, 1, 1)
    assert torch.allclose(adjust_saturation(px, 2.0).flatten(), torch.tensor([0.0, 0.4, 0.8]), atol=1e-6)


def test_contrast():
    x = images()
    assert torch.allclose(adjust_contrast(x, 1.0), x, atol=1e-6)
    flat = adjust_contrast(x, 0.0)
    assert torch.allclose(flat, x.mean(dim=(1, 2, 3), keepdim=True).expand_as(x), atol=1e-6)
    # a 1x1x1x2 image [0, 1] (mean 0.5), factor 0.5 -> [0.25, 0.75]
    two = torch.tensor([0.0, 1.0]).view(1, 1, 1, 2)
    assert torch.allclose(adjust_contrast(two, 0.5).flatten(), torch.tensor([0.25, 0.75]))


def test_translate_moves_pixels_and_fills_zeros():
    x = torch.arange(1.0, 17.0).view(1, 1, 4, 4)  # values 1..16, none zero
    out = translate(x, 1, -2)  # content one row down, two columns left
    expected = torch.tensor(
        [[0.0, 0.0, 0.0, 0.0],
         [3.0, 4.0, 0.0, 0.0],
         [7.0, 8.0, 0.0, 0.0],
         [11.0, 12.0, 0.0, 0.0]]
    )
    assert torch.equal(out[0, 0], expected)
    assert torch.equal(translate(x, 0, 0), x)
    assert torch.equal(translate(x, 9, 0), torch.zeros_like(x))  # shifted entirely out


def test_translate_per_sample_and_channel():
    x = images(n=3, c=2, h=5, w=6) + 3.0  # no zeros inside
    dy, dx = torch.tensor([0, -1, 2]), torch.tensor([1, 0, -3])
    out = translate(x, dy, dx)
    for n in range(3):
        for i in range(5):
            for j in range(6):
                si, sj = i - int(dy[n]), j - int(dx[n])
                want = x[n, :, si, sj] if 0 <= si < 5 and 0 <= sj < 6 else torch.zeros(2)
                assert torch.equal(out[n, :, i, j], want)


def test_cutout_zeroes_exactly_the_square():
    x = images(n=2, h=8, w=8) + 3.0  # no zeros inside
    out = cutout(x, torch.tensor([0, 3]), torch.tensor([4, 1]), 4, 4)
    for n, (top, left) in enumerate([(0, 4), (3, 1)]):
        hole = torch.zeros(8, 8, dtype=torch.bool)
        hole[top:top + 4, left:left + 4] = True
        assert (out[n][:, hole] == 0).all()
        assert torch.equal(out[n][:, ~hole], x[n][:, ~hole])
        assert int((out[n, 0] == 0).sum()) == 16  # half the size: a quarter of the pixels
    clipped = cutout(x, -2, 6, 4, 4)  # rows -2..1 and columns 6..9: clipped to 2 x 2
    assert int((clipped[0, 0] == 0).sum()) == 4 and (clipped[:, :, :2, 6:] == 0).all()


def test_flip_samples_flips_the_chosen_ones():
    x = images(n=4)
    out = flip_samples(x, torch.tensor([True, False, False, True]))
    assert torch.equal(out[0], x[0].flip(-1)) and torch.equal(out[3], x[3].flip(-1))
    assert torch.equal(out[1], x[1]) and torch.equal(out[2], x[2])


# --- the random ops ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(OPS) + ["random_hflip"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_ops_keep_shape_and_dtype(name, dtype):
    op = OPS.get(name, random_hflip)
    x = images(n=3, h=8, w=12, dtype=dtype)
    out = op(x, gen())
    assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
    assert torch.isfinite(out.float()).all()


def test_channels_last_input():
    x = images(n=2, h=8, w=8)
    y = diff_augment(x.contiguous(memory_format=torch.channels_last), "color,translation,cutout", gen(3))
    assert torch.allclose(y, diff_augment(x, "color,translation,cutout", gen(3)))


def _spread_within(values: torch.Tensor, low: float, high: float) -> bool:
    """All of 512 draws inside [low, high], and reaching near both ends (U(low, high), not a narrower range)."""
    margin = 0.05 * (high - low)
    return bool(values.min() >= low - 1e-5 and values.max() <= high + 1e-5
                and values.min() < low + margin and values.max() > high - margin)


def test_random_color_factors_have_diffaugments_ranges():
    """Each sample's draw read back from a known input: brightness U(-0.5, 0.5), saturation U(0, 2),
    contrast U(0.5, 1.5) (DiffAugment's ranges)."""
    n = 512
    flat = torch.zeros(n, 3, 4, 4)
    shift = OPS["rand_brightness"](flat, gen(1))[:, 0, 0, 0]  # 0 + delta
    assert _spread_within(shift, -0.5, 0.5)
    red = torch.zeros(n, 3, 4, 4)
    red[:, 0] = 1.0  # channel mean 1/3 everywhere; red's deviation 2/3, scaled by the factor
    saturation = (OPS["rand_saturation"](red, gen(2))[:, 0, 0, 0] - 1 / 3) / (2 / 3)
    assert _spread_within(saturation, 0.0, 2.0)
    halves = torch.zeros(n, 3, 4, 4)
    halves[..., :2] = 1.0  # image mean 1/2; every pixel's deviation 1/2, scaled by the factor
    contrast = (OPS["rand_contrast"](halves, gen(3))[:, 0, 0, 0] - 0.5) / 0.5
    assert _spread_within(contrast, 0.5, 1.5)


def test_random_translation_shifts_within_an_eighth():
    # 16 px: shifts in [-2, 2]; a one-hot image shows where its pixel went
    x = torch.zeros(64, 1, 16, 16)
    x[:, :, 8, 8] = 1.0
    out = rand_translation(x, gen(1))
    pos = out.flatten(1).argmax(1)
    rows, cols = pos // 16, pos % 16
    assert (out.flatten(1).sum(1) == 1).all()  # the pixel is never lost: it stays inside
    assert ((rows - 8).abs() <= 2).all() and ((cols - 8).abs() <= 2).all()
    assert len(set(rows.tolist())) == 5 and len(set(cols.tolist())) == 5  # all shifts occur


def test_random_cutout_is_a_clipped_half_size_square():
    x = torch.ones(64, 1, 8, 8)
    out = rand_cutout(x, gen(2))
    counts = set()
    for img in out[:, 0]:
        hole = img == 0
        rows, cols = hole.any(1).nonzero().flatten(), hole.any(0).nonzero().flatten()
        # a full rectangle, at most 4 x 4, at least 2 x 2 (the centre lies inside the image)
        assert int(hole.sum()) == len(rows) * len(cols)
        assert 2 <= len(rows) <= 4 and 2 <= len(cols) <= 4
        assert int(rows[-1] - rows[0]) == len(rows) - 1 and int(cols[-1] - cols[0]) == len(cols) - 1
        counts.add(int(hole.sum()))
    assert 16 in counts and len(counts) > 1  # whole squares inside, and clipped ones at the borders


def test_policy_empty_is_identity():
    x = images()
    assert diff_augment(x, "") is x
    assert diff_augment(x, " , ") is x


def test_policy_parsing():
    assert parse_policy("color, translation,cutout") == ["color", "translation", "cutout"]
    with pytest.raises(ValueError, match="color, translation, cutout"):
        diff_augment(images(), "color,zoom")


def test_same_seed_same_output():
    x = images()
    a = diff_augment(x, "color,translation,cutout", gen(7))
    b = diff_augment(x, "color,translation,cutout", gen(7))
    c = diff_augment(x, "color,translation,cutout", gen(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    # without a generator it still runs (global RNG)
    assert diff_augment(x, "color,translation,cutout").shape == x.shape


def test_samples_get_independent_draws():
    x = images(n=1).expand(16, -1, -1, -1).contiguous()  # 16 copies of one image
    out = diff_augment(x, "color,translation,cutout", gen(4))
    assert len({tuple(o.flatten().tolist()) for o in out}) == 16


def test_random_hflip_flips_about_half():
    x = images(n=64, h=4, w=4)
    out = random_hflip(x, gen(5))
    flipped = [torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x)]
    kept = [torch.equal(o, xi) for o, xi in zip(out, x)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 16 < sum(flipped) < 48
    assert torch.equal(random_hflip(x, gen(5)), out)


# --- differentiability -------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", sorted(AUGMENTATIONS) + ["color,translation,cutout"])  # every part, and all
def test_gradcheck(policy):
    # the random draws do not depend on x, so with a fresh seeded generator each call is a fixed function
    x = images(n=2, c=3, h=6, w=6).double().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: diff_augment(v, policy, gen(11)), (x,), eps=1e-6, atol=1e-5)


def test_gradients_where_pixels_survive():
    x = (images(n=2, h=6, w=6) + 3.0).requires_grad_(True)
    translate(x, torch.tensor([1, 0]), torch.tensor([0, -2])).sum().backward()
    survive = torch.zeros(2, 1, 6, 6)
    survive[0, :, :5, :] = 1.0  # moved one row down: the bottom row leaves the image
    survive[1, :, :, 2:] = 1.0  # moved two columns left: the first two columns leave
    assert torch.equal(x.grad, survive.expand_as(x))

    x.grad = None
    out = cutout(x, torch.tensor([1, 0]), torch.tensor([1, 3]), 3, 3)
    out.sum().backward()
    assert torch.equal(x.grad, (out != 0).to(x.dtype))

    x.grad = None
    weights = images(n=2, h=6, w=6, seed=9)
    (diff_augment(x, "color,translation,cutout", gen(3)) * weights).sum().backward()
    assert torch.isfinite(x.grad).all() and (x.grad != 0).any()


def test_rotate_by_hand():
    from pipeline.augment import rotate

    x = torch.full((2, 1, 4, 4), -1.0)
    x[:, 0, 0, 3] = 1.0  # a white pixel in the top-right corner of a black image
    turned = rotate(x, torch.tensor([90.0, 0.0]))
    # 90 degrees counter-clockwise about the centre: the corner goes to the top left; 0 degrees: unchanged
    expected = torch.full((4, 4), -1.0)
    expected[0, 0] = 1.0
    assert torch.allclose(turned[0, 0], expected, atol=1e-5) and torch.allclose(turned[1], x[1], atol=1e-5)
    # what comes from outside the picture is black (-1), as torchvision fills it: a white image turned by 45
    # degrees keeps its centre white and gets black corners
    white = rotate(torch.ones(1, 1, 8, 8), 45.0)[0, 0]
    assert white[3:5, 3:5].eq(1).all() and white[0, 0] == -1 and white[7, 7] == -1


def test_random_rotate_turns_the_share_asked_for():
    from pipeline.augment import random_rotate

    x = torch.rand(200, 3, 16, 16) * 2 - 1
    g = torch.Generator().manual_seed(0)
    assert torch.equal(random_rotate(x, 5.0, p=0.0, generator=g), x)  # none chosen: the very same pixels
    out = random_rotate(x, 5.0, p=0.3, generator=g)
    turned = (out != x).flatten(1).any(1).float().mean().item()
    assert 0.2 < turned < 0.4  # about 30% of the images
