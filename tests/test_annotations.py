"""PASCAL-VOC parsing: hand-written documents, broken ones, and every real Stanford Dogs file."""

import zipfile
from pathlib import Path

import pytest

from pipeline.annotations import (
    Annotation, AnnotationError, Box, breed_of_folder, list_annotation_files, parse_annotation,
)
from tests.conftest import voc_xml


def test_parse_two_boxes():
    ann = parse_annotation(voc_xml(500, 375, [(0, 10, 499, 374), (20, 30, 40, 50)]), "n1_1", "pug")
    assert ann == Annotation("n1_1", "pug", 500, 375, (Box(0, 10, 499, 374), Box(20, 30, 40, 50)))


def test_float_coordinates_are_rounded_to_pixel_indices():
    xml = voc_xml(10, 10, [(0, 0, 5, 5)]).replace("<xmax>5</xmax>", "<xmax>5.0</xmax>")
    assert parse_annotation(xml, "a", "b").boxes == (Box(0, 0, 5, 5),)


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "empty_annotation"),
        ("   \n", "empty_annotation"),
        ("<annotation><size><width>5</width><height>5</height></size></annotation>", "empty_annotation"),
        ("<annotation><size><width>5</width>", "malformed_xml"),  # truncated
        ("not xml at all", "malformed_xml"),
        ("<annotation><object><bndbox><xmin>1</xmin></bndbox></object></annotation>", "malformed_xml"),  # no size
        (voc_xml(10, 10, [(1, 2, 3, 4)]).replace("<ymax>4</ymax>", ""), "malformed_xml"),
        (voc_xml(10, 10, [(1, 2, 3, 4)]).replace("<xmin>1</xmin>", "<xmin>one</xmin>"), "malformed_xml"),
        ("<annotation><size><width>5</width><height>5</height></size><object><name>x</name></object></annotation>",
         "malformed_xml"),  # object without bndbox
        (voc_xml(10, 10, [(1, 2, 3, 4)]).replace("<xmin>1</xmin>", "<xmin>1e999</xmin>"), "malformed_xml"),  # inf
        (voc_xml(10, 10, [(1, 2, 3, 4)]).replace("<width>10</width>", "<width>nan</width>"), "malformed_xml"),
        # as prepare reads it, bytes: the declared encoding is looked up (a str has been decoded already)
        (('<?xml version="1.0" encoding="bogus"?>' + voc_xml(10, 10, [(1, 2, 3, 4)])).encode(), "malformed_xml"),
    ],
)
def test_unusable_documents_raise_with_a_reason(text, reason):
    with pytest.raises(AnnotationError) as info:
        parse_annotation(text, "a", "b")
    assert info.value.reason == reason


def test_breed_of_folder():
    assert breed_of_folder("n02085620-Chihuahua") == "Chihuahua"
    assert breed_of_folder("n02098105-soft-coated_wheaten_terrier") == "soft-coated_wheaten_terrier"
    assert breed_of_folder("pugs") == "pugs"


def test_listing_skips_hidden_files_and_sorts(tmp_path):
    for folder, name in [("n2-b", "n2_1"), ("n1-a", "n1_2"), ("n1-a", "n1_1"), ("n1-a", ".DS_Store")]:
        (tmp_path / folder).mkdir(exist_ok=True)
        (tmp_path / folder / name).write_text("x")
    found = [(f.breed, f.photo_id) for f in list_annotation_files(tmp_path)]
    assert found == [("a", "n1_1"), ("a", "n1_2"), ("b", "n2_1")]


@pytest.fixture(scope="module")
def real_annotations(shared_annotations, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("stanford")
    with zipfile.ZipFile(shared_annotations / "Annotation.zip") as z:
        z.extractall(root)
    return root / "Annotation"


def test_every_real_annotation_parses(real_annotations):
    files = list_annotation_files(real_annotations)
    anns = [parse_annotation(f.path.read_bytes(), f.photo_id, f.breed) for f in files]
    assert len(anns) == 20_580
    assert len({a.breed for a in anns}) == 120
    assert sum(len(a.boxes) for a in anns) == 22_126
    per_photo = {}
    for a in anns:
        per_photo[len(a.boxes)] = per_photo.get(len(a.boxes), 0) + 1
    assert per_photo == {1: 19_222, 2: 1_205, 3: 122, 4: 28, 5: 2, 6: 1}
    # 0-based inclusive coordinates: boxes start at index 0 and end at width - 1, never at width
    # (COMPETITION.md's "xmin 0 occurs 3,445 times" counts boxes at the left or the top edge)
    boxes = [(a, b) for a in anns for b in a.boxes]
    assert sum(b.xmin == 0 or b.ymin == 0 for _, b in boxes) == 3_445
    assert sum(b.xmax == a.width - 1 for a, b in boxes) == 1_867
    assert sum(b.xmax == a.width for a, b in boxes) == 0
    past = sorted(a.photo_id for a, b in boxes if b.xmax >= a.width or b.ymax >= a.height)
    assert past == ["n02098105_2063", "n02106030_3948"]


def test_pug_originals_parse_like_their_rebuilt_copies(shared_annotations, real_annotations):
    with zipfile.ZipFile(shared_annotations / "original-pug-subset.zip") as z:
        names = [n for n in z.namelist() if not n.endswith("/")]
        assert len(names) == 200
        for name in names:
            photo_id = Path(name).name
            original = parse_annotation(z.read(name), photo_id, "pug")
            rebuilt = parse_annotation((real_annotations / "n02110958-pug" / photo_id).read_bytes(), photo_id, "pug")
            assert original == rebuilt
