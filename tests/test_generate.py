"""The generate stage: a valid 10,000-image zip, byte-identical for one seed, breeds, truncation."""

import re
import zipfile

import numpy as np
import pytest
import torch

from pipeline import generate as gen
from pipeline import sampling
from pipeline.validate import validate_zip
from tests.test_train import cfg_for, run_train


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gen")
    run_train(tmp, cfg_for("dcgan", epochs=0.2))
    return tmp / "ck.pt"


def test_options_are_checked_as_their_params_keys(checkpoint, tmp_path, capsys):
    base = ["--checkpoint", str(checkpoint), "--out", str(tmp_path / "x.zip"), "--device", "cpu", "--no-progress"]
    for extra, message in ((["--n", "0"], "generate.n: 0 is out of range"),
                           (["--seed", "-1"], "generate.seed: -1 is out of range"),
                           (["--set", "truncation=0.0001"], "truncation: 0.0001 is too small"),
                           (["--set", "truncation=.nan"], "not a finite number")):
        assert gen.main(base + extra) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "x.zip").exists()


def test_ten_thousand_valid_images_and_the_same_bytes_for_the_same_seed(checkpoint, tmp_path, capsys):
    a, b, c = tmp_path / "a.zip", tmp_path / "b.zip", tmp_path / "c.zip"
    for path, seed in ((a, 0), (b, 0), (c, 1)):
        assert gen.main(["--checkpoint", str(checkpoint), "--out", str(path), "--seed", str(seed), "--no-progress",
                         "--device", "cpu"]) == 0
    result = validate_zip(a)
    assert result.images == 10_000
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    assert (tmp_path / "a_grid.png").is_file()
    assert "generate: 10000 images" in capsys.readouterr().out


def test_verbose_reports_the_steps_and_writes_the_same_zip(checkpoint, tmp_path, capsys):
    plain, verbose = tmp_path / "plain.zip", tmp_path / "verbose.zip"
    args = ["--checkpoint", str(checkpoint), "--n", "300", "--no-progress", "--device", "cpu"]
    assert gen.main([*args, "--out", str(plain)]) == 0
    assert "wall time per step" not in capsys.readouterr().out
    assert gen.main([*args, "--out", str(verbose), "--verbose"]) == 0
    assert plain.read_bytes() == verbose.read_bytes()
    report = capsys.readouterr().out.split("wall time per step:\n")[1]
    seconds = {m[1]: float(m[2]) for m in re.finditer(r"^\s+(.*?)\s+([\d.]+) s", report, re.MULTILINE)}
    for step in ("checkpoint: load", "generator: build", "generator: forward, pixels to the host",
                 "PNG: wait for the encoder threads", "zip: write members", "grid PNG"):
        assert seconds[step] >= 0.0
    # this process started before the test session: its age covers at least the steps timed above
    assert seconds["interpreter start + imports"] > seconds["generator: forward, pixels to the host"]
    steps = {k: v for k, v in seconds.items() if k != "total of the steps"}
    assert seconds["total of the steps"] == pytest.approx(sum(steps.values()), abs=0.02)


def test_breed_option_and_unknown_breed(checkpoint, tmp_path, capsys):
    out = tmp_path / "dark.zip"
    assert gen.main(["--checkpoint", str(checkpoint), "--out", str(out), "--n", "16", "--breed", "dark",
                     "--no-progress", "--device", "cpu"]) == 0
    with zipfile.ZipFile(out) as z:
        assert len(z.namelist()) == 16
    assert gen.main(["--checkpoint", str(checkpoint), "--out", str(tmp_path / "x.zip"), "--n", "4", "--breed",
                     "poodle", "--device", "cpu"]) == 2
    assert "not one of the checkpoint's 2 breeds" in capsys.readouterr().err
    assert not (tmp_path / "x.zip").exists()


def test_use_ema_grid_and_label_sampling_options(checkpoint, tmp_path, capsys):
    base = ["--checkpoint", str(checkpoint), "--n", "16", "--no-progress", "--device", "cpu"]
    zips = {}
    for name, extra in (("ema", []), ("raw", ["--set", "use_ema=false"]), ("uniform", ["--set", "label_sampling=uniform"])):
        out = tmp_path / f"{name}.zip"
        assert gen.main(base + ["--out", str(out), "--grid", str(tmp_path / f"{name}-grid.png")] + extra) == 0
        assert (tmp_path / f"{name}-grid.png").read_bytes().startswith(b"\x89PNG")  # where --grid says
        with zipfile.ZipFile(out) as z:
            zips[name] = [z.read(n) for n in sorted(z.namelist())]
    assert "EMA G" in capsys.readouterr().out
    assert zips["raw"] != zips["ema"]  # the raw G's weights differ from their moving average
    # the fixture's two breeds are equally common: proportional and uniform draw from the same weights
    assert zips["uniform"] == zips["ema"]


def test_a_run_without_ema_is_said_to_sample_the_raw_generator(tmp_path, capsys):
    """train.ema_decay 0 keeps no G_ema: generate samples G and must not call it the EMA generator."""
    run_train(tmp_path, cfg_for("dcgan", epochs=0.2, ema_decay=0.0))
    assert gen.main(["--checkpoint", str(tmp_path / "ck.pt"), "--out", str(tmp_path / "x.zip"), "--n", "4",
                     "--no-progress", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "raw G" in out and "EMA G" not in out


def test_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert gen.main(["--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path / "x.zip")]) == 2
    assert "no checkpoint here" in capsys.readouterr().err


def test_label_weights_follow_the_training_counts(checkpoint):
    from pipeline.checkpoint import load_checkpoint

    ck = load_checkpoint(checkpoint)
    assert ck["extra"]["label_counts"] == [24, 24]
    assert list(sampling.label_weights(ck, "proportional", None)) == [24.0, 24.0]
    assert list(sampling.label_weights(ck, "uniform", None)) == [1.0, 1.0]
    assert list(sampling.label_weights(ck, "uniform", "Bright")) == [1.0, 0.0]


def test_bf16_generation_stays_within_a_few_levels_of_fp32():
    """generate.precision bf16 (G under bf16 autocast, fast on CPUs with AMX): the same latents give pixels
    within a few of 256 levels of fp32's, and different pixels, so the setting is really applied."""
    cfg = cfg_for("biggan")
    from pipeline.models import build_model

    torch.manual_seed(0)
    G, _ = build_model("biggan", cfg.model_options, 2)
    G.eval()
    args = (G, 64, G.z_dim, np.ones(2), 0.8, 0, 32, torch.device("cpu"))
    fp32 = np.concatenate(list(gen.generate_images(*args, progress=False)))
    bf16 = np.concatenate(list(gen.generate_images(*args, progress=False, precision="bf16")))
    again = np.concatenate(list(gen.generate_images(*args, progress=False, precision="bf16")))
    assert fp32.shape == bf16.shape == (64, 64, 64, 3) and bf16.dtype == np.uint8
    diff = np.abs(fp32.astype(int) - bf16.astype(int))
    assert diff.max() > 0 and diff.max() <= 16 and diff.mean() < 2.0
    assert np.array_equal(bf16, again)  # deterministic: the same seed gives the same bytes in bf16 too


def test_generate_precision_is_validated():
    from pipeline.config import ConfigError, build_config

    assert build_config("generate", {"precision": "bf16"}).precision == "bf16"
    with pytest.raises(ConfigError, match="choose one of fp32, bf16"):
        build_config("generate", {"precision": "fp16"})
