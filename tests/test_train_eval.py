"""MiFID during training: logged with dvclive, the best checkpoint kept, its MiFID the lowest seen."""

import csv

import pytest
import torch

from pipeline import train as tr
from pipeline.training import monitor as tm
from pipeline.checkpoint import load_checkpoint, models_from
from pipeline.config import ConfigError, build_config
from tests.test_train import TINY, cfg_for, run_train, tiny_dataset


def settings(tmp_path) -> tm.EvalSettings:
    # the training set as the reference: score.reference crops (the photo reference is tested below)
    return tm.EvalSettings(build_config("score", {"network": "standin", "reference": "crops"}), tmp_path / "cache",
                           tmp_path / "best.pt")


def logged(live, name: str) -> list[tuple[int, float]]:
    with open(live / "plots" / "metrics" / "eval" / f"{name}.tsv", newline="") as fh:
        return [(int(r["step"]), float(r[name])) for r in csv.DictReader(fh, delimiter="\t")]


def test_evaluations_are_logged_and_best_pt_holds_the_lowest_mifid(tmp_path, dvclive_installed):
    cfg = cfg_for("dcgan", epochs=1.0, eval_every=2, eval_images=64, lr_g=2e-3)  # 6 steps: evaluated at 2, 4, 6
    ds = tiny_dataset()
    summary = run_train(tmp_path, cfg, ds, live_dir=tmp_path / "live", evaluation=settings(tmp_path))
    mifids = logged(tmp_path / "live", "mifid")
    assert [s for s, _ in mifids] == [2, 4, 6]
    assert [s for s, _ in logged(tmp_path / "live", "fid")] == [2, 4, 6]
    values = [v for _, v in mifids]
    assert len(set(values)) == 3  # G changed between evaluations
    best_step, best = min(mifids, key=lambda sv: sv[1])
    assert summary["best_mifid"] == pytest.approx(best) and summary["best_step"] == best_step
    ck = load_checkpoint(tmp_path / "best.pt")
    assert ck["step"] == best_step and ck["extra"]["eval"]["mifid"] == pytest.approx(best)
    last = load_checkpoint(tmp_path / "ck.pt")
    assert last["step"] == 6 and last["extra"]["eval"]["best_step"] == best_step
    assert last["extra"]["eval"]["last"]["mifid"] == pytest.approx(values[-1])
    # the best checkpoint's EMA generator, scored again the same way, gives the same MiFID
    from pipeline.metrics.features import load_network
    from pipeline.metrics.scoring import reference_statistics

    network = load_network("standin")
    stats, reused = reference_statistics(ds.images, network, tmp_path / "cache", "crops", progress=False)
    assert reused  # training cached the reference statistics where the score stage looks for them
    ev = tm.Evaluator(network, stats, build_config("score", {"network": "standin", "reference": "crops"}), 64, TINY["dcgan"]["z_dim"],
                      [24, 24], seed=cfg.seed + 7919)
    assert ev.run(models_from(ck)[2], best_step, torch.device("cpu"))["mifid"] == pytest.approx(best, rel=1e-6)


def test_off_by_default_in_the_demo_and_a_fresh_run_drops_a_stale_best(tmp_path):
    (tmp_path / "best.pt").write_bytes(b"an older run's best checkpoint")
    summary = run_train(tmp_path, cfg_for("dcgan", epochs=0.2, eval_every=0), live_dir=tmp_path / "live",
                        evaluation=settings(tmp_path))
    assert "best_mifid" not in summary
    assert not (tmp_path / "best.pt").exists()
    assert not (tmp_path / "live" / "plots" / "metrics" / "eval").exists()
    assert load_checkpoint(tmp_path / "ck.pt")["extra"]["eval"] is None


def test_resume_keeps_the_best_so_far(tmp_path):
    cfg = cfg_for("dcgan", epochs=0.5, eval_every=3, eval_images=32)  # 3 steps, evaluated at 3
    first = run_train(tmp_path, cfg, evaluation=settings(tmp_path))
    assert first["best_step"] == 3
    cfg2 = cfg_for("dcgan", epochs=1.0, eval_every=3, eval_images=32)  # on to 6
    second = run_train(tmp_path, cfg2, evaluation=settings(tmp_path), resume=True)
    assert second["best_mifid"] <= first["best_mifid"]
    assert load_checkpoint(tmp_path / "best.pt")["step"] == second["best_step"] in (3, 6)


@pytest.mark.parametrize("planted, best_step", [(0.0, 3), (float("inf"), 6)])
def test_resume_compares_with_the_saved_best(tmp_path, planted, best_step):
    """The best-so-far comes back from the checkpoint: a saved best of MiFID 0 cannot be beaten at step 6
    (best.pt stays the step-3 one), a saved best of infinity always is."""
    run_train(tmp_path, cfg_for("dcgan", epochs=0.5, eval_every=3, eval_images=32), evaluation=settings(tmp_path))
    ck = torch.load(tmp_path / "ck.pt", weights_only=True)
    ck["extra"]["eval"]["best_mifid"] = planted
    torch.save(ck, tmp_path / "ck.pt")
    before = (tmp_path / "best.pt").read_bytes()
    second = run_train(tmp_path, cfg_for("dcgan", epochs=1.0, eval_every=3, eval_images=32),
                       evaluation=settings(tmp_path), resume=True)
    assert second["best_step"] == best_step and load_checkpoint(tmp_path / "best.pt")["step"] == best_step
    if best_step == 3:
        assert second["best_mifid"] == 0.0 and (tmp_path / "best.pt").read_bytes() == before


@pytest.mark.parametrize("values, message", [
    ({"eval_every": -1}, "train.eval_every: -1 is out of range; it must be at least 0"),
    ({"eval_images": 1}, "train.eval_images: 1 is out of range; it must be between 2 and 100000"),
    ({"eval_images": 2.5}, "train.eval_images: expected a whole number"),
    ({"eval_evry": 10}, "unknown key(s) train.eval_evry"),
])
def test_bad_eval_params_are_clear_errors(values, message):
    with pytest.raises(ConfigError) as info:
        build_config("train", values)
    assert message in str(info.value)


def test_off_unless_asked_for_2000_images_when_on():
    cfg = build_config("train", {})
    assert (cfg.eval_every, cfg.eval_images) == (0, 2000)


def test_cli_writes_best_beside_the_checkpoint(tmp_path, capsys):
    import yaml

    from pipeline.files import save_dataset

    save_dataset(tmp_path / "d.npz", tiny_dataset())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({
        "train": {"model": "dcgan", "dcgan": TINY["dcgan"], "batch_size": 8, "epochs": 0.5, "eval_every": 3,
                  "eval_images": 32, "sample_every": 1000},
        "score": {"network": "standin"},  # reference: photos, the default
    }))
    photos = tiny_dataset()
    photos.images[:] = photos.images[::-1]  # other images than the training crops
    save_dataset(tmp_path / "photos.npz", photos)
    args = ["--data", str(tmp_path / "d.npz"), "--out", str(tmp_path / "m" / "ck.pt"), "--no-progress",
            "--params", str(tmp_path / "params.yaml"), "--cache", str(tmp_path / "cache")]
    # without the photo reference, a clear error before any training
    assert tr.main(args) == 2
    assert "score.reference is photos, but no photos file was given: pass --photos" in capsys.readouterr().err
    assert not (tmp_path / "m" / "ck.pt").exists()
    assert tr.main(args + ["--photos", str(tmp_path / "photos.npz")]) == 0
    out = capsys.readouterr().out
    assert "best in-training MiFID" in out and "at step 3" in out
    assert f"against {len(photos)} reference photos" in out
    assert load_checkpoint(tmp_path / "m" / "best.pt")["step"] == 3
    # the statistics the score stage would use: the same cache file and key (the photos, not the crops)
    from pipeline.metrics.features import load_network
    from pipeline.metrics.scoring import cache_file, load_cached_reference, reference_key

    key = reference_key(photos.images, load_network("standin"), "photos")
    assert load_cached_reference(cache_file(tmp_path / "cache", "standin", "photos"), key, "photos") is not None
    assert not cache_file(tmp_path / "cache", "standin", "crops").exists()
