"""EMA of the generator's weights: hand-computed averages, buffers, wrappers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pipeline.ema import ema_decay_at, ema_update, make_ema


def linear(weight: float) -> nn.Linear:
    m = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        m.weight.fill_(weight)
    return m


class Wrapped:
    """Stands in for DistributedDataParallel: the real model sits in ``.module``."""

    def __init__(self, module: nn.Module):
        self.module = module


def test_update_by_hand():
    ema, model = linear(1.0), linear(3.0)
    ema_update(ema, model, 0.9)
    assert ema.weight.item() == pytest.approx(1.2)  # 0.9 * 1 + 0.1 * 3
    ema_update(ema, model, 0.9)
    assert ema.weight.item() == pytest.approx(1.38)  # 0.9 * 1.2 + 0.1 * 3
    assert model.weight.item() == 3.0  # the model is untouched
    ema_update(ema, model, 0.0)
    assert ema.weight.item() == pytest.approx(3.0)  # decay 0 copies


def test_update_leaves_no_graph_and_keeps_ema_frozen():
    model = linear(3.0)
    ema = make_ema(model)
    assert not ema.training and all(not p.requires_grad for p in ema.parameters())
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert ema.weight is not model.weight
    with torch.no_grad():
        model.weight.fill_(5.0)
    ema_update(ema, model, 0.5)
    assert ema.weight.item() == pytest.approx(4.0)
    assert ema.weight.grad is None and ema.weight.grad_fn is None and not ema.weight.requires_grad


def test_buffers_are_copied_not_averaged():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    model.register_buffer("stage", torch.tensor(0))
    ema = make_ema(model)
    model.train()
    model(torch.randn(8, 2) * 3 + 1)  # moves the running statistics
    model.stage.fill_(2)
    ema_update(ema, model, 0.99)
    assert torch.equal(ema[1].running_mean, model[1].running_mean)
    assert torch.equal(ema[1].running_var, model[1].running_var)
    assert int(ema[1].num_batches_tracked) == 1 and int(ema.stage) == 2


def test_spectral_norm_vectors_are_copied():
    model = nn.utils.spectral_norm(nn.Linear(3, 3))
    ema = make_ema(model)
    model(torch.randn(4, 3))  # a power iteration in train mode updates u and v
    ema_update(ema, model, 0.9)
    assert torch.equal(ema.weight_u, model.weight_u) and torch.equal(ema.weight_v, model.weight_v)


def test_wrapped_models_are_unwrapped():
    ema, model = linear(1.0), linear(3.0)
    ema_update(Wrapped(ema), Wrapped(model), 0.9)
    assert ema.weight.item() == pytest.approx(1.2)
    made = make_ema(Wrapped(model))
    assert isinstance(made, nn.Linear) and made.weight.item() == 3.0


def test_mismatched_models_are_an_error():
    with pytest.raises(ValueError, match="differ"):
        ema_update(linear(1.0), nn.Linear(1, 1), 0.9)  # the second has a bias
    with pytest.raises(ValueError, match="decay"):
        ema_update(linear(1.0), linear(2.0), 1.5)


def test_decay_warmup():
    assert ema_decay_at(0, 0.999) == 0.1  # 1 / 10
    assert ema_decay_at(90, 0.999) == 0.91  # 91 / 100
    assert ema_decay_at(9_990, 0.999) == 0.999  # 9991 / 10000 > 0.999: capped
    assert ema_decay_at(5, 0.0) == 0.0  # decay 0: G_ema is a copy of G


def test_model_without_parameters():
    model = nn.Sequential(nn.ReLU())
    ema_update(make_ema(model), model, 0.9)  # nothing to average, and no error


def test_compiled_model_is_unwrapped():
    class Compiled:  # stands in for torch.compile's wrapper, which keeps the model in ._orig_mod
        def __init__(self, module):
            self._orig_mod = module

    ema, model = linear(1.0), linear(3.0)
    ema_update(ema, Compiled(model), 0.9)
    assert ema.weight.item() == pytest.approx(1.2)


def test_ema_from_a_given_step_copies_g_until_then():
    """train.ema_start N (5th place: 30,000): decay 0 (G_ema = G) before step N, the full decay from N on, no ramp."""
    from pipeline.ema import ema_decay_at

    assert [ema_decay_at(s, 0.9999, 3) for s in (0, 2, 3, 10)] == [0.0, 0.0, 0.9999, 0.9999]
    assert ema_decay_at(0, 0.999) == 0.1 and ema_decay_at(90, 0.999) == 0.91  # start 0: the ramp as before
