"""docs/extending.md's examples, run as written there: a model and a loss registered from the page's own
code are checked by the config, train, checkpoint and generate like the built-in ones."""

import math
import re
import sys
import types

import pytest
import torch

from pipeline import losses
from pipeline import train as tr
from pipeline.checkpoint import generator_from, load_checkpoint
from pipeline.config import ConfigError, build_config
from pipeline.generate import generate_images
from pipeline.models import REGISTRY
from pipeline.runtime import setup_runtime
from tests.conftest import REPO
from tests.test_train import cfg_for, tiny_dataset


def readme_block(first_line: str) -> str:
    """docs/extending.md's python code block that starts with ``first_line``."""
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "docs" / "extending.md").read_text(encoding="utf-8"), re.S)
    found = [b for b in blocks if b.startswith(first_line + "\n")]
    assert len(found) == 1, f"docs/extending.md should have one python block starting with {first_line!r}"
    return found[0]


@pytest.fixture
def tiny_model(monkeypatch):
    """docs/extending.md's ``pipeline/models/tiny.py``, imported as that module for this test only."""
    if "tiny" in REGISTRY:
        pytest.skip("a model named 'tiny' is registered already (docs/extending.md's example, added to pipeline/models?)")
    module = types.ModuleType("pipeline.models.tiny")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    before = dict(REGISTRY)
    exec(compile(readme_block("# pipeline/models/tiny.py"), "docs/extending.md (tiny.py)", "exec"), module.__dict__)
    yield module
    REGISTRY.clear()
    REGISTRY.update(before)


def _train(tmp_path, cfg):
    rt = setup_runtime(cfg.precision, cfg.channels_last, "cpu")
    return tr.train(tiny_dataset(), cfg, tmp_path / "ck.pt", rt, progress=False)


def test_the_readme_model_trains_checkpoints_and_generates(tiny_model, tmp_path):
    assert "tiny" in REGISTRY
    cfg = build_config("train", {"model": "tiny", "tiny": {"z_dim": 8, "width": 4}, "batch_size": 8, "epochs": 1.0,
                                 "log_every": 1, "sample_every": 1000, "checkpoint_every": 1000,
                                 "aux_class_weight": 1.0})  # conditional, with the auxiliary classifier
    summary = _train(tmp_path, cfg)
    assert summary["steps"] == 6 and all(math.isfinite(summary[k]) for k in ("loss_d", "loss_g"))
    ck = load_checkpoint(tmp_path / "ck.pt")
    assert ck["model"] == "tiny" and ck["model_options"] == {"z_dim": 8, "width": 4} and ck["aux_classifier"]
    G = generator_from(ck)
    batches = list(generate_images(G, 10, G.z_dim, [1.0, 1.0], 0.8, seed=0, batch_size=4,
                                   device=torch.device("cpu"), progress=False))
    assert [b.shape for b in batches] == [(4, 64, 64, 3), (4, 64, 64, 3), (2, 64, 64, 3)]
    assert len({b.tobytes() for b in batches}) == 3  # not one picture for every latent


def test_the_readme_models_options_are_checked(tiny_model):
    with pytest.raises(ConfigError, match="train.tiny.width"):
        build_config("train", {"model": "tiny", "tiny": {"width": 0}})
    with pytest.raises(ConfigError, match="train.tiny"):
        build_config("train", {"model": "tiny", "tiny": {"depth": 3}})


def test_the_readme_loss_by_hand_and_in_training(monkeypatch, tmp_path):
    namespace = dict(vars(losses))  # the block is written to sit in pipeline/losses.py
    exec(compile(readme_block("# in pipeline/losses.py, beside the others"), "docs/extending.md (losses)", "exec"), namespace)
    real, fake = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    # the page's hand-computed answers: 0.5 x mean(0, 1) + 0.5 x mean(0, 4) and 0.5 x mean(1, 1)
    assert namespace["lsgan_d"](real, fake).item() == pytest.approx(1.25)
    assert namespace["lsgan_g"](real, fake).item() == pytest.approx(0.5)
    monkeypatch.setitem(losses.LOSSES, "lsgan", losses.GanLoss("lsgan", namespace["lsgan_d"], namespace["lsgan_g"]))
    summary = _train(tmp_path, cfg_for("dcgan", loss="lsgan"))
    assert summary["steps"] == 6 and all(math.isfinite(summary[k]) for k in ("loss_d", "loss_g"))
