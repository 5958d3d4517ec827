"""Feature networks: the stand-in is deterministic; Inception weights are found, or fail fast and clearly."""

import time

import numpy as np
import pytest
import torch

from pipeline.metrics import features as F


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """An empty torch hub cache, no $FID_WEIGHTS and a short download timeout; the hub dir is restored after."""
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    monkeypatch.delenv(F.WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(F, "DOWNLOAD_TIMEOUT", 2.0)  # bounds the attempt even where packets are dropped
    try:
        yield tmp_path / "hub"
    finally:
        torch.hub.set_dir(old)


def images(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)


def test_standin_is_the_same_on_every_load():
    a, b = F.load_network("standin"), F.load_network("standin")
    assert a.fingerprint == b.fingerprint
    for (name, x), (_, y) in zip(a.module.state_dict().items(), b.module.state_dict().items()):
        assert torch.equal(x, y), name
    x = images(7)
    fa = F.extract_features(a, x, batch_size=3, progress=False)
    fb = F.extract_features(b, x, batch_size=7, progress=False)
    assert fa.shape == (7, F.STANDIN_DIM) and fa.dtype == np.float32
    np.testing.assert_allclose(fa, fb, rtol=1e-4, atol=1e-4)  # batch size does not change the answer
    assert (fa >= 0).all() and (fa > 0).any()
    assert not a.comparable_to_kaggle and a.name == "standin"


def test_standin_weights_come_from_the_seed_not_from_torch():
    torch.manual_seed(123)
    a = F.load_network("standin")
    torch.manual_seed(456)
    b = F.load_network("standin")
    assert a.fingerprint == b.fingerprint
    assert torch.equal(a.module.head.weight, b.module.head.weight)


def test_extract_features_checks_its_input():
    net = F.load_network("standin")
    with pytest.raises(ValueError, match="uint8"):
        F.extract_features(net, images(2).astype(np.float32), progress=False)
    with pytest.raises(ValueError, match="no images"):
        F.extract_features(net, images(0), progress=False)


def test_unknown_network_lists_the_known_ones():
    with pytest.raises(F.FeatureNetworkError, match="inception.*standin"):
        F.load_network("nasnet")


def test_registry_rejects_duplicates():
    with pytest.raises(ValueError, match="already registered"):
        F.register_network("standin", comparable_to_kaggle=False, description="again")(F.build_standin)


def test_missing_inception_weights_fail_fast_and_say_where_to_put_them(empty_hub):
    from pytorch_fid.inception import FID_WEIGHTS_URL

    t0 = time.monotonic()
    with pytest.raises(F.FeatureNetworkError) as err:
        F.load_network("inception")
    assert time.monotonic() - t0 < 5
    message = str(err.value)
    assert "pt_inception-2015-12-05-6726825d.pth" in message
    assert FID_WEIGHTS_URL in message
    assert str(empty_hub / "checkpoints" / "pt_inception-2015-12-05-6726825d.pth") in message
    assert "score.inception_weights" in message and "FID_WEIGHTS" in message
    assert not list(empty_hub.rglob("*.pth"))  # no half-downloaded file left behind


def test_no_download_when_told_not_to(empty_hub):
    with pytest.raises(F.FeatureNetworkError, match="not in the torch hub cache"):
        F.find_inception_weights(download=False)


def test_configured_paths_are_used_and_checked(empty_hub, tmp_path, monkeypatch):
    with pytest.raises(F.FeatureNetworkError, match="score.inception_weights names .*nowhere.pth"):
        F.load_network("inception", str(tmp_path / "nowhere.pth"))
    bogus = tmp_path / "bogus.pth"
    bogus.write_bytes(b"these are not weights")
    with pytest.raises(F.FeatureNetworkError, match="bogus.pth is not a readable PyTorch weights file"):
        F.load_network("inception", str(bogus))
    monkeypatch.setenv(F.WEIGHTS_ENV, str(bogus))
    with pytest.raises(F.FeatureNetworkError, match="bogus.pth is not a readable"):
        F.load_network("inception")
    # the configured path wins over $FID_WEIGHTS, and a file in the hub cache is found without either
    assert F.find_inception_weights(str(tmp_path / "bogus.pth")) == bogus
    monkeypatch.delenv(F.WEIGHTS_ENV)
    hub_file = F.hub_weights_path()
    hub_file.parent.mkdir(parents=True)
    hub_file.write_bytes(b"")
    assert F.find_inception_weights() == hub_file


def test_a_torch_file_with_other_tensors_is_rejected(empty_hub, tmp_path):
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(3)}, wrong)
    with pytest.raises(F.FeatureNetworkError, match="does not hold the Inception weights"):
        F.load_network("inception", str(wrong))


def test_inception_from_a_configured_path_gives_2048_features(empty_hub, tmp_path):
    """Weights of the right layout (random values: the real ones cannot be downloaded here) load and run."""
    import torchvision

    # pytorch-fid's FID blocks subclass torchvision's with the same parameters, so the names and shapes match
    layout = torchvision.models.inception_v3(num_classes=1008, aux_logits=False, weights=None, init_weights=False)
    path = tmp_path / F.INCEPTION_WEIGHTS_FILE
    torch.save(layout.state_dict(), path)
    net = F.load_network("inception", str(path))
    assert net.name == "inception" and net.dim == 2048 and net.comparable_to_kaggle
    assert net.fingerprint.startswith(F.INCEPTION_WEIGHTS_FILE)
    feats = F.extract_features(net, images(2), progress=False)
    assert feats.shape == (2, 2048) and feats.dtype == np.float32 and (feats >= 0).all()
    # what makes the features Kaggle's: the TF graph's input path (inception_input), not pytorch-fid's own resize
    # and scale, which are off; the input path is part of the fingerprint, so older caches are recomputed
    inception = net.module.inception
    assert net.prepare is F.inception_input and net.fingerprint.endswith(":input=tf1-bilinear")
    assert not inception.resize_input and not inception.normalize_input
    assert inception.output_blocks == [3] and inception.last_needed_block == 3  # pool_3, the 2048-d block
    x = torch.from_numpy(images(2))
    direct = net.module(F.inception_input(x)).numpy()
    np.testing.assert_allclose(feats, direct, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------ the TF graph's input path


def two_by_two() -> np.ndarray:
    """One 2x2 image; channel 0 = [[0, 100], [200, 50]], channel 1 = 255 - that, channel 2 = 128."""
    x = np.zeros((1, 2, 2, 3), np.uint8)
    x[0, :, :, 0] = [[0, 100], [200, 50]]
    x[0, :, :, 1] = 255 - x[0, :, :, 0]
    x[0, :, :, 2] = 128
    return x


def test_inception_input_is_tf1_resize_bilinear_then_minus_128_over_128_by_hand():
    """TF1 resize_bilinear, align_corners=False, no half-pixel centres: destination i reads source i * 2 / 299.

    i = 100: source 0.668896 (200 / 299): lower 0, upper 1, lerp 0.668896.
      row 0: 0 + (100 - 0) * 0.668896 = 66.8896;  row 1: 200 + (50 - 200) * 0.668896 = 99.6656
      (100, 100): 66.8896 + (99.6656 - 66.8896) * 0.668896 = 88.8133
    i = 298: source 1.993311: lower 1, upper min(2, 1) = 1 (TF1 clamps the last rows and columns): the last pixel.
    Then (v - 128) / 128.
    """
    out = F.inception_input(two_by_two())
    assert out.shape == (1, 3, 299, 299) and out.dtype == torch.float32
    c0 = out[0, 0].double() * 128 + 128  # back to the resized 0..255 values
    assert c0[0, 0].item() == pytest.approx(0.0, abs=1e-5)
    assert c0[0, 100].item() == pytest.approx(66.88963, abs=1e-3)
    assert c0[100, 0].item() == pytest.approx(133.77926, abs=1e-3)  # 0 + 200 * 0.668896
    assert c0[100, 100].item() == pytest.approx(88.81332, abs=1e-3)
    assert c0[0, 298].item() == pytest.approx(100.0, abs=1e-4)  # last column: clamped to the last source column
    assert c0[298, 0].item() == pytest.approx(200.0, abs=1e-4)  # last row
    assert c0[298, 298].item() == pytest.approx(50.0, abs=1e-4)  # the corner: the last source pixel itself
    # the scale: (0 - 128) / 128 = -1, (50 - 128) / 128 = -0.609375, a flat 128 channel is 0 everywhere
    assert out[0, 0, 0, 0].item() == pytest.approx(-1.0, abs=1e-7)
    assert out[0, 0, 298, 298].item() == pytest.approx(-0.609375, abs=1e-6)
    assert out[0, 2].abs().max().item() == 0.0
    assert out[0, 1, 100, 100].item() == pytest.approx((255 - 88.81332 - 128) / 128, abs=1e-5)  # linear in values


def test_tf1_resize_indices_for_64_to_299_by_hand():
    lower, upper, lerp = F.tf1_resize_indices(64, 299)
    # source = i * 64 / 299 = i * 0.2140468
    assert lower[:6].tolist() == [0, 0, 0, 0, 0, 1] and lerp[4].item() == pytest.approx(0.8561873, abs=1e-6)
    assert lower[5].item() == 1 and lerp[5].item() == pytest.approx(0.0702341, abs=1e-5)  # 1.0702341
    # 298 * 0.2140468 = 63.786: the last three destinations read source row 63 twice (clamped)
    assert lower[-3:].tolist() == [63, 63, 63] and upper[-3:].tolist() == [63, 63, 63]
    assert upper[:5].tolist() == [1, 1, 1, 1, 1]


def test_inception_input_differs_from_pytorchs_half_pixel_resize():
    """The reason for the function: PyTorch's bilinear (align_corners=False) samples at (i + 0.5) * in / out - 0.5,
    which at i = 100 is 0.1722 (value 17.2), not TF1's 0.6689 (value 66.9)."""
    x = torch.from_numpy(two_by_two()).permute(0, 3, 1, 2).float()
    torch_way = torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    assert torch_way[0, 0, 0, 100].item() == pytest.approx(17.224, abs=1e-2)
    tf1 = F.inception_input(two_by_two())[0, 0, 0, 100].item() * 128 + 128
    assert abs(tf1 - torch_way[0, 0, 0, 100].item()) > 40


def test_inception_input_checks_its_input_and_keeps_a_64x64_batch_on_its_device():
    with pytest.raises(ValueError, match="uint8"):
        F.inception_input(np.zeros((1, 64, 64, 3), np.float32))
    with pytest.raises(ValueError, match=r"\[N, H, W, 3\]"):
        F.inception_input(np.zeros((64, 64, 3), np.uint8))
    batch = torch.from_numpy(images(3))
    out = F.inception_input(batch)
    assert out.shape == (3, 3, 299, 299) and out.device == batch.device
    assert -1.0 <= out.min().item() and out.max().item() <= 127 / 128


def test_config_choices_are_the_registered_networks():
    import typing

    from pipeline.config import ScoreConfig

    assert set(typing.get_args(typing.get_type_hints(ScoreConfig)["network"])) == set(F.NETWORKS)


def test_features_are_taken_in_full_float32_and_the_settings_restored():
    """TF32 (cuDNN's default for float32 convolutions on Ampere+, and what training turns on) is off while the
    network runs, whatever was set before, and back as it was after."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    seen = []

    class Spy(torch.nn.Module):
        def forward(self, x):
            seen.append((torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32))
            return x.mean(dim=(2, 3))

    try:
        net = F.FeatureNetwork("spy", Spy(), 3, False, "spy")
        pixels = images(5)
        feats = F.extract_features(net, pixels, batch_size=2, progress=False)
        # the network got [B, 3, H, W] floats in [0, 1]: the spy's mean per channel is the pixels' mean / 255
        np.testing.assert_allclose(feats, pixels.mean(axis=(1, 2)) / 255, rtol=1e-5)
        assert seen == [(False, False)] * 3
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
