"""Every registered model learns: trained briefly on easy pictures, its samples come close to them.

The other training tests check shapes, one step, resume and DDP; none of them notices a generator that trains
for an hour and draws grey noise (DCGAN did, while D saw real and fake in one batch-normalised batch). Here a
small model of each kind trains for a fixed number of steps on cartoon dogs of four colours (the demo's
drawing, at 64x64) and its samples must come much closer to them, by the thumbnail FID
(``pipeline.metrics.learning``), than the same generator's samples at initialisation.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline import train as tr
from pipeline.annotations import Box
from pipeline.checkpoint import generator_from, load_checkpoint
from pipeline.config import build_config
from pipeline.demo_data import synthesize_photo
from pipeline.files import Dataset
from pipeline.generate import generate_images
from pipeline.metrics.learning import thumbnail_fid, thumbnails
from pipeline.models import REGISTRY, build_model
from pipeline.runtime import setup_runtime

BREEDS = ["Chihuahua", "beagle", "pug", "Samoyed"]  # four distinct coat colours (demo_data.breed_colours)

# model options, batch size and steps of each model's run: small, but big and long enough to learn (10 to 40 s
# each on the 2-core machine)
RUNS = {
    "dcgan": ({"z_dim": 64, "g_width": 32, "d_width": 32}, 32, 300),
    "biggan": ({"z_dim": 32, "shared_dim": 16, "g_width": 8, "d_width": 8, "attention_res": 16}, 16, 150),
    "progan": ({"z_dim": 32, "width": 32}, 16, 200),
}
# learned: the samples' thumbnail FID falls below this fraction of the untrained generator's (6 to 17 on these
# pictures). Measured: dcgan 0.60, biggan 0.27, progan 0.29; DCGAN with real and fake in one batch-normalised
# D batch (the bug that drew grey noise) 1.01.
LEARNED_FRACTION = 0.8


def cartoon_dogs(n: int = 128, seed: int = 0) -> Dataset:
    """``n`` 64x64 crops, each a cartoon dog of one of BREEDS on a random background, labels in turn."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(BREEDS)
    box = [Box(4, 4, 59, 63)]
    images = np.stack([np.asarray(synthesize_photo(64, 64, box, BREEDS[k], rng)) for k in labels])
    return Dataset(images, labels.astype(np.int64), np.array(BREEDS), np.array([f"p{i}#0" for i in range(n)]))


def samples(G: torch.nn.Module, n: int, n_classes: int) -> np.ndarray:
    weights = np.full(n_classes, 1.0 / n_classes) if n_classes else None
    return np.concatenate(list(generate_images(G, n, G.z_dim, weights, 0.0, 1, 100, torch.device("cpu"),
                                               progress=False)))


def test_thumbnails_are_block_means():
    img = np.zeros((1, 16, 16, 3), np.uint8)
    img[0, :8, :8, 0] = 255  # top-left quarter red
    img[0, 8:, :, 2] = 102  # bottom half blue at 0.4
    t = thumbnails(img, side=2).reshape(2, 2, 3)
    np.testing.assert_allclose(t[0, 0], [1.0, 0, 0])
    np.testing.assert_allclose(t[0, 1], [0, 0, 0])
    np.testing.assert_allclose(t[1, 0], [0, 0, 0.4])
    np.testing.assert_allclose(t[1, 1], [0, 0, 0.4])
    with pytest.raises(ValueError, match="must divide"):
        thumbnails(img, side=3)


def test_thumbnail_fid_is_zero_for_the_same_set_and_large_for_grey_noise():
    ds = cartoon_dogs()
    assert thumbnail_fid(ds.images, ds.images) == pytest.approx(0.0, abs=1e-6)
    grey = np.clip(np.random.default_rng(0).normal(128, 40, (256, 64, 64, 3)), 0, 255).astype(np.uint8)
    other = cartoon_dogs(256, seed=1).images  # other drawings of the same dogs: 0.30 (sampling noise)
    assert thumbnail_fid(grey, ds.images) > 10 * thumbnail_fid(other, ds.images)


def learn(model: str, tmp_path, **extra) -> tuple[float, float]:
    """Train ``model`` (its RUNS settings, plus ``extra`` train keys) on cartoon dogs; (thumbnail FID at the start,
    at the end)."""
    ds = cartoon_dogs()
    options, batch, steps = RUNS[model]
    cfg = build_config("train", {
        "model": model, model: options, "batch_size": batch, "epochs": steps * batch / len(ds.images),
        "log_every": 1000, "sample_every": 1000, "checkpoint_every": 1000, "ema_decay": 0.99, "seed": 0, **extra})
    torch.manual_seed(cfg.seed)  # as train() seeds it: G0 is the generator training starts from
    G0, _ = build_model(model, cfg.model_options, len(BREEDS))
    start = thumbnail_fid(samples(G0.eval(), 256, len(BREEDS)), ds.images)
    summary = tr.train(ds, cfg, tmp_path / "ck.pt", setup_runtime("fp32", False, "cpu"), progress=False)
    assert summary["steps"] == steps
    end = thumbnail_fid(samples(generator_from(load_checkpoint(tmp_path / "ck.pt")), 256, len(BREEDS)), ds.images)
    return start, end


def test_every_registered_model_has_a_learning_run():
    assert set(REGISTRY) - {"tiny"} <= set(RUNS)  # "tiny": docs/extending.md's example model, registered by test_extending


@pytest.mark.slow
@pytest.mark.parametrize("model", sorted(RUNS))
def test_every_model_learns_to_draw_its_data(model, tmp_path):
    start, end = learn(model, tmp_path)
    assert end < LEARNED_FRACTION * start, f"{model}: thumbnail FID {start:.3f} at the start, {end:.3f} at the end"


@pytest.mark.slow
def test_biggan_still_learns_under_diffaugment_and_lecam(tmp_path):
    """The `ours` recipe's regularisers (DiffAugment on everything D sees, LeCam pulling D's logits to their
    averages) must not stop BigGAN from learning: the same run as above with both on."""
    start, end = learn("biggan", tmp_path, augment="color,translation,cutout", lecam_weight=0.3)
    assert end < LEARNED_FRACTION * start, f"thumbnail FID {start:.3f} at the start, {end:.3f} at the end"
