"""GAN losses on tiny logits, with answers worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.losses import LOSSES, GanLoss, class_loss, get_loss


def t(*values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# --- bce ---------------------------------------------------------------------------------------------


def test_bce_logits_zero_cost_log2_per_term():
    # sigmoid(0) = 1/2: each BCE term is -log(1/2) = log 2, and D sums the real and the fake term
    zeros = t(0.0, 0.0, 0.0)
    assert get_loss("bce").d(zeros, zeros, 0.0).item() == pytest.approx(2 * math.log(2))
    assert get_loss("bce").g(zeros, zeros).item() == pytest.approx(math.log(2))


def test_bce_label_smoothing_by_hand():
    # real target 0.9: -(0.9 log s(x) + 0.1 log(1 - s(x))); the fake term with logit -3: -log(1 - s(-3))
    x, f = 1.5, -3.0
    expected = -(0.9 * math.log(sigmoid(x)) + 0.1 * math.log(1 - sigmoid(x))) - math.log(1 - sigmoid(f))
    assert get_loss("bce").d(t(x), t(f), 0.1).item() == pytest.approx(expected, rel=1e-6)
    # 3rd place: real label 0.8
    expected = -(0.8 * math.log(sigmoid(x)) + 0.2 * math.log(1 - sigmoid(x))) - math.log(1 - sigmoid(f))
    assert get_loss("bce").d(t(x), t(f), 0.2).item() == pytest.approx(expected, rel=1e-6)


def test_bce_g_is_non_saturating():
    # -log s(fake), averaged: fakes at -2 and 1
    expected = (-math.log(sigmoid(-2.0)) - math.log(sigmoid(1.0))) / 2
    assert get_loss("bce").g(t(5.0, 5.0), t(-2.0, 1.0)).item() == pytest.approx(expected, rel=1e-6)


# --- hinge -------------------------------------------------------------------------------------------


def test_hinge_by_hand():
    # real [2, 0.5]: relu(1 - r) = [0, 0.5] -> 0.25; fake [-2, 0]: relu(1 + f) = [0, 1] -> 0.5
    real, fake = t(2.0, 0.5), t(-2.0, 0.0)
    assert get_loss("hinge").d(real, fake, 0.1).item() == pytest.approx(0.75)  # smoothing ignored
    assert get_loss("hinge").g(real, fake).item() == pytest.approx(1.0)  # -mean(-2, 0)


# --- rals --------------------------------------------------------------------------------------------


def test_rals_by_hand():
    # real [0.5, 0.5], fake [-0.5, -0.5]: mean(real) = 0.5, mean(fake) = -0.5, real - mean(fake) = 1
    # D: (real - mean(fake) - 1)^2 = (0.5 + 0.5 - 1)^2 = 0 and (fake - mean(real) + 1)^2 = (-0.5 - 0.5 + 1)^2 = 0
    # G: (fake - mean(real) - 1)^2 = (-0.5 - 0.5 - 1)^2 = 4 and (real - mean(fake) + 1)^2 = (0.5 + 0.5 + 1)^2 = 4
    #    -> 8 (the paper's sum; 4 in the halved form of the author's code)
    real, fake = t(0.5, 0.5), t(-0.5, -0.5)
    assert get_loss("rals").d(real, fake, 0.1).item() == pytest.approx(0.0)  # smoothing ignored
    assert get_loss("rals").g(real, fake).item() == pytest.approx(8.0)
    # real [1, 1], fake [-1, -1] overshoots the margin: D = (1 + 1 - 1)^2 + (-1 - 1 + 1)^2 = 1 + 1 = 2,
    # G = (-1 - 1 - 1)^2 + (1 + 1 + 1)^2 = 9 + 9 = 18
    real, fake = t(1.0, 1.0), t(-1.0, -1.0)
    assert get_loss("rals").d(real, fake, 0.0).item() == pytest.approx(2.0)
    assert get_loss("rals").g(real, fake).item() == pytest.approx(18.0)


def test_rals_uneven_logits_by_hand():
    # real [2, 0], fake [1, -1]: mean(real) = 1, mean(fake) = 0
    # D: real term mean((2-0-1)^2, (0-0-1)^2) = mean(1, 1) = 1; fake term mean((1-1+1)^2, (-1-1+1)^2) = 1 -> 2
    # G: fake term mean((1-1-1)^2, (-1-1-1)^2) = mean(1, 9) = 5; real term mean((2-0+1)^2, (0-0+1)^2) = 5 -> 10
    real, fake = t(2.0, 0.0), t(1.0, -1.0)
    assert get_loss("rals").d(real, fake, 0.0).item() == pytest.approx(2.0)
    assert get_loss("rals").g(real, fake).item() == pytest.approx(10.0)


def test_rals_at_equilibrium():
    # all logits equal (D cannot tell): every term is (±1)^2 = 1, so both losses are 2
    same = t(0.3, 0.3, 0.3)
    assert get_loss("rals").d(same, same, 0.0).item() == pytest.approx(2.0)
    assert get_loss("rals").g(same, same).item() == pytest.approx(2.0)


# --- shared properties -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_gradients_flow_and_are_finite(name):
    loss = get_loss(name)
    real = torch.tensor([[1.0], [-0.5], [3.0]], requires_grad=True)  # [N, 1], as a D head returns
    fake = torch.tensor([[-2.0], [0.7], [0.1]], requires_grad=True)
    loss.d(real, fake, 0.1).backward()
    assert torch.isfinite(real.grad).all() and torch.isfinite(fake.grad).all()
    assert real.grad.abs().sum() > 0 and fake.grad.abs().sum() > 0
    fake.grad = None
    loss.g(real.detach(), fake).backward()
    assert torch.isfinite(fake.grad).all() and fake.grad.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_low_precision_logits_give_float32(name):
    loss = get_loss(name)
    real = torch.tensor([1.0, -0.5, 3.0], dtype=torch.bfloat16)
    fake = torch.tensor([-2.0, 0.7, 0.1], dtype=torch.float16)
    d, g = loss.d(real, fake, 0.1), loss.g(real, fake)
    assert d.dtype == torch.float32 and g.dtype == torch.float32
    assert d.ndim == 0 and g.ndim == 0
    # the same numbers as from float32 logits holding the same (rounded) values
    assert d.item() == pytest.approx(loss.d(real.float(), fake.float(), 0.1).item(), rel=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert loss.d(real, fake, 0.1).dtype == torch.float32
        assert loss.g(real, fake).dtype == torch.float32


def test_registry_holds_the_three_losses():
    assert set(LOSSES) == {"bce", "hinge", "rals"}
    assert all(isinstance(v, GanLoss) and v.name == k for k, v in LOSSES.items())
    with pytest.raises(KeyError, match="bce, hinge, rals"):
        get_loss("wgan")
    with pytest.raises(Exception):  # frozen
        LOSSES["bce"].d = None


# --- auxiliary class loss ----------------------------------------------------------------------------


def test_class_loss_by_hand():
    # uniform logits over 4 classes: -log(1/4) = log 4; logits [2, 0] for class 0: log(1 + e^-2)
    assert class_loss(torch.zeros(3, 4), torch.tensor([0, 1, 3])).item() == pytest.approx(math.log(4))
    assert class_loss(t(2.0, 0.0).view(1, 2), torch.tensor([0])).item() == pytest.approx(math.log(1 + math.exp(-2)))
    out = class_loss(torch.zeros(2, 3, dtype=torch.bfloat16), torch.tensor([1, 2]))
    assert out.dtype == torch.float32


def test_lecam_penalty_by_hand():
    """relu(real - anchor_fake)^2 and relu(anchor_real - fake)^2, each averaged over its batch, summed."""
    from pipeline.losses import lecam_penalty

    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([-1.0, 2.0])
    # real - 0.5 = [0.5, 2.5] -> mean(0.25, 6.25) = 3.25; 1.5 - fake = [2.5, -0.5] -> relu -> mean(6.25, 0) = 3.125
    assert lecam_penalty(real, fake, 1.5, 0.5).item() == pytest.approx(6.375)
    # D within the anchors: nothing to pull back
    assert lecam_penalty(torch.tensor([0.2]), torch.tensor([0.8]), 0.5, 0.5).item() == 0.0
    # bf16 logits: computed in float32
    assert lecam_penalty(real.bfloat16(), fake.bfloat16(), 1.5, 0.5).dtype == torch.float32


def test_lecam_anchors_are_bias_corrected_moving_averages():
    from pipeline.losses import LeCamAnchors

    a = LeCamAnchors(0.99)
    assert [t.item() for t in a.anchors()] == [0.0, 0.0]
    a.update(torch.tensor([1.0, 3.0]), torch.tensor([-2.0]))  # means 2 and -2
    # 0.01 * 2 / (1 - 0.99) = 2: the first batch's means themselves
    assert [t.item() for t in a.anchors()] == pytest.approx([2.0, -2.0])
    a.update(torch.tensor([4.0]), torch.tensor([0.0]))
    # real: (0.99 * 0.02 + 0.01 * 4) / (1 - 0.99^2) = 0.0598 / 0.0199; fake: (0.99 * -0.02) / 0.0199
    assert [t.item() for t in a.anchors()] == pytest.approx([0.0598 / 0.0199, -0.0198 / 0.0199], rel=1e-6)
    b = LeCamAnchors(0.99)
    b.load_state_dict(a.state_dict())
    assert [t.item() for t in b.anchors()] == [t.item() for t in a.anchors()] and b.updates == 2


def test_lecam_adds_to_d_loss_only_when_asked(tmp_path):
    """train.lecam_weight 0 builds no anchors; > 0 keeps them updated once per D step."""
    from pipeline.config import build_config
    from pipeline.runtime import setup_runtime
    from pipeline.training import step as ts
    from tests.test_train import TINY, tiny_dataset

    rt = setup_runtime("fp32", False, "cpu")
    ds = tiny_dataset(16)
    for weight, updates in ((0.0, None), (0.3, 2)):
        cfg = build_config("train", {"model": "dcgan", "batch_size": 4, "d_steps": 2, "lecam_weight": weight,
                                     "dcgan": TINY["dcgan"]})
        p = ts.build_parts(cfg, len(ds.breeds), rt)
        ts.train_step(p, ts.DeviceData(ds, rt.device, seed=0), cfg, rt)
        assert (p.lecam.updates if p.lecam is not None else None) == updates
