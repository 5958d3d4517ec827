"""Config validation: every wrong key or value is an error that names it and what is allowed."""

import pytest

from pipeline.config import ConfigError, PrepareConfig, apply_overrides, build_config, load_config


def test_one_set_of_defaults_the_code_s_are_params_yaml_s():
    """--help shows one set of defaults: every key params.yaml sets is the code's default (the winners' values are
    recipes), and params.yaml names every key of every section, so that it reads as the whole demo."""
    import dataclasses
    from pathlib import Path

    from pipeline.config import SECTIONS, read_params
    from pipeline.models import REGISTRY

    params = read_params(Path(__file__).resolve().parent.parent / "params.yaml")
    for section, cls in SECTIONS.items():
        fields = {f.name: f.default for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
        values = dict(params[section])
        nested = {name: values.pop(name) for name in list(values) if section == "train" and name in REGISTRY}
        assert set(values) == set(fields), (section, set(values) ^ set(fields))
        for key, value in values.items():
            assert value == fields[key], f"{section}.{key}: params.yaml {value!r}, code default {fields[key]!r}"
        for name, sub in nested.items():
            defaults = dataclasses.asdict(REGISTRY[name].options())
            for key, value in sub.items():
                assert value == defaults[key], f"train.{name}.{key}: params.yaml {value!r}, code {defaults[key]!r}"
    assert build_config("train", {}).model == "dcgan" and build_config("score", {}).network == "standin"


@pytest.mark.parametrize(
    "values, message",
    [
        ({"sqare": "pad"}, "unknown key(s) prepare.sqare; the keys of 'prepare' are: size, square"),
        ({"square": "squash"}, "prepare.square: 'squash' is not allowed; choose one of stretch, expand, pad"),
        ({"size": "64"}, "prepare.size: expected a whole number"),
        ({"size": 64.5}, "prepare.size: expected a whole number"),
        ({"size": True}, "prepare.size: expected a whole number"),
        ({"size": 4}, "prepare.size: 4 is out of range; it must be between 8 and 1024"),
        ({"margin": -0.1}, "prepare.margin: -0.1 is out of range"),
        ({"min_aspect": 3.0, "max_aspect": 2.0}, "must not exceed prepare.max_aspect"),
        ({"resample": "nearest"}, "choose one of lanczos, bicubic, bilinear, box"),
    ],
)
def test_bad_values_name_the_key_and_the_choices(values, message):
    with pytest.raises(ConfigError) as info:
        build_config("prepare", values)
    assert message in str(info.value)


def test_ints_are_accepted_for_floats():
    assert build_config("prepare", {"margin": 0}).margin == 0.0


def test_unknown_section():
    with pytest.raises(ConfigError, match="known sections: data, prepare, train, generate"):
        build_config("prepair", {})


def test_params_file_and_overrides(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("data:\n  source: kaggle\nprepare:\n  square: pad\n  margin: 0.1\n")
    cfg = load_config("prepare", params, ["prepare.margin=0.2", "min_side=16"])
    assert (cfg.square, cfg.margin, cfg.min_side) == ("pad", 0.2, 16)
    assert load_config("data", params).source == "kaggle"
    with pytest.raises(ConfigError, match="no such params file"):  # a path the user named: a typo, not defaults
        load_config("prepare", tmp_path / "absent.yaml")


def test_no_params_file_here_means_defaults_with_a_notice(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert load_config("prepare") == PrepareConfig()
    assert "every setting takes its built-in default" in capsys.readouterr().err


def test_params_file_with_a_key_twice_or_not_utf8(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("prepare:\n  margin: 0.1\n  square: pad\n  margin: 0.2\n")
    with pytest.raises(ConfigError, match="key 'margin' appears twice"):
        load_config("prepare", params)
    params.write_text("prepare:\n  margin: 0.1\ntrain:\n  margin: 0.2\n")  # the same key in two sections is fine
    assert load_config("prepare", params).margin == 0.1
    params.write_bytes("prepare:\n  square: pad  # caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_config("prepare", params)


@pytest.mark.parametrize("raw", [".nan", ".inf", "-.inf", "nan", "'inf'"])
def test_non_finite_numbers_are_rejected(raw):
    # NaN passes every range check (all comparisons are false), so it needs its own
    with pytest.raises(ConfigError, match="not a finite number"):
        build_config("prepare", apply_overrides("prepare", {}, [f"margin={raw}"]))


def test_exponent_without_a_dot_is_a_number():
    # YAML 1.1 reads 1e-4 as a string (1.0e-4 is a float); `dvc exp run -S train.lr_g=1e-4` writes it like that
    assert build_config("generate", apply_overrides("generate", {}, ["truncation=1e-1"])).truncation == 0.1
    with pytest.raises(ConfigError, match="expected a number, got 'fast'"):
        build_config("generate", {"truncation": "fast"})


@pytest.mark.parametrize("section,key", [("data", "demo_seed"), ("prepare", "grid_seed"), ("generate", "seed")])
def test_seeds_must_fit_every_random_generator(section, key):
    assert getattr(build_config(section, {key: 2**32 - 1}), key) == 2**32 - 1
    for bad in (-1, 2**32, 10**20):
        with pytest.raises(ConfigError, match=f"{section}.{key}: {bad} is out of range"):
            build_config(section, {key: bad})


def test_override_errors():
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        apply_overrides("prepare", {}, ["margin"])
    with pytest.raises(ConfigError, match="reads section 'prepare', not 'data'"):
        apply_overrides("prepare", {}, ["data.source=demo"])


def test_broken_params_file(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("prepare: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config("prepare", params)
    params.write_text("prepare: 3\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config("prepare", params)


def test_sample_grid_warning_past_a_thousand_grids():
    from pipeline.config import sample_grid_warning

    assert sample_grid_warning(6000, 6) is None
    # the README's full recipe with the demo's sample_every: 130 epochs x 22,126 crops / 32 per step
    warning = sample_grid_warning(130 * 22_126 / 32, 6)
    assert "draws about 14,981 sample grids in 89,887 steps" in warning and "sample_every=449" in warning


def test_help_shows_what_params_yaml_here_sets(tmp_path, monkeypatch):
    import argparse

    from pipeline.config import add_config_arguments

    def set_help() -> str:
        parser = argparse.ArgumentParser()
        add_config_arguments(parser, "prepare")
        return next(a.help for a in parser._actions if "--set" in a.option_strings)

    monkeypatch.chdir(tmp_path)
    assert "margin=0.0," in set_help()  # no params.yaml: the built-in defaults alone
    (tmp_path / "params.yaml").write_text("prepare:\n  margin: 0.2\n  size: 64\n")
    text = set_help()
    assert "margin=0.0 (params.yaml: 0.2)" in text and "size=64," in text  # a value equal to the default: no note
    (tmp_path / "params.yaml").write_text("prepare: [unclosed\n")
    assert "margin=0.0," in set_help()  # unreadable: --help still works (the stage reports it when it runs)


def test_epochs_auto_fits_the_time_budget(tmp_path):
    from pipeline.config import epochs_need_budget

    # as `dvc exp run -S train.epochs=auto` writes it into params.yaml, and as --set gives it
    params = tmp_path / "params.yaml"
    params.write_text("train:\n  epochs: auto\n  time_budget_min: 30\n")
    assert load_config("train", params).epochs == "auto"
    assert load_config("train", params, ["epochs=auto"]).epochs == "auto"
    assert load_config("train", params, ["epochs=12"]).epochs == 12.0
    epochs_need_budget(load_config("train", params))  # a budget: fine
    # the section alone is valid without a budget (the Kaggle kernel gives training one of its own), a run is not
    alone = build_config("train", {"epochs": "auto"})
    with pytest.raises(ConfigError, match=r"train.epochs: auto .* train.time_budget_min, which is 0 \(no budget\)"):
        epochs_need_budget(alone)
    epochs_need_budget(build_config("train", {"epochs": 3}))  # a number needs no budget
    for value, message in (("Auto", "train.epochs: expected a number, got 'Auto' (or auto)"),
                           ("lots", "train.epochs: expected a number, got 'lots' (or auto)"),
                           (-1, "train.epochs: -1.0 is out of range; it must be at least 0.0 (or auto)"),
                           (True, "train.epochs: expected a number, got True (or auto)")):
        with pytest.raises(ConfigError) as info:
            build_config("train", {"epochs": value})
        assert str(info.value) == message


def test_nested_override_without_the_section_prefix():
    """`--set biggan.g_width=16` reads as train.biggan.g_width (it once read 'biggan' as a params section)."""
    values = apply_overrides("train", {"biggan": {"d_width": 8}}, ["biggan.g_width=16", "train.dcgan.z_dim=64"])
    assert values["biggan"] == {"d_width": 8, "g_width": 16} and values["dcgan"] == {"z_dim": 64}
    assert build_config("train", dict(values, model="biggan")).model_options.g_width == 16
