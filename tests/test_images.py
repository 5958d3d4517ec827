"""Decoding (reduced JPEG decode, colour modes, broken files) and cropping on pictures with known content."""

import io

import numpy as np
import pytest
from PIL import Image

from pipeline.boxes import CropPlan, Rect, plan_crop
from pipeline.images import image_grid
from pipeline.photos import ImageDecodeError, decode_reduced, open_photo, render_crop


def jpeg(tmp_path, im: Image.Image, name="p.jpg", **kw) -> str:
    path = tmp_path / name
    im.save(path, format="JPEG", quality=95, **kw)
    return str(path)


def halves(width, height, left=(255, 0, 0), right=(0, 0, 255)) -> Image.Image:
    a = np.zeros((height, width, 3), np.uint8)
    a[:, : width // 2] = left
    a[:, width // 2:] = right
    return Image.fromarray(a)


def test_reduced_decode_shrinks_a_large_jpeg_in_the_decoder(tmp_path):
    path = jpeg(tmp_path, halves(1600, 1200))
    im = open_photo(path)
    assert im.size == (1600, 1200)
    assert decode_reduced(im, 8.0).size == (200, 150)
    # draft never shrinks below what was asked for: 1600 / 3 = 533.3 -> scale 1/2
    assert decode_reduced(open_photo(path), 3.0).size == (800, 600)
    assert decode_reduced(open_photo(path), 1.0).size == (1600, 1200)


@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_grayscale_and_cmyk_jpegs_become_rgb(tmp_path, mode):
    path = jpeg(tmp_path, Image.new("RGB", (80, 60), (200, 200, 200)).convert(mode))
    assert Image.open(path).mode == mode
    im = decode_reduced(open_photo(path), 1.0)
    assert im.mode == "RGB"
    assert np.abs(np.asarray(im).astype(int) - 200).max() < 8


def test_palette_image_becomes_rgb(tmp_path):
    path = tmp_path / "p.jpg"  # a PNG under a .jpg name: decoded by content, not by name
    Image.new("RGB", (40, 30), (10, 200, 30)).convert("P").save(path, format="PNG")
    im = decode_reduced(open_photo(path), 4.0)
    assert im.mode == "RGB" and im.size == (40, 30)
    assert tuple(np.asarray(im)[0, 0]) == tuple(np.asarray(Image.open(path).convert("RGB"))[0, 0])


def test_truncated_jpeg_is_a_decode_error(tmp_path):
    buf = io.BytesIO()
    halves(400, 300).save(buf, format="JPEG", quality=90)
    path = tmp_path / "cut.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    im = open_photo(path)  # the header is intact
    with pytest.raises(ImageDecodeError):
        decode_reduced(im, 1.0)


def test_garbage_is_a_decode_error(tmp_path):
    path = tmp_path / "junk.jpg"
    path.write_bytes(b"this is not an image" * 10)
    with pytest.raises(ImageDecodeError):
        open_photo(path)


def test_crop_of_the_left_half_is_all_left_colour():
    im = halves(200, 100)
    plan = CropPlan(canvas=Rect(0, 0, 100, 100), valid=Rect(0, 0, 200, 100))
    out = render_crop(im, plan, (1.0, 1.0), 64, "lanczos")
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert (out == (255, 0, 0)).all()


def test_crop_coordinates_follow_a_reduced_decode(tmp_path):
    # right half of a 1600x1200 photo, decoded at 1/8: the crop must still be all blue
    path = jpeg(tmp_path, halves(1600, 1200))
    im = decode_reduced(open_photo(path), 8.0)
    plan = CropPlan(canvas=Rect(850, 0, 1600, 1200), valid=Rect(0, 0, 1600, 1200))
    out = render_crop(im, plan, (im.width / 1600, im.height / 1200), 64, "lanczos").astype(int)
    assert np.abs(out - (0, 0, 255)).max() < 12


def test_stretch_maps_the_whole_box_onto_the_square():
    # box covering both halves equally: left half of the output red, right half blue
    im = halves(200, 50)
    out = render_crop(im, plan_crop(Rect(50, 0, 150, 50), 200, 50, "stretch"), (1.0, 1.0), 64, "bilinear")
    assert (out[:, :30] == (255, 0, 0)).all() and (out[:, 34:] == (0, 0, 255)).all()


def test_pad_repeats_the_box_edges():
    # 20-wide red box on a blue photo, padded to a 40x40 square: the padding repeats red, never blue
    a = np.zeros((40, 100, 3), np.uint8)
    a[:] = (0, 0, 255)
    a[:, 40:60] = (255, 0, 0)
    plan = plan_crop(Rect(40, 0, 60, 40), 100, 40, "pad")
    out = render_crop(Image.fromarray(a), plan, (1.0, 1.0), 64, "lanczos")
    assert (out == (255, 0, 0)).all()


def test_expand_past_a_narrow_photo_pads_instead_of_failing():
    im = halves(100, 30)
    plan = plan_crop(Rect(0, 0, 100, 30), 100, 30, "expand")
    out = render_crop(im, plan, (1.0, 1.0), 64, "lanczos")
    assert out.shape == (64, 64, 3)
    assert (out[:, :28] == (255, 0, 0)).all() and (out[:, 36:] == (0, 0, 255)).all()


def test_resize_is_antialiased():
    # a 1-px checkerboard shrunk 8x must average to grey, not alias to black or white
    board = (np.indices((512, 512)).sum(0) % 2 * 255).astype(np.uint8)
    im = Image.fromarray(np.stack([board] * 3, -1))
    out = render_crop(im, CropPlan(Rect(0, 0, 512, 512), Rect(0, 0, 512, 512)), (1.0, 1.0), 64, "lanczos")
    assert np.abs(out.astype(int) - 127).max() <= 3


def test_grid_has_one_tile_per_image():
    images = np.zeros((10, 64, 64, 3), np.uint8)
    images[:, :, :, 0] = (np.arange(10) * 20 + 10)[:, None, None]  # tile i has red level 10 + 20 i
    grid = image_grid(images, [f"b{i}" for i in range(10)], columns=4, zoom=2)
    tiles_x = 4
    assert grid.width == tiles_x * (128 + 4) + 4
    assert grid.height == 3 * (128 + 14 + 4) + 4
    pixels = np.asarray(grid)
    for i in range(12):  # row by row, 4 per row; 128 x 128 tiles, 4 px apart, 14 px of caption below each
        r, c = divmod(i, 4)
        y, x = 4 + r * (128 + 14 + 4), 4 + c * (128 + 4)
        tile = pixels[y:y + 128, x:x + 128]
        if i < 10:
            assert (tile[..., 0] == 10 + 20 * i).all() and (tile[..., 1:] == 0).all()
        else:  # the two places after the last image stay white
            assert (tile == 255).all()
