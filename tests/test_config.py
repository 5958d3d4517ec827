"""Config validation: every wrong key or value is an error that names it and what is allowed."""

import pytest

from pipeline.config import ConfigError, PrepareConfig, apply_overrides, build_config, load_config


def test_defaults_follow_the_first_place_recipe():
    cfg = build_config("prepare", {})
    assert cfg == PrepareConfig()
    assert (cfg.size, cfg.square, cfg.min_aspect, cfg.max_aspect) == (64, "stretch", 0.25, 5.0)


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
    assert load_config("prepare", tmp_path / "absent.yaml") == PrepareConfig()


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
