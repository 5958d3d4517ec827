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
    # what makes the features Kaggle's: 64x64 images resized to 299 bilinearly, [0, 1] scaled to [-1, 1]
    inception = net.module.inception
    assert inception.resize_input and inception.normalize_input
    assert inception.output_blocks == [3] and inception.last_needed_block == 3  # pool_3, the 2048-d block


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
