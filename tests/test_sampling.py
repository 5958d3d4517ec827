"""Sampling a generator: the truncation trick and breed labels drawn by weight (pipeline.sampling)."""

import numpy as np
import torch

from pipeline import sampling


def test_truncated_normal_stays_inside_the_threshold():
    z = sampling.truncated_normal((2000, 8), 0.8, torch.Generator().manual_seed(0))
    assert float(z.abs().max()) < 0.8
    assert 0.2 < float(z.std()) < 0.6  # much narrower than N(0, 1) but not collapsed
    full = sampling.truncated_normal((2000, 8), 0.0, torch.Generator().manual_seed(0))
    assert float(full.abs().max()) > 2.5


def test_truncated_normal_draws_as_redrawing_the_whole_tensor_does():
    """Redrawing only the values still outside gives exactly what the plain definition gives: redraw every
    value outside the threshold, over the whole tensor, until none is (the same draws in the same places)."""
    def by_definition(shape, threshold, generator):
        z = torch.randn(shape, generator=generator)
        while (outside := z.abs() >= threshold).any():
            z[outside] = torch.randn(int(outside.sum()), generator=generator)
        return z

    for threshold in (0.05, 0.8, 2.0):
        assert torch.equal(sampling.truncated_normal((300, 7), threshold, torch.Generator().manual_seed(3)),
                           by_definition((300, 7), threshold, torch.Generator().manual_seed(3)))


def test_labels_follow_the_weights():
    labels = sampling.sample_labels(10_000, np.array([3.0, 1.0, 0.0]), torch.Generator().manual_seed(0))
    counts = np.bincount(labels.numpy(), minlength=3)
    assert counts[2] == 0
    assert abs(counts[0] / 10_000 - 0.75) < 0.02
