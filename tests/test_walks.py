"""Latent walks: slerp/lerp paths, soft labels in every generator, walk end frames, the --walk GIF."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline import generate as gen
from pipeline import sampling
from pipeline import walks as W
from pipeline.config import build_config
from pipeline.models import build_model
from tests.test_train import TINY, cfg_for, run_train


def test_slerp_ends_are_exact_and_the_middle_keeps_the_norm():
    a = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    b = torch.tensor([[0.0, 3.0], [2.0, 2.0]])  # orthogonal; nearly parallel (slerp and lerp agree there)
    assert torch.equal(W.slerp(a, b, 0.0), a) and torch.equal(W.slerp(a, b, 1.0), b)
    mid = W.slerp(a, b, 0.5)
    assert torch.allclose(mid[0], torch.tensor([3 / math.sqrt(2), 3 / math.sqrt(2)]))  # on the circle, radius 3
    assert float(W.lerp(a, b, 0.5)[0].norm()) == pytest.approx(3 / math.sqrt(2))  # lerp cuts the corner
    assert torch.allclose(mid[1], torch.tensor([1.5, 1.5]))


def test_slerp_turns_at_a_constant_rate_and_scales_the_norm_linearly():
    # a quarter of the way from 0 to 90 degrees: 22.5 degrees, radius 3
    quarter = W.slerp(torch.tensor([[3.0, 0.0]]), torch.tensor([[0.0, 3.0]]), 0.25)[0]
    assert torch.allclose(quarter, 3 * torch.tensor([math.cos(math.pi / 8), math.sin(math.pi / 8)]))
    # norms 2 and 4: a third of the way is 30 degrees at norm 2 + (4 - 2) / 3 = 8/3
    third = W.slerp(torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 4.0]]), 1 / 3)[0]
    assert torch.allclose(third, 8 / 3 * torch.tensor([math.cos(math.pi / 6), math.sin(math.pi / 6)]))


def test_slerp_of_exactly_parallel_rows_is_lerp():
    # the angle is 0, so the great-circle formula would divide 0 by 0: the fallback gives the straight line
    a, b = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[3.0, 6.0, 9.0]])
    assert torch.allclose(W.slerp(a, b, 0.5), torch.tensor([[2.0, 4.0, 6.0]]))
    assert torch.allclose(W.slerp(a, -b, 0.25), W.lerp(a, -b, 0.25))  # antiparallel too


def test_walk_path_frames_and_keys():
    keys = torch.randn(4, 3, 5, generator=torch.Generator().manual_seed(0))
    path = W.walk_path(keys, 6)
    assert path.shape == (19, 3, 5)
    for k in range(4):
        assert torch.equal(path[6 * k], keys[k])
    with pytest.raises(ValueError, match="K >= 2"):
        W.walk_path(keys[:1], 6)


@pytest.mark.parametrize("model", ["dcgan", "biggan", "progan"])
def test_one_hot_soft_labels_draw_what_integer_labels_draw(model):
    cfg = build_config("train", {"model": model, model: TINY[model]})
    torch.manual_seed(0)
    G, _ = build_model(model, cfg.model_options, n_classes=3)
    if hasattr(G, "set_progress"):
        G.set_progress(1.0)
    G.eval()
    z = torch.randn(4, G.z_dim)
    y = torch.tensor([0, 2, 1, 2])
    with torch.no_grad():
        hard = G(z, y)
        soft = G(z, torch.nn.functional.one_hot(y, 3).float())
        blend = G(z, torch.tensor([[0.5, 0.5, 0.0]] * 4))
        a, b = G(z, torch.zeros(4, dtype=torch.long)), G(z, torch.ones(4, dtype=torch.long))
    assert torch.equal(hard, soft)
    assert not torch.allclose(blend, a) and not torch.allclose(blend, b)  # a blend is neither breed
    with pytest.raises(ValueError, match=r"soft labels y must have shape \[4, 3\]"):
        G(z, torch.ones(4, 2))


def tiny_generator(n_classes: int = 3):
    cfg = build_config("train", {"model": "biggan", "biggan": TINY["biggan"]})
    torch.manual_seed(0)
    G, _ = build_model("biggan", cfg.model_options, n_classes=n_classes)
    return G.eval()


def pixels(G, z, y):
    with torch.no_grad():
        return ((G(z, y).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("n_classes", [3, 0])
def test_walk_end_frames_are_the_images_of_the_end_latents(n_classes):
    G = tiny_generator(n_classes)
    ck = {"n_classes": n_classes, "breeds": ["pug", "beagle", "collie"][:n_classes]}
    weights = np.ones(3) if n_classes else None
    frames, captions = gen.walk_frames(G, ck, weights, truncation=0.8, seed=3, device="cpu", keys=3,
                                       frames_per_key=4, columns=2)
    assert frames.shape == (9, 4, 64, 64, 3) and frames.dtype == np.uint8 and len(captions) == 4
    # the same draws as walk_frames makes, by hand
    g = torch.Generator().manual_seed(3)
    z = sampling.truncated_normal((3, 4, G.z_dim), 0.8, g)
    if n_classes:
        top = sampling.sample_labels(2, weights, g)
        walk = sampling.sample_labels(6, weights, g).reshape(3, 2)
        y_first = torch.cat([top, walk[0]])
        y_last = torch.cat([top, walk[-1]])
        z_first = torch.cat([z[0, :2], z[0, 2:]])
        z_last = torch.cat([z[-1, :2], z[0, 2:]])  # the bottom row keeps its first latent: only the breed moves
        assert captions[0] == ["pug", "beagle", "collie"][int(top[0])]
    else:
        y_first = y_last = None
        z_first, z_last = z[0], z[-1]
    assert np.array_equal(frames[0], pixels(G, z_first, y_first))
    assert np.array_equal(frames[-1], pixels(G, z_last, y_last))
    assert np.array_equal(frames[4], pixels(G, torch.cat([z[1, :2], z[0, 2:]]) if n_classes else z[1],
                                            torch.cat([top, walk[1]]) if n_classes else None))
    assert not np.array_equal(frames[2], frames[0])  # it moves


@pytest.fixture(scope="module")
def conditional_checkpoint(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("walk")
    run_train(tmp, cfg_for("biggan", epochs=0.2))
    return tmp / "ck.pt"


def test_walk_gif_from_the_command_line(conditional_checkpoint, tmp_path, capsys):
    out = tmp_path / "walk.gif"
    assert gen.main(["--checkpoint", str(conditional_checkpoint), "--walk", str(out), "--device", "cpu"]) == 0
    frames = (gen.WALK_KEYS - 1) * gen.WALK_FRAMES_PER_KEY + 1
    with Image.open(out) as im:
        assert im.format == "GIF" and im.n_frames == frames and im.is_animated
        expected = gen.image_grid(np.zeros((2 * gen.WALK_COLUMNS, 64, 64, 3), np.uint8), [""] * 16,
                                  columns=gen.WALK_COLUMNS, zoom=1, title="t")
        assert im.size == expected.size
    assert f"({frames} frames of 16 latent walks (top) and breed walks (bottom))" in capsys.readouterr().out
    assert not list(tmp_path.glob("*.zip"))  # --walk alone writes no submission


def test_generate_needs_something_to_write(conditional_checkpoint, capsys):
    with pytest.raises(SystemExit):
        gen.main(["--checkpoint", str(conditional_checkpoint)])
    assert "nothing to write" in capsys.readouterr().err
