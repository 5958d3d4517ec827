"""Recipes: named sets of prepare, train and generate values in recipes/, picked by params.yaml's `recipe` key.

Every recipe validates and trains; a value params.yaml sets (one that differs from the demo's) wins over the
recipe's; bad recipes are refused naming the key and the file; the kernel of a recipe carries its values and
names it in its title.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.config import (DEMO_RECIPE, RECIPE_SECTIONS, RECIPES_DIR, ConfigError, build_config, load_config,
                             read_params, recipe_names, resolve_section)
from tests.conftest import REPO

SHIPPED = ["demo", "first-place", "second-place", "third-place", "fifth-place", "dcgan", "progan", "ours"]


def params_with(recipe: str, **sections) -> dict:
    """params.yaml of the repository, with ``recipe`` picked and ``sections``' keys set on top."""
    params = read_params(REPO / "params.yaml")
    params["recipe"] = recipe
    for section, values in sections.items():
        params[section] = dict(params[section], **values)
    return params


def resolved(params: dict, section: str, folder: Path = RECIPES_DIR):
    return build_config(section, resolve_section(params, section, folder))


FOUND = recipe_names()  # the shipped ones and any of your own: every recipe is checked and trained


def test_the_recipes_the_readme_promises_are_there():
    assert set(SHIPPED) <= set(FOUND)
    assert read_params(REPO / "params.yaml")["recipe"] == DEMO_RECIPE  # params.yaml stays the demo


@pytest.mark.parametrize("recipe", FOUND)
def test_every_recipe_validates_and_names_every_section(recipe):
    for section in RECIPE_SECTIONS:
        resolved(params_with(recipe), section)  # raises on a wrong key or value
    text = (RECIPES_DIR / f"{recipe}.yaml").read_text()
    assert text.startswith("#"), "a recipe starts with a comment saying what it is and where it comes from"


def test_the_first_place_recipe_is_what_the_winners_wrote():
    """COMPETITION.md's 1st place: BigGAN, z 120, attention at 32x32, BCE with label smoothing, Adam 3e-4 / 3e-4,
    betas (0, 0.999), batch 32, 130 epochs, extreme aspect ratios dropped, flips, truncation 0.8."""
    params = params_with("first-place")
    prep, train, gen = (resolved(params, s) for s in RECIPE_SECTIONS)
    assert (prep.square, prep.min_aspect, prep.max_aspect) == ("stretch", 0.25, 5.0)
    assert (train.model, train.loss, train.lr_g, train.lr_d, train.beta1, train.beta2, train.batch_size,
            train.epochs, train.hflip) == ("biggan", "bce", 3e-4, 3e-4, 0.0, 0.999, 32, 130.0, True)
    assert train.label_smoothing > 0 and train.conditional
    assert (train.model_options.z_dim, train.model_options.attention_res) == (120, 32)
    assert gen.truncation == 0.8


def test_ours_is_biggan_with_diffaugment_lecam_and_ema():
    train = resolved(params_with("ours"), "train")
    assert (train.model, train.augment, train.lecam_weight) == ("biggan", "color,translation,cutout", 0.3)
    assert train.ema_decay > 0


def test_a_value_set_in_params_yaml_wins_over_the_recipe(capsys):
    """The README's rule: the recipe sets its keys, except where params.yaml (or `-S`) holds a value other than the
    demo's: that one is the user's. A value equal to the demo's cannot be told from the demo: the recipe's stays."""
    params = params_with("first-place", train={"epochs": 60, "lr_d": 0.0003}, generate={"truncation": 0.5})
    notes: list[str] = []
    train = build_config("train", resolve_section(params, "train", notes=notes))
    assert train.epochs == 60  # -S train.epochs=60 over the recipe's 130
    assert train.model == "biggan" and train.model_options.g_width == 32  # the recipe's, params.yaml has the demo's
    assert notes == ["recipe first-place (recipes/first-place.yaml); params.yaml overrides it: train.epochs: 60 "
                     "(the recipe: 130)"]
    assert resolved(params, "generate").truncation == 0.5
    # nested: a model option set in params.yaml wins too, the recipe's other options stay
    params["train"]["biggan"] = dict(params["train"]["biggan"], g_width=16)
    options = resolved(params, "train").model_options
    assert (options.g_width, options.d_width, options.attention_res) == (16, 32, 32)


def test_a_value_written_differently_is_still_the_demo_s():
    """PyYAML reads a hand-written 3e-4 as a string and an empty value as None: still the demo's value (so the
    recipe's applies), not a user's override; a model sub-section that is not a mapping is a ConfigError."""
    assert resolved(params_with("third-place", train={"lr_g": "3e-4"}), "train").lr_g == 2e-4  # the recipe's
    params = params_with("ours", train={"augment": None})
    assert resolved(params, "train").augment == "color,translation,cutout"
    params["train"]["biggan"] = 5
    with pytest.raises(ConfigError, match="train.biggan in params.yaml must be a mapping"):
        resolve_section(params, "train")


def test_stages_say_which_recipe_is_in_force(tmp_path, monkeypatch, capsys):
    (tmp_path / "params.yaml").write_text("recipe: first-place\ngenerate:\n  seed: 3\n")
    cfg = load_config("generate", tmp_path / "params.yaml")
    assert (cfg.truncation, cfg.seed) == (0.8, 3)
    assert "generate: recipe first-place (recipes/first-place.yaml)" in capsys.readouterr().err
    load_config("generate", tmp_path / "params.yaml", quiet=True)
    assert capsys.readouterr().err == ""
    # sections that recipes do not hold are read as they are
    (tmp_path / "params.yaml").write_text("recipe: ours\nscore:\n  eps: 0.25\n")
    assert load_config("score", tmp_path / "params.yaml").eps == 0.25


def test_an_unknown_recipe_lists_the_known_ones():
    with pytest.raises(ConfigError) as info:
        resolve_section(params_with("frist-place"), "train")
    message = str(info.value)
    assert "recipe: 'frist-place' is not a known recipe" in message
    assert all(name in message for name in SHIPPED) and "dvc exp run -S recipe=" in message
    with pytest.raises(ConfigError, match="is not a recipe name"):
        resolve_section(params_with("../params"), "train")


@pytest.mark.parametrize("text, message", [
    ("prepare: {}\ntrain:\n  lr_gg: 0.1\ngenerate: {}\n", "unknown key(s) train.lr_gg"),
    ("prepare: {}\ntrain:\n  loss: wasserstein\ngenerate: {}\n", "train.loss: 'wasserstein' is not a known loss"),
    ("prepare:\n  square: squash\ntrain: {}\ngenerate: {}\n", "prepare.square: 'squash' is not allowed"),
    ("prepare: {}\ntrain:\n  biggan:\n    g_width: 0\ngenerate: {}\n", "train.biggan.g_width: 0 is out of range"),
    ("prepare: {}\ntrain: {}\n", "it lacks generate"),
    ("prepare: {}\ntrain: {}\ngenerate: {}\nscore: {}\n", "it has score"),
    ("prepare: {}\ntrain: [1, 2]\ngenerate: {}\n", "section 'train' must be a mapping"),
    ("prepare: {}\ntrain:\n  epochs: 1\n  epochs: 2\ngenerate: {}\n", "appears twice"),
])
def test_a_bad_recipe_is_refused_naming_the_key_and_the_file(tmp_path, text, message):
    (tmp_path / "mine.yaml").write_text(text)
    with pytest.raises(ConfigError) as info:
        for section in RECIPE_SECTIONS:
            resolve_section(params_with("mine"), section, tmp_path)
    assert message in str(info.value) and str(tmp_path / "mine.yaml") in str(info.value)


@pytest.mark.slow
@pytest.mark.parametrize("recipe", [r for r in FOUND if r != DEMO_RECIPE])
def test_every_recipe_trains_two_steps_on_tiny_data(recipe, tmp_path):
    """The recipe as it is (its model at its size, its loss, augmentation, EMA), two steps of the train stage on
    tiny data; the checkpoint then holds a generator with finite weights."""
    from pipeline import train as tr
    from pipeline.checkpoint import generator_from, load_checkpoint
    from pipeline.runtime import setup_runtime
    from tests.test_train import tiny_dataset

    # batch 16 over the recipe's (a value set over a recipe wins): its models at their sizes, quicker on a CPU;
    # 1 epoch of 2 x 16 images is 2 steps
    cfg = resolved(params_with(recipe, train={"epochs": 1, "batch_size": 16}), "train")
    ds = tiny_dataset(2 * cfg.batch_size)
    summary = tr.train(ds, cfg, tmp_path / "ck.pt", setup_runtime(cfg.precision, cfg.channels_last, "cpu"),
                       progress=False)
    assert summary["steps"] == 2
    G = generator_from(load_checkpoint(tmp_path / "ck.pt"))
    assert np.isfinite(sum(float(p.sum()) for p in G.parameters()))


def test_the_train_stage_keeps_the_recipe_in_the_checkpoint(tmp_path, monkeypatch):
    """So that the leaderboard row of its score names the recipe (leaderboard.describe_checkpoint)."""
    from pipeline import train as tr
    from pipeline.checkpoint import load_checkpoint
    from pipeline.files import save_dataset
    from pipeline.leaderboard import describe_checkpoint
    from tests.test_train import TINY, tiny_dataset

    save_dataset(tmp_path / "d.npz", tiny_dataset(8))
    dcgan = "".join(f"\n    {k}: {v}" for k, v in TINY["dcgan"].items())
    (tmp_path / "params.yaml").write_text(f"recipe: dcgan\ntrain:\n  epochs: 1\n  batch_size: 4\n  dcgan:{dcgan}\n")
    assert tr.main(["--data", str(tmp_path / "d.npz"), "--out", str(tmp_path / "ck.pt"), "--params",
                    str(tmp_path / "params.yaml"), "--device", "cpu", "--no-progress"]) == 0
    ck = load_checkpoint(tmp_path / "ck.pt")
    assert ck["extra"]["recipe"] == "dcgan" and describe_checkpoint(ck)[1].startswith("recipe dcgan; step 2/2")
    # the recipe's values, with params.yaml's own on top: its optimiser, the tiny model and batch from here
    assert (ck["train_config"]["lr_g"], ck["train_config"]["beta1"], ck["train_config"]["batch_size"]) == (2e-4, 0.5, 4)


def test_an_ema_that_would_never_start_is_a_warning(tmp_path, capsys):
    """fifth-place's EMA starts at step 30,000: a run cut shorter (-S train.epochs=10) would sample a plain G."""
    from pipeline import train as tr
    from pipeline.config import build_config
    from pipeline.runtime import setup_runtime
    from tests.test_train import TINY, tiny_dataset

    cfg = build_config("train", {"epochs": 1, "batch_size": 4, "ema_start": 30_000, "dcgan": TINY["dcgan"]})
    tr.train(tiny_dataset(8), cfg, tmp_path / "ck.pt", setup_runtime("fp32", False, "cpu"), progress=False,
             samples_dir=tmp_path / "s")
    assert "train.ema_start 30000 is not below the run's 2 steps" in capsys.readouterr().err


@pytest.mark.parametrize("recipe", [r for r in FOUND if r != DEMO_RECIPE])
def test_the_kernel_of_a_recipe_carries_its_values_and_names_it(recipe, tmp_path):
    import json

    from pipeline.kernel import build, select_params

    params = params_with(recipe)
    selected = select_params(params, [])
    for section in RECIPE_SECTIONS:
        assert selected[section] == resolve_section(params, section)
    assert selected["kernel"]["title"] == f"Generative Dog Images GAN pipeline: {recipe}"
    built = build(selected, tmp_path)  # the kernel stage's build: its folder is the recipe's slug
    meta = json.loads((built.folder / "kernel-metadata.json").read_text())
    assert meta["title"].endswith(f": {recipe}") and meta["id"].endswith(f"generative-dog-images-gan-pipeline-{recipe}")
    # a title that names the recipe already is kept, and --set still wins over the recipe
    params["kernel"] = dict(params["kernel"], title=f"My {recipe} dogs")
    selected = select_params(params, ["train.epochs=3"])
    assert selected["kernel"]["title"] == f"My {recipe} dogs" and selected["train"]["epochs"] == 3
