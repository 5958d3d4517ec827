"""The training-progress GIF: frames evenly subsampled (first and last kept), rebuilt after --resume."""

import numpy as np
import pytest
from PIL import Image

from pipeline.training import monitor as tm
from pipeline.images import even_subsample, gif_bytes, save_png
from tests.test_train import cfg_for, run_train


def test_even_subsample():
    assert even_subsample(10, 4) == [0, 3, 6, 9]
    assert even_subsample(3, 40) == [0, 1, 2]
    picked = even_subsample(1000, 40)
    assert len(picked) == 40 and picked[0] == 0 and picked[-1] == 999
    assert np.ptp(np.diff(picked)) <= 1  # evenly spread
    with pytest.raises(ValueError):
        even_subsample(10, 1)


def grid_png(path, value: int, size=(40, 30)):
    save_png(path, np.full((size[1], size[0], 3), value, np.uint8))


def test_progress_gif_caps_the_frames_and_keeps_first_and_last(tmp_path):
    for step in range(1, 101):  # 100 grids, each a different grey
        grid_png(tm.sample_path(tmp_path, step * 10), step * 2)
    found, written = tm.write_progress(tmp_path, max_frames=12)
    assert (found, written) == (100, 12)
    with Image.open(tmp_path / tm.PROGRESS_GIF) as gif:
        assert gif.n_frames == 12 and gif.size == (40 // tm.GIF_SHRINK, 30 // tm.GIF_SHRINK)
        greys = []
        for i in range(gif.n_frames):
            gif.seek(i)
            greys.append(int(np.asarray(gif.convert("RGB"))[0, 0, 0]))  # flat grids: shrinking keeps the grey
        assert gif.info["duration"] == tm.GIF_LAST_MS  # the last frame is held
    assert greys[0] == 2 and greys[-1] == 200 and greys == sorted(greys)
    last = np.asarray(Image.open(tmp_path / tm.LAST_PNG))
    assert last.shape == (30, 40, 3) and (last == 200).all()


def test_gif_bytes_needs_frames():
    with pytest.raises(ValueError):
        gif_bytes([])


def test_training_writes_the_gif_and_resume_rebuilds_it(tmp_path):
    samples = tmp_path / "samples"
    samples.mkdir()
    grid_png(tm.sample_path(samples, 500), 7)  # a leftover of an earlier, longer run
    run_train(tmp_path, cfg_for("dcgan", epochs=0.5, sample_every=1), samples_dir=samples)  # 3 steps
    assert [s for s, _ in tm.sample_files(samples)] == [1, 2, 3]
    with Image.open(samples / tm.PROGRESS_GIF) as gif:
        assert gif.n_frames == 3
        first_size = gif.size
    grid_png(tm.sample_path(samples, 4), 9)  # written by a run killed after its last checkpoint (step 3)
    run_train(tmp_path, cfg_for("dcgan", epochs=1.0, sample_every=1), samples_dir=samples, resume=True)  # to 6
    assert [s for s, _ in tm.sample_files(samples)] == [1, 2, 3, 4, 5, 6]
    with Image.open(samples / tm.PROGRESS_GIF) as gif:
        assert gif.n_frames == 6 and gif.size == first_size
    with Image.open(samples / tm.LAST_PNG) as last, Image.open(tm.sample_path(samples, 6)) as six:
        assert np.array_equal(np.asarray(last), np.asarray(six))
    # step 4 is the resumed run's own grid, not the killed run's flat one
    assert np.asarray(Image.open(tm.sample_path(samples, 4))).std() > 0


def test_a_fresh_run_clears_the_last_runs_still_gif_and_half_written_grids(tmp_path):
    samples = tmp_path / "samples"
    samples.mkdir()
    for name in (tm.LAST_PNG, tm.PROGRESS_GIF, ".step_0000002.png.tmp-abc123"):
        (samples / name).write_bytes(b"from a killed run")
    tm.drop_samples_after(samples, 0)
    assert list(samples.iterdir()) == []
    (samples / tm.LAST_PNG).write_bytes(b"this run's")
    tm.drop_samples_after(samples, 3)  # resuming: the still stays until the next grid replaces it
    assert [p.name for p in samples.iterdir()] == [tm.LAST_PNG]
