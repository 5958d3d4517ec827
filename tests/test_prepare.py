"""The prepare stage end to end on tiny competition-layout folders, bad input included."""

import json

import numpy as np
import pytest
from PIL import Image

from pipeline import prepare as prep
from pipeline.config import build_config
from pipeline.files import load_dataset

CFG = build_config("prepare", {"workers": 1})


def run(tiny, **cfg):
    return prep.prepare(tiny.images, tiny.annotations, build_config("prepare", {"workers": 1, **cfg}), progress=False)


def test_every_box_becomes_a_labelled_crop(tiny):
    tiny.add("n1_1", "n1-alpha", size=(200, 100), boxes=[(0, 0, 99, 99), (100, 0, 199, 99)])
    tiny.add("n2_1", "n2-beta", size=(64, 64), boxes=[(0, 0, 63, 63)], colour=(0, 0, 250))
    ds, report = run(tiny)
    assert ds.images.shape == (3, 64, 64, 3) and ds.images.dtype == np.uint8
    assert list(ds.breeds) == ["alpha", "beta"]
    assert list(ds.labels) == [0, 0, 1]
    assert list(ds.sources) == ["n1_1#0", "n1_1#1", "n2_1#0"]
    assert np.abs(ds.images[2].astype(int) - (0, 0, 250)).max() < 10
    assert report["boxes_found"] == 3 and report["boxes_kept"] == 3 and report["images_read"] == 2
    assert report["skipped"] == {}


def test_bad_input_is_counted_and_valid_boxes_are_kept(tiny):
    good = [(10, 10, 59, 69)]
    tiny.add("n1_ok", "n1-alpha", boxes=good)
    tiny.add("n1_nophoto", "n1-alpha", boxes=good, photo=False)  # annotation, no photo
    Image.new("RGB", (50, 50)).save(tiny.images / "n1_orphan.jpg")  # photo, no annotation
    tiny.add("n1_corrupt", "n1-alpha", boxes=good)
    data = (tiny.images / "n1_corrupt.jpg").read_bytes()
    (tiny.images / "n1_corrupt.jpg").write_bytes(data[: len(data) // 3])  # truncated JPEG
    tiny.add("n1_garbage", "n1-alpha", boxes=good)
    (tiny.images / "n1_garbage.jpg").write_bytes(b"\x00" * 500)
    tiny.add("n1_badxml", "n1-alpha", xml="<annotation><size>")
    tiny.add("n1_emptyxml", "n1-alpha", xml="")
    tiny.add("n1_noobj", "n1-alpha", xml="<annotation><size><width>120</width><height>90</height></size></annotation>")
    # one photo, five boxes: zero area, outside, extreme aspect, and two good ones that must survive
    tiny.add("n2_mixed", "n2-beta", size=(120, 90),
             boxes=[(50, 50, 40, 60), (200, 10, 250, 40), (0, 0, 119, 9), (0, 0, 59, 59), (60, 20, 119, 89)])
    ds, report = run(tiny)
    assert list(ds.sources) == ["n1_ok#0", "n2_mixed#3", "n2_mixed#4"]
    assert report["skipped"] == {
        "missing_photo": 1, "no_annotation": 1, "corrupt_image": 2, "malformed_xml": 1, "empty_annotation": 2,
        "zero_area_box": 1, "box_outside_image": 1, "aspect_out_of_range": 1,
    }
    named = json.dumps(report["skips"])
    for name in ["n1_nophoto", "n1_orphan.jpg", "n1_corrupt.jpg", "n1_garbage.jpg", "n1_badxml", "n1_emptyxml",
                 "n1_noobj", "n2_mixed"]:
        assert name in named


def test_size_filter_counts_small_boxes(tiny):
    tiny.add("n1_1", "n1-a", size=(200, 200), boxes=[(0, 0, 29, 29), (0, 0, 99, 99)])
    ds, report = run(tiny, min_side=32)
    assert list(ds.sources) == ["n1_1#1"]
    assert report["skipped"] == {"box_too_small": 1}


def test_nothing_usable_is_a_clear_error(tiny):
    tiny.add("n1_1", "n1-a", boxes=[(0, 0, 99, 9)], size=(120, 90))  # aspect 10: dropped
    with pytest.raises(prep.PrepareError, match="no usable bounding box"):
        run(tiny)


def test_missing_folders_say_what_to_run(tmp_path):
    with pytest.raises(prep.PrepareError, match="pipeline.download"):
        prep.prepare(tmp_path / "nope", tmp_path, CFG, progress=False)


def test_large_photo_is_decoded_reduced(tiny, monkeypatch):
    tiny.add("n1_big", "n1-a", size=(3264, 2562), boxes=[(1000, 500, 2999, 2499)])
    sizes = []
    real = prep.decode_reduced

    def spy(im, reduce):
        out = real(im, reduce)
        sizes.append(out.size)
        return out

    monkeypatch.setattr(prep, "decode_reduced", spy)
    ds, _ = run(tiny)
    assert len(ds) == 1
    assert sizes == [(408, 321)]  # a 2000-px box needs only 1/8 of the pixels: 3264/8 x ceil(2562/8)


def test_parallel_workers_give_the_same_dataset(tiny):
    rng = np.random.default_rng(0)
    for i in range(12):
        tiny.add(f"n1_{i}", f"n{i % 3}-b{i % 3}", size=(150, 120), boxes=[(5, 5, 100, 110)],
                 colour=tuple(int(c) for c in rng.integers(0, 255, 3)))
    one, _ = run(tiny, workers=1)
    two, _ = run(tiny, workers=2)
    assert np.array_equal(one.images, two.images) and list(one.sources) == list(two.sources)


def test_main_writes_dataset_report_and_grid(tiny, tmp_path, capsys):
    tiny.add("n1_1", "n1-alpha", boxes=[(10, 10, 59, 69)])
    out = tmp_path / "prepared" / "dogs64.npz"
    code = prep.main(["--images", str(tiny.images), "--annotations", str(tiny.annotations), "--out", str(out),
                      "--no-progress", "--set", "workers=1"])
    assert code == 0
    ds = load_dataset(out)
    assert ds.images.shape == (1, 64, 64, 3)
    report = json.loads((out.parent / "report.json").read_text())
    assert report["boxes_kept"] == 1
    assert Image.open(out.parent / "grid.png").size[0] > 64
    assert "1 crops" in capsys.readouterr().out


def test_main_reports_bad_params_without_writing(tiny, tmp_path, capsys):
    tiny.add("n1_1", "n1-alpha")
    out = tmp_path / "dogs64.npz"
    code = prep.main(["--images", str(tiny.images), "--annotations", str(tiny.annotations), "--out", str(out),
                      "--set", "square=squash"])
    assert code == 2
    err = capsys.readouterr().err
    assert "prepare.square" in err and "stretch, expand, pad" in err
    assert not out.exists()


def test_demo_data_prepares_every_box(tmp_path):
    from pipeline.demo_data import build_demo

    summary = build_demo(tmp_path / "raw", seed=0)
    ds, report = prep.prepare(tmp_path / "raw" / "all-dogs", tmp_path / "raw" / "Annotation", CFG, progress=False)
    assert summary == {"source": "demo", "seed": 0, "photos": 295, "boxes": 380}
    assert len(ds.breeds) == 12
    # the two real boxes that pass the photo border are clipped and kept
    assert {"n02098105_2063#0", "n02106030_3948#0"} <= set(ds.sources)
    assert report["boxes_kept"] + sum(report["skipped"].values()) == 380
    # the demo photos are built at exactly the annotated sizes
    for photo in sorted((tmp_path / "raw" / "all-dogs").iterdir())[:20]:
        folder = next((tmp_path / "raw" / "Annotation").glob(f"{photo.stem.split('_')[0]}-*"))
        xml = (folder / photo.stem).read_text()
        w = int(xml.split("<width>")[1].split("<")[0])
        h = int(xml.split("<height>")[1].split("<")[0])
        assert Image.open(photo).size == (w, h)
