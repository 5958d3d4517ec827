"""Atomic writes: a killed writer leaves no output file; the dataset format round-trips."""

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline import files
from pipeline.files import Dataset, atomic_path, load_dataset, save_dataset, write_text
from tests.conftest import REPO


def test_write_replaces_the_file_whole(tmp_path):
    path = tmp_path / "a.txt"
    write_text(path, "old")
    write_text(path, "new")
    assert path.read_text() == "new"
    assert os.listdir(tmp_path) == ["a.txt"]


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "a.txt"
    write_text(path, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["a.txt"]


def test_killed_writer_leaves_no_output_file(tmp_path):
    """SIGKILL a process halfway through writing a dataset: no dogs64.npz may appear."""
    out = tmp_path / "dogs64.npz"
    started = tmp_path / "started"
    script = textwrap.dedent(f"""
        import time, numpy as np
        from pathlib import Path
        import pipeline.files as files
        real_savez = np.savez
        def slow_savez(fh, **arrays):
            fh.write(b"PK" + b"x" * 1_000_000)   # part of the data is on disk...
            fh.flush()
            Path({str(started)!r}).write_text("1")
            time.sleep(60)                         # ...when the process is killed
        files.np.savez = slow_savez
        ds = files.Dataset(np.zeros((4, 64, 64, 3), np.uint8), np.zeros(4, np.int64),
                           np.array(["a"]), np.array(["p#0"] * 4))
        files.save_dataset({str(out)!r}, ds)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO)
    deadline = time.time() + 30
    while not started.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert started.exists(), "the writer never started"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    # the leftover temp file is named so that nothing takes it for the output
    assert all(name.startswith(".dogs64.npz.tmp-") for name in os.listdir(tmp_path) if name != "started")


def test_dataset_round_trip(tmp_path):
    ds = Dataset(
        images=np.arange(2 * 64 * 64 * 3, dtype=np.uint32).astype(np.uint8).reshape(2, 64, 64, 3),
        labels=np.array([1, 0]),
        breeds=np.array(["pug", "beagle"]),
        sources=np.array(["n1_1#0", "n1_1#1"]),
    )
    save_dataset(tmp_path / "d.npz", ds)
    back = load_dataset(tmp_path / "d.npz")
    assert np.array_equal(back.images, ds.images) and back.labels.dtype == np.int64
    assert list(back.breeds) == ["pug", "beagle"] and list(back.sources) == ["n1_1#0", "n1_1#1"]


def test_dataset_checks_its_shapes():
    with pytest.raises(ValueError, match="labels"):
        Dataset(np.zeros((2, 64, 64, 3), np.uint8), np.zeros(3, np.int64), np.array(["a"]), np.array(["x", "y"]))
    with pytest.raises(ValueError, match="index into the 1 breeds"):
        Dataset(np.zeros((1, 64, 64, 3), np.uint8), np.array([1]), np.array(["a"]), np.array(["x"]))


def test_loading_a_foreign_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "d.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a dataset written by pipeline.prepare"):
        load_dataset(bad)
    with pytest.raises(FileNotFoundError, match="pipeline.prepare"):
        load_dataset(tmp_path / "missing.npz")


def test_outputs_get_the_modes_a_plain_write_would_give(tmp_path):
    # mkstemp/mkdtemp make owner-only files and folders; outputs must not stay that way (shared machines, CI)
    old = os.umask(0o022)
    try:
        files.write_text(tmp_path / "a.json", "{}")
        new = Path(tempfile.mkdtemp(dir=tmp_path))
        files.replace_dir(new, tmp_path / "folder")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~files._UMASK
    assert (tmp_path / "folder").stat().st_mode & 0o777 == 0o777 & ~files._UMASK
    assert files.FILE_MODE & 0o044  # readable by others under the usual umask of this machine and CI (022)


def test_ensure_writable_fails_early_and_leaves_nothing(tmp_path):
    files.ensure_writable(tmp_path / "new" / "ck.pt")  # makes the folder, leaves no file
    assert list((tmp_path / "new").iterdir()) == []
    (tmp_path / "dir.pt").mkdir()
    with pytest.raises(IsADirectoryError, match="this is a folder"):
        files.ensure_writable(tmp_path / "dir.pt")
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError):
        files.ensure_writable(tmp_path / "file" / "ck.pt")  # a file where a folder should be


def test_error_texts():
    from pipeline.errors import error_text, first_line, load_error_text

    assert first_line(EOFError("")) == "no message"
    assert first_line(KeyError("unknown model 'x'")) == "unknown model 'x'"  # without str(KeyError)'s quotes
    assert first_line(ValueError("one\ntwo")) == "one"
    assert error_text(FileNotFoundError(2, "No such file or directory", "/nope/x.zip")).startswith(
        "/nope/x.zip: No such file or directory. Check that the path is right")
    assert error_text(FileNotFoundError("run prepare first")) == "run prepare first"
    assert "never loaded here" in load_error_text(RuntimeError("Weights only load failed. ... weights_only=False"))
