"""The training stage on tiny data: learning happens, checkpoints round-trip, resume, budget, DDP."""

import math
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.checkpoint import CheckpointError, generator_from, load_checkpoint, models_from
from pipeline.config import build_config
from pipeline.files import Dataset, save_dataset
from pipeline.runtime import setup_runtime, unwrap
from pipeline import train as tr
from pipeline.training import budget as tb
from pipeline.training import resume as trs
from pipeline.training import run as trun
from pipeline.training import step as ts
from tests.conftest import REPO

TINY = {
    "dcgan": {"z_dim": 16, "g_width": 8, "d_width": 8},
    "biggan": {"z_dim": 20, "shared_dim": 8, "g_width": 4, "d_width": 4, "attention_res": 32},
    "progan": {"z_dim": 16, "width": 16},
}


def tiny_dataset(n: int = 48, seed: int = 0) -> Dataset:
    """Two 'breeds': bright images and dark images, with a little noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    base = np.where(labels[:, None, None, None] == 0, 200, 50)
    images = np.clip(base + rng.normal(0, 20, (n, 64, 64, 3)), 0, 255).astype(np.uint8)
    return Dataset(images, labels.astype(np.int64), np.array(["bright", "dark"]), np.array([f"p{i}#0" for i in range(n)]))


def cfg_for(model: str = "dcgan", **over):
    values = {"model": model, model: TINY[model], "batch_size": 8, "epochs": 1.0, "log_every": 1,
              "sample_every": 1000, "checkpoint_every": 1000, "ema_decay": 0.9}
    values.update(over)
    return build_config("train", values)


def run_train(tmp_path, cfg, ds=None, **kw):
    rt = setup_runtime(cfg.precision, cfg.channels_last, "cpu")
    return tr.train(ds or tiny_dataset(), cfg, tmp_path / "ck.pt", rt, progress=False, **kw)


def test_total_steps():
    cfg = cfg_for(batch_size=32, epochs=130.0)
    assert ts.total_steps(cfg, 22_000) == 89_375  # 130 * 22000 / 32
    assert ts.total_steps(cfg, 22_000, world_size=4) == 22_344  # ceil(89375 / 4)
    assert ts.total_steps(cfg_for(epochs="auto", time_budget_min=1.0), 22_000) is None  # the budget decides


def test_device_batches_are_scaled_and_labelled():
    data = ts.DeviceData(tiny_dataset(), torch.device("cpu"), seed=0)
    x, y = data.batch(16)
    assert x.shape == (16, 3, 64, 64) and x.dtype == torch.float32
    assert -1.0 <= float(x.min()) and float(x.max()) <= 1.0
    bright = x.mean(dim=(1, 2, 3)) > 0
    assert torch.equal(bright, y == 0)


@pytest.mark.parametrize("model", ["dcgan", "biggan", "progan"])
def test_a_short_run_writes_a_usable_checkpoint(tmp_path, model, dvclive_installed):  # the losses go to dvclive
    cfg = cfg_for(model, epochs=0.5)
    summary = run_train(tmp_path, cfg, samples_dir=tmp_path / "samples", live_dir=tmp_path / "live")
    assert summary["steps"] == summary["total_steps"] == 3  # 0.5 * 48 / 8
    assert np.isfinite(summary["loss_d"]) and np.isfinite(summary["loss_g"])
    ck = load_checkpoint(tmp_path / "ck.pt")
    assert ck["step"] == 3 and ck["model"] == model and ck["breeds"] == ["bright", "dark"]
    assert (tmp_path / "samples" / "step_0000003.png").is_file()
    assert (tmp_path / "live" / "plots" / "metrics" / "train" / "loss_d.tsv").is_file()


def test_resumed_dvclive_summary_ends_at_the_last_step(tmp_path, dvclive_installed, capsys):
    """dvclive's resumed Live reads the killed run's summary; its metrics.json must end at the run's last step,
    not at the step where the first run stopped. A finished run resumed with no more epochs says so."""
    import json

    run_train(tmp_path, cfg_for("dcgan", epochs=0.5), live_dir=tmp_path / "live")  # 3 steps
    summary = run_train(tmp_path, cfg_for("dcgan", epochs=1.0), live_dir=tmp_path / "live", resume=True)  # to 6
    assert summary["steps"] == 6
    assert json.loads((tmp_path / "live" / "metrics.json").read_text())["step"] == 6
    assert load_checkpoint(tmp_path / "ck.pt")["extra"]["world_size"] == 1
    capsys.readouterr()
    run_train(tmp_path, cfg_for("dcgan", epochs=0.5), resume=True)
    assert "at step 6 of 3; nothing left to train" in capsys.readouterr().out


def test_resume_on_another_number_of_processes_warns_once(tmp_path, capsys):
    """A step is one global batch (batch_size x processes): resuming a 2-process checkpoint in one process
    changes what its steps mean, which the warning says."""
    run_train(tmp_path, cfg_for("dcgan", epochs=0.5))
    payload = torch.load(tmp_path / "ck.pt", weights_only=True)
    payload["extra"]["world_size"] = 2  # as a torchrun with two processes writes it
    torch.save(payload, tmp_path / "ck.pt")
    capsys.readouterr()
    run_train(tmp_path, cfg_for("dcgan", epochs=1.0), resume=True)
    err = capsys.readouterr().err
    assert err.count("warning:") == 1
    assert "trained at batch 8 x 2 processes, this run uses batch 8 x 1 process: its 3 steps count" in err
    run_train(tmp_path, cfg_for("dcgan", epochs=1.0, batch_size=4), resume=True)  # the batch, same processes
    assert "trained at batch 8 x 1 process, this run uses batch 4 x 1 process: its 6 steps count" in capsys.readouterr().err


def test_discriminator_learns_to_tell_real_from_a_frozen_generator(tmp_path):
    cfg = cfg_for("dcgan", lr_g=0.0, lr_d=2e-3, beta1=0.5, epochs=8.0, ema_decay=0.0, log_every=1)
    ds = tiny_dataset()
    rt = setup_runtime("fp32", False, "cpu")
    torch.manual_seed(0)
    parts = ts.build_parts(cfg, 2, rt, steps_per_epoch=6)
    data = ts.DeviceData(ds, rt.device, 0)
    losses = [float(ts.train_step(parts, data, cfg, rt)["loss_d"]) for _ in range(40)]
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])


def test_checkpoint_round_trip_generates_the_same_images(tmp_path):
    cfg = cfg_for("biggan", epochs=0.5)
    run_train(tmp_path, cfg)
    ck = load_checkpoint(tmp_path / "ck.pt")
    _, _, g1 = models_from(ck)
    _, _, g2 = models_from(load_checkpoint(tmp_path / "ck.pt"))
    z, y = torch.randn(4, 20), torch.tensor([0, 1, 0, 1])
    with torch.no_grad():
        a, b = g1(z, y), g2(z, y)
    assert torch.equal(a, b)
    # and the EMA weights differ from the raw G's (decay 0.9 over 3 steps)
    assert any(not torch.equal(ck["G"][k], ck["G_ema"][k]) for k in ck["G"] if ck["G"][k].is_floating_point())
    # the sampling stages' generator_from builds the same G_ema (or the raw G), ready to sample
    g_raw, _, _ = models_from(ck)
    ema, raw = generator_from(ck), generator_from(ck, ema=False)
    assert not ema.training and not any(p.requires_grad for p in ema.parameters())
    with torch.no_grad():
        assert torch.equal(ema(z, y), a)
        assert torch.equal(raw(z, y), g_raw.eval()(z, y))
        assert not torch.equal(raw(z, y), a)


def test_corrupt_and_foreign_checkpoints_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    with pytest.raises(CheckpointError, match="not a checkpoint of this project"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="no checkpoint here"):
        load_checkpoint(tmp_path / "missing.pt")
    # half a real checkpoint (a killed copy) is rejected too
    run_train(tmp_path, cfg_for("dcgan", epochs=0.2))
    data = (tmp_path / "ck.pt").read_bytes()
    (tmp_path / "half.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "half.pt")


def test_empty_and_damaged_checkpoints_name_what_is_wrong(tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="is empty"):
        load_checkpoint(empty)
    run_train(tmp_path, cfg_for("dcgan", epochs=0.2))
    good = torch.load(tmp_path / "ck.pt", weights_only=True)
    for change, message in (({"model": "stylegan"}, "unknown model 'stylegan'; known models"),
                            ({"G_ema": 3}, "'G_ema' is a int"),
                            ({"extra": None}, "'extra' is a NoneType"),
                            ({"n_classes": True}, "'n_classes' is a bool"),
                            ({"model_options": dict(good["model_options"], z_dim=-3)}, "z_dim: -3 is out of range")):
        torch.save({**good, **change}, tmp_path / "bad.pt")
        with pytest.raises(CheckpointError, match=message):
            generator_from(load_checkpoint(tmp_path / "bad.pt"))
    torch.save({k: v for k, v in good.items() if k != "G"}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="'G' is missing"):
        load_checkpoint(tmp_path / "bad.pt")
    pickled = tmp_path / "pickled.pt"
    torch.save({"format": "x", "fn": Path}, pickled)  # a class: only a full unpickle could load it
    with pytest.raises(CheckpointError, match="pickled Python objects, which are never loaded") as info:
        load_checkpoint(pickled)
    assert "weights_only=False" not in str(info.value)


def test_resume_with_other_params_is_refused(tmp_path):
    run_train(tmp_path, cfg_for("dcgan", epochs=0.2))
    with pytest.raises(CheckpointError, match="holds a 'dcgan' model"):
        run_train(tmp_path, cfg_for("biggan", epochs=0.2), resume=True)
    # the same model with another width, or a classifier head it did not have: named, not a load traceback
    wider = dict(TINY["dcgan"], g_width=TINY["dcgan"]["g_width"] * 2)
    with pytest.raises(CheckpointError, match=r"other model settings \(g_width: \d+ in the checkpoint, \d+ now\)"):
        run_train(tmp_path, cfg_for("dcgan", epochs=0.2, dcgan=wider), resume=True)
    with pytest.raises(CheckpointError, match="aux_classifier: False in the checkpoint, True now"):
        run_train(tmp_path, cfg_for("dcgan", epochs=0.2, aux_class_weight=1.0), resume=True)


def test_train_refuses_crops_of_another_size(tmp_path, capsys):
    ds = tiny_dataset()
    save_dataset(tmp_path / "d32.npz", Dataset(ds.images[:, ::2, ::2].copy(), ds.labels, ds.breeds, ds.sources))
    assert tr.main(["--data", str(tmp_path / "d32.npz"), "--out", str(tmp_path / "ck.pt"), "--device", "cpu",
                    "--no-progress", "--set", "model=dcgan"]) == 2
    assert "holds 32x32 crops, but training (every model generates 64x64 images)" in capsys.readouterr().err


def test_train_refuses_an_unwritable_checkpoint_path_before_training(tmp_path, capsys):
    (tmp_path / "ck.pt").mkdir()
    data = tmp_path / "d.npz"
    save_dataset(data, tiny_dataset())
    assert tr.main(["--data", str(data), "--out", str(tmp_path / "ck.pt"), "--device", "cpu", "--no-progress",
                    "--set", "model=dcgan", "--set", "epochs=100"]) == 2
    err = capsys.readouterr().err
    assert "ck.pt: this is a folder; give a file name" in err and "train dcgan" not in err


def test_due_counts_steps_done_and_always_the_last():
    assert [s for s in range(1, 11) if tb.due(s, 4, 10)] == [4, 8, 10]
    assert [s for s in range(1, 7) if tb.due(s, 1, 6)] == [1, 2, 3, 4, 5, 6]
    assert [s for s in range(1, 4) if tb.due(s, 100, 3)] == [3]


def test_out_of_time_keeps_room_for_two_steps_two_checkpoints_and_a_due_evaluation():
    # 100 s budget, 10 s used: a 20 s step and a 15 s checkpoint need 10 + 40 + 30 = 80 s: go on
    assert not tb.out_of_time(10.0, 20.0, 15.0, 0.0, 100.0)
    # the evaluation that the next step starts (25 s) makes it 105 s: stop
    assert tb.out_of_time(10.0, 20.0, 15.0, 25.0, 100.0)
    assert not tb.out_of_time(20.0, 20.0, 20.0, 0.0, 100.0)  # exactly 100 s: still fits
    assert not tb.out_of_time(1e9, 1.0, 1.0, 1.0, float("inf"))  # no budget


def test_the_last_resort_still_stops_a_plan_too_long_cleanly_with_a_checkpoint(tmp_path, monkeypatch, one_thread):
    """Should a plan be too long after all (here the speed is measured 10,000 times too fast and the run never
    re-plans), the budget's last-resort stop still ends it in time, with a checkpoint."""
    measure = tb.measure_costs
    monkeypatch.setattr(tb, "measure_costs", lambda run: replace(measure(run), share_s=(1e-5,)))
    monkeypatch.setattr(tr, "replan", lambda run, budget_s: None)
    cfg = cfg_for("dcgan", epochs=1000.0, time_budget_min=0.05)  # 3 s of a much longer run
    t0 = time.monotonic()
    summary = run_train(tmp_path, cfg)
    assert time.monotonic() - t0 < 15
    assert summary["stopped_by_time_budget"] and 0 < summary["steps"] < summary["total_steps"] == 6000
    assert not summary["fitted_to_budget"]  # all 6,000 steps "fitted"
    assert load_checkpoint(tmp_path / "ck.pt")["step"] == summary["steps"]


def _cli(tmp_path, *extra):
    return [sys.executable, "-m", "pipeline.train", "--data", str(tmp_path / "d.npz"), "--out", str(tmp_path / "ck.pt"),
            "--no-progress", "--params", str(tmp_path / "params.yaml"), *extra]


def _write_params(tmp_path, **train):
    import yaml

    values = {"model": "dcgan", "batch_size": 8, "log_every": 1, "sample_every": 1000}
    values.update(train)
    if values["model"] in TINY:
        values.setdefault(values["model"], TINY[values["model"]])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"train": values}))


@pytest.mark.slow
def test_resume_after_a_kill_reaches_the_same_step_count(tmp_path):
    save_dataset(tmp_path / "d.npz", tiny_dataset())
    _write_params(tmp_path, epochs=40.0, checkpoint_every=5)  # 240 steps
    proc = subprocess.Popen(_cli(tmp_path), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while time.time() < deadline:
        if (tmp_path / "ck.pt").exists() and load_checkpoint(tmp_path / "ck.pt")["step"] >= 10:
            break
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(tmp_path / "ck.pt")["step"]
    assert 10 <= killed_at < 240
    out = subprocess.run(_cli(tmp_path, "--resume"), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert f"resuming from {tmp_path / 'ck.pt'} at step {killed_at}" in out.stdout
    assert load_checkpoint(tmp_path / "ck.pt")["step"] == 240


def _same_state(a, b) -> bool:
    """Nested state dicts (tensors, numbers, lists, dicts) equal value for value."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(map(_same_state, a, b))
    return a == b


@pytest.mark.parametrize("model", ["dcgan", "biggan"])
def test_resume_restores_every_weight_and_optimizer_state(tmp_path, model):
    """--resume must continue the run that was saved, not a fresh model at the saved step: G, D, G_ema and
    both Adam states come back exactly as the checkpoint holds them (and differ from a fresh start)."""
    cfg = cfg_for(model, epochs=0.5, cosine_restart_epochs=1.0)
    run_train(tmp_path, cfg)
    ck = load_checkpoint(tmp_path / "ck.pt")
    rt = setup_runtime(cfg.precision, cfg.channels_last, "cpu")
    ds = tiny_dataset()
    fresh = ts.build_parts(cfg, len(ds.breeds), rt, steps_per_epoch=len(ds) / cfg.batch_size)
    assert not _same_state(fresh.G.state_dict(), ck["G"])  # else the test could not tell
    data = ts.DeviceData(ds, rt.device, seed=0)
    step, _ = trs.resume_from(tmp_path / "ck.pt", fresh, cfg, [str(b) for b in ds.breeds], data, rt)
    assert step == ck["step"] > 0
    assert _same_state(fresh.G.state_dict(), ck["G"]) and _same_state(fresh.D.state_dict(), ck["D"])
    assert _same_state(fresh.G_ema.state_dict(), ck["G_ema"])
    assert _same_state(fresh.opt_g.state_dict(), ck["opt_g"]) and _same_state(fresh.opt_d.state_dict(), ck["opt_d"])
    assert fresh.opt_g.state_dict()["state"]  # Adam's moments, not an empty state
    # no scheduler state: the cosine restarts are a function of the step, their period kept with the plan
    # (3 steps asked for, cycles of 6 asked for: one cycle over the 3)
    assert ck["extra"]["plan"] == {"steps": 3, "asked": 3, "fitted": False, "lr_period": 3, "lr_cycle": 6}


@pytest.mark.parametrize("model", ["dcgan", "biggan"])
def test_a_resumed_run_ends_exactly_where_the_uninterrupted_one_does(tmp_path, model):
    """3 steps, then --resume to 6, gives the weights of 6 steps in one go, bit for bit: the checkpoint carries
    the random streams (batches, fake labels, latents, DiffAugment) along with the weights, Adam's state and LeCam's
    anchors."""
    options = dict(model=model, augment="color,translation,cutout", cosine_restart_epochs=0.5, lecam_weight=0.3)
    (tmp_path / "one").mkdir(), (tmp_path / "two").mkdir()
    run_train(tmp_path / "one", cfg_for(epochs=1.0, **options))  # 6 steps
    run_train(tmp_path / "two", cfg_for(epochs=0.5, **options))  # 3 steps ...
    torch.manual_seed(12345)  # ... whatever the process did in between
    run_train(tmp_path / "two", cfg_for(epochs=1.0, **options), resume=True)  # ... and 3 more
    one, two = load_checkpoint(tmp_path / "one" / "ck.pt"), load_checkpoint(tmp_path / "two" / "ck.pt")
    assert one["step"] == two["step"] == 6
    for key in ("G", "D", "G_ema", "opt_g", "opt_d"):
        assert _same_state(one[key], two[key]), key
    # LeCam's anchors come back too: six updates' worth, the same numbers
    assert one["extra"]["lecam"]["updates"] == 6 and one["extra"]["lecam"] == two["extra"]["lecam"]


def test_several_processes_resume_on_new_streams_per_rank_and_step(tmp_path):
    """Under DDP the checkpoint holds rank 0's generators only: restoring them on every rank would give all
    ranks the same batches, so each rank gets a stream of its own, new at each resumed step."""
    from types import SimpleNamespace

    run_train(tmp_path, cfg_for("dcgan", epochs=0.5))
    ck, cfg = load_checkpoint(tmp_path / "ck.pt"), cfg_for("dcgan")
    draws = {}
    for rank, step in ((0, 3), (1, 3), (0, 4)):
        data = ts.DeviceData(tiny_dataset(), torch.device("cpu"), seed=0)
        trs.restore_rng(ck, data, cfg, SimpleNamespace(world_size=2, rank=rank), step)
        draws[rank, step] = (data.random_labels(32).tolist(), torch.rand(4).tolist())
    fresh = ts.DeviceData(tiny_dataset(), torch.device("cpu"), seed=0).random_labels(32).tolist()
    assert len({str(v) for v in draws.values()}) == 3 and all(v[0] != fresh for v in draws.values())


def test_cli_reports_bad_params(tmp_path):
    save_dataset(tmp_path / "d.npz", tiny_dataset())
    _write_params(tmp_path, model="stylegan")
    out = subprocess.run(_cli(tmp_path), cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "train.model: 'stylegan' is not a known model; choose one of biggan, dcgan, progan" in out.stderr


def _torchrun(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Run ``cmd`` (a torchrun command) with one CPU thread per process; on a timeout, kill its workers too
    (a hung collective would otherwise leave them running after the test)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()  # torchrun's agent stops its workers on SIGTERM (they run in sessions of their own)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        pytest.fail(f"torchrun did not finish in {timeout} s:\n{out[-2000:]}\n{err[-2000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["dcgan", "progan", "biggan"])
def test_two_process_ddp_on_cpu(tmp_path, model):
    """torchrun with two CPU processes (gloo): the same command trains and writes one checkpoint.

    progan also checks that layers without gradients at the early resolutions do not stall DDP; biggan
    that G's cached spectral norms survive DDP's broadcast of the u, v buffers in the G step.
    """
    save_dataset(tmp_path / "d.npz", tiny_dataset())
    _write_params(tmp_path, epochs=1.0, model=model)  # 48 images / (8 x 2 processes) = 3 steps
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "pipeline.train", *_cli(tmp_path)[3:], "--device", "cpu"]
    out = _torchrun(cmd, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    ck = load_checkpoint(tmp_path / "ck.pt")
    assert ck["step"] == ck["total_steps"] == 3
    assert out.stdout.count("train: 3/3 steps") == 1  # only rank 0 reports


@pytest.mark.slow
def test_two_process_ddp_takes_rank_0s_plan_for_the_time_budget(tmp_path):
    """Only rank 0 evaluates and writes checkpoints, so only rank 0 counts their time against the budget: if
    each rank planned alone, rank 0 would stop first and rank 1 would wait in its next gradient all-reduce."""
    import yaml

    save_dataset(tmp_path / "d.npz", tiny_dataset())
    _write_params(tmp_path, epochs=10_000.0, time_budget_min=0.15, eval_every=3, eval_images=600)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    # an evaluation of a few tenths of a second on rank 0, every third step, against the training crops
    params["score"] = {"network": "standin", "reference": "crops"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29518",
           "-m", "pipeline.train", *_cli(tmp_path)[3:], "--device", "cpu", "--best", str(tmp_path / "best.pt"),
           "--cache", str(tmp_path / "cache")]
    out = _torchrun(cmd, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    # the plan made before training knew nothing of the evaluations' second each: rank 0 re-planned after the
    # first, and both ranks took its plan (else one would wait in a collective for the other)
    assert out.stderr.count("time budget: re-planned to") >= 1
    assert "fitted to the time budget" in out.stdout and "(stopped by the time budget)" not in out.stdout
    ck = load_checkpoint(tmp_path / "ck.pt")
    assert 0 < ck["step"] == ck["total_steps"] < 10_000 * 48 // 16


def test_torchrun_with_more_processes_than_gpus_is_a_clear_error(monkeypatch):
    from pipeline.runtime import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert pick_device("auto", 0) == torch.device("cuda", 0)
    assert pick_device("cuda", 0) == torch.device("cuda", 0)  # an index, which torch.cuda.set_device needs
    with pytest.raises(RuntimeError, match="nproc_per_node 1.*--device cpu"):
        pick_device("auto", 1)


def test_train_step_returns_device_tensors_read_once_by_as_floats():
    cfg = cfg_for("dcgan")
    rt = setup_runtime("fp32", False, "cpu")
    parts = ts.build_parts(cfg, 2, rt, steps_per_epoch=6)
    out = ts.train_step(parts, ts.DeviceData(tiny_dataset(), rt.device, 0), cfg, rt)
    assert set(out) == {"loss_d", "loss_g", "d_real", "d_fake"}
    assert all(isinstance(v, torch.Tensor) and v.ndim == 0 and not v.requires_grad for v in out.values())
    floats = ts.as_floats(out)
    assert floats == {k: float(v) for k, v in out.items()} and all(isinstance(v, float) for v in floats.values())
    assert ts.as_floats({}) == {}


@pytest.mark.parametrize("model, loss_name, batches", [
    ("dcgan", "bce", [8, 8, 8]), ("dcgan", "hinge", [8, 8, 8]), ("dcgan", "rals", [8, 8, 8, 8]),
    ("biggan", "bce", [16, 8]), ("biggan", "rals", [16, 8, 8]), ("progan", "bce", [16, 8])])
def test_d_passes_of_a_step(model, loss_name, batches):
    """The D step: a D with batch norm (dcgan) sees the reals and the fakes as two batches, as the G step shows
    it fakes alone (one joint batch made DCGAN learn nothing); the others one joint pass. The G step: fakes,
    plus reals for relativistic losses (biggan + rals: D's spectral norms computed once for both passes)."""
    cfg = cfg_for(model, loss=loss_name)
    rt = setup_runtime("fp32", False, "cpu")
    parts = ts.build_parts(cfg, 2, rt, steps_per_epoch=6)
    assert parts.d_batch_dependent == (model == "dcgan")
    calls = []
    parts.D.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    out = ts.train_step(parts, ts.DeviceData(tiny_dataset(), rt.device, 0), cfg, rt)
    assert calls == batches
    assert all(torch.isfinite(v) for v in out.values())


def test_batch_norm_d_step_sees_real_and_fake_apart():
    """What the DCGAN D learns on fakes in its step is what the G step asks of it: the D step's fake logits are
    those that D gives the fakes as a batch of their own, not those of a joint batch with the reals."""
    import copy

    cfg = cfg_for("dcgan")
    rt = setup_runtime("fp32", False, "cpu")
    torch.manual_seed(0)
    parts = ts.build_parts(cfg, 2, rt, steps_per_epoch=6)
    D_before = copy.deepcopy(parts.D)
    seen = []
    parts.D.register_forward_hook(lambda module, args, out: seen.append((args[0].detach().clone(), args[1].clone(),
                                                                         out[0].detach().clone())))
    ts.train_step(parts, ts.DeviceData(tiny_dataset(), rt.device, 0), cfg, rt)
    (real, y_real, _), (fake, y_fake, fake_logits) = seen[0], seen[1]
    with torch.no_grad():
        alone, _ = D_before(fake, y_fake)
        joint, _ = D_before(torch.cat([real, fake]), torch.cat([y_real, y_fake]))
    torch.testing.assert_close(fake_logits, alone)
    assert (joint[len(real):] - alone).abs().max() > 1e-3  # a joint batch would have given D other logits


def test_d_steps_sets_the_discriminator_updates_per_generator_update():
    cfg = cfg_for("dcgan", d_steps=3)
    rt = setup_runtime("fp32", False, "cpu")
    parts = ts.build_parts(cfg, 2, rt, steps_per_epoch=6)
    passes, d_updates, g_updates = [], [], []
    parts.D.register_forward_hook(lambda module, args, out: passes.append(args[0].shape[0]))
    parts.opt_d.register_step_post_hook(lambda *a: d_updates.append(1))
    parts.opt_g.register_step_post_hook(lambda *a: g_updates.append(1))
    ts.train_step(parts, ts.DeviceData(tiny_dataset(), rt.device, 0), cfg, rt)
    # three D steps, each a pass over 8 real and one over 8 fake images (DCGAN's D has batch norm: apart); then one
    # G step, D judging 8 fakes
    assert passes == [8, 8] * 3 + [8] and len(d_updates) == 3 and len(g_updates) == 1


def test_diffaugment_sees_every_image_d_judges(monkeypatch):
    cfg = cfg_for("dcgan", augment="color,translation")
    rt = setup_runtime("fp32", False, "cpu")
    parts = ts.build_parts(cfg, 2, rt, steps_per_epoch=6)
    seen = []
    monkeypatch.setattr(ts, "diff_augment", lambda x, policy: seen.append((x.shape[0], policy)) or x)
    ts.train_step(parts, ts.DeviceData(tiny_dataset(), rt.device, 0), cfg, rt)
    # D step (real, then fake: DCGAN's D has batch norm), G step (fake)
    assert seen == [(8, "color,translation")] * 3
    seen.clear()
    ts.train_step(parts, ts.DeviceData(tiny_dataset(), rt.device, 0), cfg_for("dcgan"), rt)
    assert seen == []  # no policy: no call


def test_the_auxiliary_class_loss_enters_both_losses_with_its_weight(monkeypatch):
    """With the class loss replaced by a constant c (no gradient: D's update is the same), each loss grows by
    exactly aux_class_weight x c."""
    cfg = cfg_for("dcgan", aux_class_weight=0.5)
    rt = setup_runtime("fp32", False, "cpu")
    losses = {}
    for c in (0.0, 2.0):
        torch.manual_seed(0)
        parts = ts.build_parts(cfg, 2, rt, steps_per_epoch=6)
        assert parts.aux
        monkeypatch.setattr(ts, "class_loss", lambda logits, y, c=c: torch.tensor(c))
        torch.manual_seed(1)
        losses[c] = ts.train_step(parts, ts.DeviceData(tiny_dataset(), rt.device, 0), cfg, rt)
    assert float(losses[2.0]["loss_d"] - losses[0.0]["loss_d"]) == pytest.approx(1.0, abs=1e-5)
    assert float(losses[2.0]["loss_g"] - losses[0.0]["loss_g"]) == pytest.approx(1.0, abs=1e-5)


def test_cosine_warm_restarts_follow_the_schedule():
    # period = cosine_restart_epochs x steps per epoch = 4 steps; lr = base x (1 + cos(pi t / 4)) / 2
    cfg = cfg_for("dcgan", cosine_restart_epochs=1.0, lr_g=0.002, lr_d=0.001)
    rt = setup_runtime("fp32", False, "cpu")
    parts = ts.build_parts(cfg, 2, rt, steps_per_epoch=4)
    assert parts.lr_period == 4
    seen = []
    for step in range(5):
        ts.set_lr(parts, cfg, step)  # what train_step does first
        seen.append((parts.opt_g.param_groups[0]["lr"], parts.opt_d.param_groups[0]["lr"]))
    expected = [0.002, 0.002 * (1 + math.cos(math.pi / 4)) / 2, 0.001, 0.002 * (1 + math.cos(3 * math.pi / 4)) / 2,
                0.002]  # back to the base rate after one period
    assert [g for g, _ in seen] == pytest.approx(expected)
    assert [d for _, d in seen] == pytest.approx([x / 2 for x in expected])
    ts.train_step(parts, ts.DeviceData(tiny_dataset(), rt.device, 0), cfg, rt, step=2)
    assert parts.opt_g.param_groups[0]["lr"] == pytest.approx(0.001)  # the step's own rate, set by the step


def test_real_noise_is_uniform_within_its_amplitude():
    rt = setup_runtime("fp32", False, "cpu")
    data = ts.DeviceData(tiny_dataset(), rt.device, 0)
    clean, _ = ts.real_batch(ts.DeviceData(tiny_dataset(), rt.device, 0), cfg_for("dcgan", hflip=False), rt)
    noisy, _ = ts.real_batch(data, cfg_for("dcgan", hflip=False, real_noise=0.1), rt)
    diff = noisy - clean
    assert float(diff.abs().max()) <= 0.1 + 1e-6 and float(diff.abs().max()) > 0.09
    assert abs(float(diff.mean())) < 0.01  # centred


@pytest.mark.parametrize("model", ["dcgan", "progan", "biggan"])
def test_unconditional_training_takes_no_labels(model):
    cfg = cfg_for(model, conditional=False)
    rt = setup_runtime("fp32", False, "cpu")
    parts = ts.build_parts(cfg, 2, rt, steps_per_epoch=6)
    assert parts.n_classes == 0
    labels = []
    parts.G.register_forward_pre_hook(lambda module, args: labels.append(args[1]))
    out = ts.train_step(parts, ts.DeviceData(tiny_dataset(), rt.device, 0), cfg, rt)
    assert labels == [None, None] and all(torch.isfinite(v) for v in out.values())


def test_train_step_computes_g_spectral_norms_once_and_uses_fused_adam(monkeypatch):
    from pipeline.models import layers
    cfg = cfg_for("biggan")
    rt = setup_runtime("fp32", False, "cpu")
    parts = ts.build_parts(cfg, 2, rt, steps_per_epoch=6)
    assert parts.opt_g.defaults["fused"] and parts.opt_d.defaults["fused"]
    g_norms = {id(m) for m in parts.G.modules() if isinstance(m, layers.SpectralNorm)}
    d_norms = {id(m) for m in parts.D.modules() if isinstance(m, layers.SpectralNorm)}
    calls, single = [], []
    batched, one = layers._power_iteration_all, layers.SpectralNorm._power_iteration
    monkeypatch.setattr(layers, "_power_iteration_all",
                        lambda pairs: calls.extend(id(sn) for sn, _ in pairs) or batched(pairs))
    monkeypatch.setattr(layers.SpectralNorm, "_power_iteration", lambda self, m: single.append(self) or one(self, m))
    out = ts.train_step(parts, ts.DeviceData(tiny_dataset(), rt.device, 0), cfg, rt)
    # one power iteration per network and step, all of a network's layers at once: G's for its no-grad pass
    # in the D step and its G-step pass; D's in the D step (in the G step D is frozen: its u, v as they are)
    assert sorted(calls) == sorted(g_norms | d_norms) and not single
    assert all(torch.isfinite(v) for v in out.values())
    # the G step's backward went through the cached weights to every raw weight of G
    raw = [p for k, p in parts.G.named_parameters() if k.endswith(".original")]
    assert len(raw) == len(g_norms) and all(p.grad is not None for p in raw)


def test_compiled_training_step_runs_with_cuda_graph_mode():
    """torch.compile with mode reduce-overhead (CUDA graphs on a GPU; compiled without them on a CPU):
    the step reads each pass's outputs before the next pass, as CUDA graph trees require. About 40 s."""
    cfg = cfg_for("dcgan", compile=True, compile_mode="reduce-overhead")
    rt = setup_runtime("fp32", False, "cpu")
    parts = ts.build_parts(cfg, 2, rt, steps_per_epoch=6)
    assert parts.G is not unwrap(parts.G)  # the compiled wrapper
    data = ts.DeviceData(tiny_dataset(), rt.device, 0)
    before = [p.detach().clone() for p in unwrap(parts.G).parameters()]
    steps = [ts.as_floats(ts.train_step(parts, data, cfg, rt)) for _ in range(2)]
    assert all(math.isfinite(v) for s in steps for v in s.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, unwrap(parts.G).parameters()))


def test_fp16_loss_scaling_skips_overflowing_steps_with_fused_adam():
    """The fp16 path that ``precision: auto`` takes on Kaggle's P100 and T4 (autocast fp16, GradScaler, fused
    Adam), run on the CPU: a step whose scaled gradients overflow changes no weight and halves the scale."""
    from pipeline.runtime import Runtime
    cfg = cfg_for("dcgan")
    rt = Runtime(torch.device("cpu"), torch.float16, False)
    parts = ts.build_parts(cfg, 2, rt, steps_per_epoch=6)
    assert parts.scaler_d.is_enabled() and parts.opt_d.defaults["fused"]
    data = ts.DeviceData(tiny_dataset(), rt.device, 0)
    parts.scaler_d = torch.amp.GradScaler("cpu", init_scale=2.0**70)  # fp16 gradients overflow at this scale
    before = [p.detach().clone() for p in parts.D.parameters()]
    ts.train_step(parts, data, cfg, rt)
    assert all(torch.equal(a, b) for a, b in zip(before, parts.D.parameters()))  # the step was skipped
    assert parts.scaler_d.get_scale() == 2.0**69
    parts.scaler_d = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    out = ts.as_floats(ts.train_step(parts, data, cfg, rt))
    assert any(not torch.equal(a, b) for a, b in zip(before, parts.D.parameters()))
    assert all(math.isfinite(v) for v in out.values())


def test_compile_room_fits_every_progan_specialisation():
    """ProGAN's compiled forwards need 5 stages x 2 grad modes = 10 variants (15 with RaLS), over torch's default
    limit of 8."""
    from pipeline.models import build_model

    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    G, D = build_model("progan", build_config("train", {"model": "progan"}).model_options, 4)
    dcgan = build_model("dcgan", build_config("train", {"model": "dcgan"}).model_options, 0)
    with config.patch(name, 8):  # torch's default; the limit in force before is restored afterwards
        assert ts.compile_room(G, D) == 12 == getattr(config, name)
    with config.patch(name, 8):  # RaLS: D also judges the reals under no_grad in G's step
        assert ts.compile_room(G, D, variants=3) == 17
    with config.patch(name, 64):
        assert ts.compile_room(G, D) == 64  # a higher limit set by the user stays
    with config.patch(name, 8):
        assert ts.compile_room(*dcgan) == 8  # 2 variants + room: the default is enough


def test_compiled_progan_training_keeps_every_stage_compiled(monkeypatch):
    """The whole schedule of a compiled ProGAN trained with RaLS (the most variants: D also judges reals under
    no_grad in G's step): every forward variant of every stage gets compiled, none falls back to eager at the
    recompile limit, and no graph breaks. torch.compile's dynamo front end only (backend "eager"): what decides
    the graphs and guards, without inductor's minutes of code generation."""
    from torch._dynamo.utils import counters

    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda module, mode=None: compile_(module, backend="eager"))
    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    torch._dynamo.reset()
    counters.clear()
    cfg = cfg_for("progan", loss="rals", compile=True, batch_size=4)
    rt = setup_runtime(cfg.precision, cfg.channels_last, "cpu")
    ds = tiny_dataset(16)
    with config.patch(name, getattr(config, name)):  # build_parts raises it; restored after
        parts = ts.build_parts(cfg, len(ds.breeds), rt, steps_per_epoch=4)
        data = ts.DeviceData(ds, rt.device, 0)
        for i in range(20):  # 4 steps per stage: fading in, then stable
            ts.set_progress(parts, i / 20)
            ts.train_step(parts, data, cfg, rt)
    assert counters["stats"]["unique_graphs"] == 5 * (2 + 3)  # per stage: G with and without grad, D three ways
    assert not counters["graph_break"]
    torch._dynamo.reset()


# --------------------------------------------------------------------------- the plan and the time budget


def _lrs(monkeypatch) -> list[tuple[int, float]]:
    """(step, G's learning rate) of every training step the run takes, recorded as train_step sets it (the steps
    that measure the speed before the run come first, all at the run's first step)."""
    seen, step_ = [], ts.train_step

    def recorded(p, data, cfg, rt, step=0):
        out = step_(p, data, cfg, rt, step)
        seen.append((step, p.opt_g.param_groups[0]["lr"]))
        return out

    monkeypatch.setattr(tr, "train_step", recorded)
    return seen


def test_a_budgeted_progan_run_is_planned_to_end_grown(tmp_path, one_thread, capsys):
    """ProGAN with 6 s for 10,000 epochs: the run measures its speed and lays its growth over the steps that fit,
    so it ends at 64x64 with alpha 1, in time, without the budget's last-resort stop."""
    # 6 s: measuring ProGAN's speed alone takes 40 steps (2 shares per stage, 4 steps each), near 3 s here
    cfg = cfg_for("progan", epochs=10_000.0, time_budget_min=0.1)
    t0 = time.monotonic()
    summary = run_train(tmp_path, cfg)
    assert summary["seconds"] <= 6.0 and time.monotonic() - t0 < 7.0  # train()'s own clock, and the test's
    assert not summary["stopped_by_time_budget"] and summary["fitted_to_budget"]
    assert 5 <= summary["steps"] == summary["total_steps"] < 60_000
    assert summary["epochs_done"] == summary["planned_epochs"] == round(summary["steps"] * 8 / 48, 3)
    assert summary["epochs_asked"] == 10_000.0
    ck = load_checkpoint(tmp_path / "ck.pt")
    for net in ("G", "D", "G_ema"):
        assert int(ck[net]["stage"]) == 4 and float(ck[net]["alpha"]) == 1.0, net
    assert ck["extra"]["plan"] == {"steps": summary["steps"], "asked": 60_000, "fitted": True, "lr_period": 0,
                                   "lr_cycle": 0}
    out = capsys.readouterr().out
    # the plan made before training; one re-made on the way (the machine slower than measured) is shorter
    planned = re.search(r"planned (\d+) steps \([\d.]+ epochs\) of the 60,000 that train.epochs 10000 asks for", out)
    assert planned and summary["steps"] <= int(planned[1])


def test_epochs_auto_trains_what_fits_the_budget(tmp_path, one_thread, monkeypatch, dvclive_installed):
    import json

    lrs = _lrs(monkeypatch)
    cfg = cfg_for("dcgan", epochs="auto", time_budget_min=0.03)
    summary = run_train(tmp_path, cfg, live_dir=tmp_path / "live")
    assert summary["epochs_asked"] == "auto" and summary["fitted_to_budget"]
    assert 1 <= summary["steps"] == summary["total_steps"] and not summary["stopped_by_time_budget"]
    assert [s for s, _ in lrs[-summary["steps"]:]] == list(range(summary["steps"]))  # the run's steps, after the probe
    assert load_checkpoint(tmp_path / "ck.pt")["extra"]["plan"]["asked"] is None
    metrics = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert metrics["planned_epochs"] == metrics["epochs_done"] == summary["planned_epochs"]
    assert metrics["fitted_to_budget"] is True


def test_epochs_auto_needs_a_budget(tmp_path, capsys):
    from pipeline.config import ConfigError

    with pytest.raises(ConfigError, match="train.epochs: auto .* train.time_budget_min, which is 0"):
        run_train(tmp_path, cfg_for("dcgan", epochs="auto"))
    save_dataset(tmp_path / "d.npz", tiny_dataset())
    assert tr.main(["--data", str(tmp_path / "d.npz"), "--out", str(tmp_path / "ck.pt"), "--device", "cpu",
                    "--no-progress", "--set", "model=dcgan", "--set", "epochs=auto"]) == 2
    assert "error: train.epochs: auto trains as many epochs as fit train.time_budget_min" in capsys.readouterr().err
    assert not (tmp_path / "ck.pt").exists()


def test_a_budgeted_cosine_run_ends_its_last_cycle(tmp_path, one_thread, monkeypatch):
    """Cycles of 2 epochs (12 steps) asked for, 10,000 epochs that cannot fit: the plan is a whole number of
    cycles, each stretched a little, and the last step has the last cycle's lowest rate."""
    lrs = _lrs(monkeypatch)
    cfg = cfg_for("dcgan", epochs=10_000.0, time_budget_min=0.05, cosine_restart_epochs=2.0, lr_g=0.002)
    summary = run_train(tmp_path, cfg)
    plan = load_checkpoint(tmp_path / "ck.pt")["extra"]["plan"]
    steps, period = summary["steps"], plan["lr_period"]
    assert steps == summary["total_steps"] == plan["steps"] and not summary["stopped_by_time_budget"]
    assert period >= min(12, steps) and steps % period == 0 and plan["lr_cycle"] == 12
    if steps >= 24:  # two cycles or more: each stretched by less than a cycle's share of the steps left over
        assert period < 12 + 12 / (steps // period)
    run = lrs[-steps:]
    assert [s for s, _ in run] == list(range(steps))
    assert run[-period][1] == 0.002  # the last cycle starts at the base rate ...
    assert run[-1][1] == pytest.approx(0.002 * (1 + math.cos(math.pi * (period - 1) / period)) / 2)
    assert run[-1][1] < 0.002 * 0.02 or period < 12  # ... and ends near 0 (a cycle of 12 or more: under 2%)


def test_a_budget_too_small_is_an_error_before_any_checkpoint(tmp_path, capsys, monkeypatch, one_thread):
    save_dataset(tmp_path / "d.npz", tiny_dataset())
    args = ["--data", str(tmp_path / "d.npz"), "--out", str(tmp_path / "ck.pt"), "--device", "cpu", "--no-progress",
            "--set", "model=dcgan", "--set", "dcgan={z_dim: 16, g_width: 8, d_width: 8}", "--set", "batch_size=8"]
    assert tr.main([*args, "--set", "time_budget_min=0.0001"]) == 2  # 6 ms: setting up takes longer
    err = capsys.readouterr().err
    assert err.startswith("error: the time budget of 0.0001 min (0.006 s, train.time_budget_min) is too small for "
                          "a single step:")
    assert "a step takes" in err and not (tmp_path / "ck.pt").exists()
    # ProGAN needs a step per stage, 5: at 1 s a step (as if measured) 3 s hold fewer
    measure = tb.measure_costs
    monkeypatch.setattr(tb, "measure_costs", lambda run: replace(measure(run), share_s=(1.0,) * 5))
    with pytest.raises(tb.TimeBudgetError, match=r"too small for 5 steps, one per stage that progan grows through: "
                                                 r".* a step takes 1 s as measured"):
        run_train(tmp_path, cfg_for("progan", epochs=100.0, time_budget_min=0.05))
    assert not (tmp_path / "ck.pt").exists()


def test_a_resumed_budgeted_run_continues_its_plan(tmp_path, one_thread, monkeypatch, capsys):
    """Killed after its first checkpoint, a run fitted to its budget resumes with the plan it had (kept in the
    checkpoint), not with the 60,000 steps its epochs ask for, and ends it grown."""
    checkpoint = trun.Run.checkpoint

    def killed(run):
        checkpoint(run)
        if run.step < run.steps:
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(trun.Run, "checkpoint", killed)
    cfg = cfg_for("progan", epochs=10_000.0, time_budget_min=0.1, checkpoint_every=3)
    with pytest.raises(KeyboardInterrupt):
        run_train(tmp_path, cfg)
    ck = load_checkpoint(tmp_path / "ck.pt")
    planned = ck["total_steps"]
    assert ck["step"] == 3 and ck["extra"]["plan"]["fitted"] and 5 <= planned < 60_000
    monkeypatch.setattr(trun.Run, "checkpoint", checkpoint)
    capsys.readouterr()
    summary = run_train(tmp_path, replace(cfg, time_budget_min=0.3), resume=True)  # more time: the same plan
    assert f"resuming from {tmp_path / 'ck.pt'} at step 3 of {planned}" in capsys.readouterr().out
    assert summary["steps"] == summary["total_steps"] == planned and summary["fitted_to_budget"]
    ck = load_checkpoint(tmp_path / "ck.pt")
    assert int(ck["G"]["stage"]) == 4 and float(ck["G"]["alpha"]) == 1.0


def test_a_run_slower_than_measured_shrinks_its_plan_and_never_goes_back(tmp_path, one_thread, monkeypatch, capsys):
    """Steps that take twice what was measured (a slower machine from the first step on): the run re-plans, only
    ever to fewer steps, so ProGAN's progress only moves on, and it still ends grown and in time."""
    plan_to_budget, step_ = tb.plan_to_budget, ts.train_step
    planned, fractions = [], []

    def measured(run, budget_s):
        plan_to_budget(run, budget_s)
        planned.append(run.steps)

    def slower(p, data, cfg, rt, step=0):
        t0 = time.monotonic()
        out = step_(p, data, cfg, rt, step)
        if planned:  # the run's steps, not those that measure the speed
            fractions.append(float(unwrap(p.G).stage) + float(unwrap(p.G).alpha))
            time.sleep(time.monotonic() - t0)
        return out

    monkeypatch.setattr(tr, "plan_to_budget", measured)
    monkeypatch.setattr(tr, "train_step", slower)
    summary = run_train(tmp_path, cfg_for("progan", epochs=10_000.0, time_budget_min=0.1))
    assert "time budget: re-planned to" in capsys.readouterr().err
    assert not summary["stopped_by_time_budget"] and summary["steps"] == summary["total_steps"] < planned[0]
    assert fractions == sorted(fractions)  # stage + alpha never went down
    ck = load_checkpoint(tmp_path / "ck.pt")
    assert int(ck["G"]["stage"]) == 4 and float(ck["G"]["alpha"]) == 1.0


def test_measuring_the_speed_leaves_no_trace(tmp_path, one_thread):
    """The steps that measure the speed are undone: a budgeted run whose epochs fit trains exactly what the run
    without a budget trains, bit for bit (the Kaggle kernel, always budgeted, gives the submission `dvc repro`
    gives)."""
    for name, budget in (("free", 0.0), ("budgeted", 5.0)):
        (tmp_path / name).mkdir()
        summary = run_train(tmp_path / name, cfg_for("biggan", epochs=0.5, time_budget_min=budget,
                                                      cosine_restart_epochs=0.25, augment="translation"))
        assert summary["steps"] == 3 and not summary["fitted_to_budget"]
    free, budgeted = load_checkpoint(tmp_path / "free" / "ck.pt"), load_checkpoint(tmp_path / "budgeted" / "ck.pt")
    for key in ("G", "D", "G_ema", "opt_g", "opt_d", "rng_cpu"):
        assert _same_state(free[key], budgeted[key]), key
    assert _same_state(free["extra"]["rng"], budgeted["extra"]["rng"])


def test_cosine_plan_tiles_the_plan_with_whole_cycles():
    from pipeline.plan import cosine_plan

    assert cosine_plan(12, 4) == (12, 4)  # 3 cycles fit exactly
    assert cosine_plan(14, 4) == (12, 4)  # 3 cycles of 14 // 3 = 4: 2 steps left over
    assert cosine_plan(11, 4) == (10, 5)  # 2 cycles, stretched to 11 // 2 = 5 steps
    assert cosine_plan(100, 30) == (99, 33)  # 3 cycles of 33
    assert cosine_plan(89_375, 6875) == (89_375, 6875)  # 130 epochs at batch 32, restarts every 10 epochs: 13 cycles
    assert cosine_plan(5, 8) == (5, 5)  # not even one cycle fits: one over the whole plan
    assert cosine_plan(7, 0) == (7, 0)  # no restarts
    assert cosine_plan(5, 2, at_least=5) == (5, 5)  # 2 cycles of 2 would leave 4 of the 5 steps needed
    for planned in range(1, 60):
        for cycle in range(1, 20):
            steps, period = cosine_plan(planned, cycle)
            assert steps % period == 0 and planned - period < steps <= planned
            assert period >= min(cycle, planned)


def test_cosine_factor_is_torchs_warm_restarts_from_the_step():
    from pipeline.plan import cosine_factor

    # period 4: 1, (1 + cos(pi / 4)) / 2, 1 / 2, (1 + cos(3 pi / 4)) / 2, then 1 again
    assert [cosine_factor(s, 4) for s in range(6)] == pytest.approx([1, 0.8535534, 0.5, 0.1464466, 1, 0.8535534],
                                                                     abs=1e-7)
    assert cosine_factor(9, 10) == pytest.approx(0.0244717, abs=1e-7)  # a cycle's last step: (1 + cos(0.9 pi)) / 2
    assert cosine_factor(123, 0) == 1.0  # no restarts
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.5)
    sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=7)
    for step in range(30):
        assert opt.param_groups[0]["lr"] == pytest.approx(0.5 * cosine_factor(step, 7), abs=1e-12)
        opt.step()
        sched.step()


def test_plan_costs_count_steps_by_stage_and_the_periodic_work():
    from pipeline.plan import Costs, events, fit_steps, fits, run_seconds, share_at, steps_seconds

    assert [share_at(t, 7, 3) for t in range(7)] == [0, 0, 0, 1, 1, 2, 2]  # t / 7 reaches 1/3 at 3, 2/3 at 5
    assert steps_seconds(0, 7, (1, 2, 3)) == 3 * 1 + 2 * 2 + 2 * 3
    assert steps_seconds(0, 10, (1, 2, 3, 4, 5)) == 30  # 2 steps per share
    assert steps_seconds(7, 10, (1, 2, 3, 4, 5)) == 4 + 5 + 5  # step 7 in share 3, steps 8 and 9 in share 4
    assert events(0, 10, 4, at_end=True) == 3  # after steps 4, 8 and the last, 10
    assert events(4, 8, 4, at_end=True) == 1 and events(0, 10, 0, at_end=True) == 0
    # 10 steps of 1 s; grids every 4 (3 of them, 0.5 s each), checkpoints every 5 (step 5 and after the end, 0.25 s
    # each), evaluations every 6 (step 6 and the last, 2 s each), the GIF of 2 frames (as grids)
    costs = Costs((1.0,), grid_s=0.5, checkpoint_s=0.25, eval_s=2.0, sample_every=4, checkpoint_every=5, eval_every=6,
                  gif_frames=2)
    assert run_seconds(0, 10, costs) == 10 + 1.5 + 4 + 0.5 + 1.0
    # grids after steps 8 and 10, the last evaluation, the final checkpoint, the GIF
    assert run_seconds(6, 10, costs) == 4 + 1.0 + 2 + 0.25 + 1.0
    # fits: the work counted 5% longer, plus room for two more steps and checkpoints (2.5 s)
    assert fits(17 * 1.05 + 2.5, 0, 10, costs) and not fits(17 * 1.05 + 2.49, 0, 10, costs)
    plain = Costs((1.0,))
    assert fit_steps(1.05 * 20 + 2, 0, None, plain) == 20  # 20 steps of 1 s, counted 21 s, and 2 s of room
    assert fit_steps(1.05 * 20 + 2, 0, 12, plain) == 12  # no more than the limit
    assert fit_steps(1.05 * 20 + 2, 5, None, plain) == 25  # 20 more after 5 done
    assert fit_steps(3.0, 5, None, plain) == 5  # not one more
    assert fit_steps(1.05 * 20 + 2, 0, None, replace(plain, scale=2.0)) == 9  # twice as slow: 2.1 x 9 + 4 <= 23


def test_a_budget_never_asks_for_more_steps_than_the_epochs_do(tmp_path, one_thread):
    """ProGAN asked for 3 steps (fewer than its 5 stages, as without a budget) with plenty of time: they fit."""
    summary = run_train(tmp_path, cfg_for("progan", epochs=0.5, time_budget_min=1.0))
    assert summary["steps"] == summary["total_steps"] == 3 and not summary["fitted_to_budget"]


def test_the_speed_is_measured_in_every_progan_stage():
    """Two probe shares per growth stage: the middle of some share falls in each of ProGAN's stages, which grow
    over the first half of training (one share per stage timed its 32x32 steps at 16x16 and shrank the plan)."""
    from pipeline.models.progan import RESOLUTIONS, schedule

    assert tb.probe_shares(1) == 1
    n = tb.probe_shares(len(RESOLUTIONS))
    assert n == 10
    assert {schedule((i + 0.5) / n, len(RESOLUTIONS))[0] for i in range(n)} == set(range(len(RESOLUTIONS)))
    assert len({schedule((i + 0.5) / len(RESOLUTIONS), len(RESOLUTIONS))[0] for i in range(len(RESOLUTIONS))}) < 5
