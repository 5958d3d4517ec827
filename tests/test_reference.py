"""The photo reference: every competition photo read as Kaggle's scorer read it (whole, RGB, LANCZOS to 64x64)."""

import json

import numpy as np
import pytest
from PIL import Image

from pipeline import reference as stage
from pipeline import reference_set as R
from pipeline.files import load_dataset


def bands(width: int = 192, height: int = 64) -> Image.Image:
    """Three vertical bands, red | green | blue, each a third of the width."""
    a = np.zeros((height, width, 3), np.uint8)
    third = width // 3
    a[:, :third, 0] = a[:, third:2 * third, 1] = a[:, 2 * third:, 2] = 255
    return Image.fromarray(a)


def tree(tmp_path):
    """A tiny all-dogs folder: a wide RGB photo, a grayscale one, a CMYK one, a corrupt and a truncated one."""
    folder = tmp_path / "all-dogs"
    folder.mkdir()
    bands().save(folder / "n02085620_1.jpg", quality=98)
    Image.fromarray(np.full((80, 50), 77, np.uint8), "L").save(folder / "n02085620_2.jpg", quality=98)
    Image.new("CMYK", (70, 90), (0, 255, 255, 0)).save(folder / "n02099601_3.jpg", quality=98)  # red in CMYK
    (folder / "n02099601_4.jpg").write_bytes(b"this is not a jpeg")
    data = (folder / "n02085620_1.jpg").read_bytes()
    (folder / "n02099601_5.jpg").write_bytes(data[: len(data) // 2])
    (folder / "notes.txt").write_text("not a photo: ignored")
    return folder


def test_a_wide_photo_is_squashed_whole_not_cropped():
    """192x64 red | green | blue: squashed, all three bands stay (a centre crop would be all green)."""
    picture = bands()
    px = np.asarray(picture.convert("RGB").resize((64, 64), Image.Resampling.LANCZOS))
    assert px.shape == (64, 64, 3)
    import io

    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    buf.seek(0)
    got = R.kaggle_photo_pixels(buf)
    np.testing.assert_array_equal(got, px)  # exactly Image.open(f).convert("RGB").resize((64, 64), LANCZOS)
    assert got[32, 4].tolist() == [255, 0, 0] and got[32, 32].tolist() == [0, 255, 0]
    assert got[32, 59].tolist() == [0, 0, 255]


def test_the_tree_is_read_with_grayscale_and_cmyk_as_rgb_and_bad_photos_as_named_skips(tmp_path):
    ds, report = R.build_photo_reference(tree(tmp_path), workers=1, progress=False)
    assert report.photos_found == 5 and report.images_read == 3 and len(report.skips) == 2
    assert [s.split(":")[0].rsplit("/", 1)[1] for s in report.skips] == ["n02099601_4.jpg", "n02099601_5.jpg"]
    assert ds.images.shape == (3, 64, 64, 3) and ds.images.dtype == np.uint8
    assert ds.sources.tolist() == ["n02085620_1", "n02085620_2", "n02099601_3"]
    assert ds.breeds.tolist() == ["n02085620", "n02099601"] and ds.labels.tolist() == [0, 0, 1]
    wide, gray, cmyk = ds.images
    assert wide[32, 4, 0] > 240 and wide[32, 32, 1] > 240 and wide[32, 59, 2] > 240  # squashed, not cropped
    assert np.all(np.abs(gray.astype(int) - 77) <= 2) and (gray[..., 0] == gray[..., 2]).all()  # L -> RGB
    assert np.all(cmyk[..., 0] > 240) and np.all(cmyk[..., 1:] < 15)  # CMYK red -> RGB red
    # worker processes give the same pixels
    again, _ = R.build_photo_reference(tmp_path / "all-dogs", workers=2, progress=False)
    np.testing.assert_array_equal(again.images, ds.images)


def test_no_folder_no_photos_or_none_decodable_are_clear_errors(tmp_path):
    with pytest.raises(R.ReferenceError, match="no such folder"):
        R.build_photo_reference(tmp_path / "missing", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(R.ReferenceError, match="holds no photos"):
        R.build_photo_reference(tmp_path / "empty", progress=False)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a_1.jpg").write_bytes(b"junk")
    with pytest.raises(R.ReferenceError, match="none of the 1 photos"):
        R.build_photo_reference(tmp_path / "bad", workers=1, progress=False)


def test_load_reference_picks_the_kind_and_names_what_is_missing(tmp_path):
    ds, _ = R.build_photo_reference(tree(tmp_path), workers=1, progress=False)
    from pipeline.files import save_dataset

    save_dataset(tmp_path / "photos64.npz", ds)
    assert len(R.load_reference("photos", tmp_path / "photos64.npz", None)) == 3
    with pytest.raises(FileNotFoundError, match="no photo reference here.*pipeline.reference"):
        R.load_reference("photos", tmp_path / "none.npz", tmp_path / "photos64.npz")
    with pytest.raises(R.ReferenceError, match="pass --crops"):
        R.load_reference("crops", tmp_path / "photos64.npz", None)
    with pytest.raises(R.ReferenceError, match="unknown reference 'faces'"):
        R.load_reference("faces", None, None)


def test_stage_writes_the_dataset_and_a_report_and_exits_2_on_an_empty_folder(tmp_path, capsys):
    folder = tree(tmp_path)
    out = tmp_path / "prepared" / "photos64.npz"
    assert stage.main(["--images", str(folder), "--out", str(out), "--no-progress", "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "3 of 5 photos read" in printed and "skipped (cannot be decoded)" in printed
    assert "n02099601_4.jpg" in printed
    assert len(load_dataset(out)) == 3
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["photos_found"] == 5 and report["images_read"] == 3 and report["skipped"] == 2
    (tmp_path / "empty").mkdir()
    assert stage.main(["--images", str(tmp_path / "empty"), "--out", str(tmp_path / "x.npz"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "holds no photos" in err and not (tmp_path / "x.npz").exists()
    assert stage.main(["--images", str(folder), "--out", str(out), "--workers", "-1"]) == 2
    assert "--workers must be 0" in capsys.readouterr().err
