"""The submission check on zips built here: every way the scorer rejected a zip, and a real-size valid one."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from pipeline import validate
from pipeline.validate import SubmissionError, ValidationResult, main, validate_zip


def png(size=(64, 64), mode="RGB", seed=0, fmt="PNG", compress_level=1) -> bytes:
    """An image of random pixels, encoded as ``fmt``."""
    rng = np.random.default_rng(seed)
    w, h = size
    im = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert(mode)
    buf = io.BytesIO()
    im.save(buf, format=fmt, **({"compress_level": compress_level} if fmt == "PNG" else {}))
    return buf.getvalue()


def make_zip(path, members: dict[str, bytes | None]) -> str:
    """Write a zip; a value of None makes a folder entry."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            if data is None:
                zf.mkdir(name)
            else:
                zf.writestr(name, data)
    return str(path)


def good_members(n: int) -> dict[str, bytes]:
    return {f"{i}.png": png(seed=i) for i in range(n)}


def error_of(path, expected=5) -> str:
    with pytest.raises(SubmissionError) as info:
        validate_zip(path, expected=expected)
    return str(info.value)


def test_valid_zip_passes(tmp_path):
    path = make_zip(tmp_path / "images.zip", good_members(5))
    result = validate_zip(path, expected=5)
    assert isinstance(result, ValidationResult)
    assert (result.images, result.size, result.mode) == (5, (64, 64), "RGB")
    assert result.summary().startswith("valid: 5 PNG images, 64x64 RGB, ")
    assert result.summary().endswith(" MB")


def test_missing_path_and_folder_are_not_files(tmp_path):
    assert "not a file" in error_of(tmp_path / "nope.zip")
    assert "not a file" in error_of(tmp_path)


def test_not_a_zip(tmp_path):
    path = tmp_path / "images.zip"
    path.write_bytes(png())  # a PNG renamed .zip
    assert "not a zip archive" in error_of(path)


def test_empty_zip(tmp_path):
    assert "empty" in error_of(make_zip(tmp_path / "a.zip", {}))
    # folder entries alone are still an empty submission
    assert "empty" in error_of(make_zip(tmp_path / "b.zip", {"images/": None}))


@pytest.mark.parametrize("count, word", [(4, "too few"), (6, "too many")])
def test_wrong_count_is_named(tmp_path, count, word):
    # the 9,999-instead-of-10,000 case, with expected=5
    msg = error_of(make_zip(tmp_path / "images.zip", good_members(count)), expected=5)
    assert f"holds {count} files" in msg and "exactly 5" in msg and word in msg


def test_folder_entries_are_not_counted(tmp_path):
    members = {"images/": None, **{f"images/{i}.png": png(seed=i) for i in range(5)}}
    assert validate_zip(make_zip(tmp_path / "images.zip", members), expected=5).images == 5


def test_a_name_given_twice_is_rejected(tmp_path):
    path = tmp_path / "images.zip"
    with zipfile.ZipFile(path, "w") as zf, pytest.warns(UserWarning, match="Duplicate name"):
        for i in range(5):
            zf.writestr(f"{min(i, 3)}.png", png(seed=i))  # 3.png twice: 5 members, 4 files once unzipped
    assert "3.png appears twice" in error_of(path)


def test_jpeg_named_png_is_rejected_and_named(tmp_path):
    members = good_members(5)
    members["3.png"] = png(fmt="JPEG")
    msg = error_of(make_zip(tmp_path / "images.zip", members))
    assert msg.startswith("3.png: not a PNG image")


def test_truncated_png_is_rejected_and_named(tmp_path):
    members = good_members(5)
    members["2.png"] = members["2.png"][: len(members["2.png"]) // 2]
    msg = error_of(make_zip(tmp_path / "images.zip", members))
    assert msg.startswith("2.png: truncated")


def test_png_cut_after_its_pixels_is_rejected(tmp_path):
    # PIL decodes every pixel of a PNG missing its closing IEND chunk: only the extra checks catch it
    members = good_members(5)
    members["1.png"] = members["1.png"][:-4]
    assert error_of(make_zip(tmp_path / "images.zip", members)).startswith("1.png: truncated PNG")


def test_flipped_byte_in_pixel_data_is_rejected(tmp_path):
    members = good_members(5)
    data = bytearray(members["4.png"])
    data[len(data) // 2] ^= 0xFF
    members["4.png"] = bytes(data)
    msg = error_of(make_zip(tmp_path / "images.zip", members))
    assert msg.startswith("4.png: ") and "corrupt" in msg


def test_wrong_size_names_member_and_size(tmp_path):
    members = good_members(5)
    members["0.png"] = png(size=(65, 64))
    msg = error_of(make_zip(tmp_path / "images.zip", members))
    assert msg.startswith("0.png: ") and "65x64" in msg


@pytest.mark.parametrize("mode", ["RGBA", "L", "P"])
def test_wrong_mode_names_it(tmp_path, mode):
    members = good_members(5)
    members["sub/x.png"] = png(mode=mode)
    del members["0.png"]
    msg = error_of(make_zip(tmp_path / "images.zip", members))
    assert msg.startswith("sub/x.png: ") and f"mode is {mode}," in msg


def test_first_problem_wins(tmp_path):
    members = good_members(5)
    members["1.png"] = png(size=(32, 32))  # first in archive order
    members["3.png"] = png(fmt="JPEG")
    assert error_of(make_zip(tmp_path / "images.zip", members)).startswith("1.png: image is 32x32")


def with_chunk(data: bytes, ctype: bytes, body: bytes, crc_flip: int = 0) -> bytes:
    """``data`` (a PNG) with one more chunk inserted just before IEND; ``crc_flip`` spoils its CRC."""
    crc = zlib.crc32(ctype + body) ^ crc_flip
    chunk = struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", crc)
    return data[:-12] + chunk + data[-12:]


def test_bad_checksum_of_an_ancillary_chunk_is_rejected(tmp_path):
    # PIL decodes every pixel of it (the chunk comes after the pixel data): only the chunk CRCs catch it
    members = good_members(5)
    members["2.png"] = with_chunk(members["2.png"], b"tEXt", b"Comment\x00hello", crc_flip=1)
    msg = error_of(make_zip(tmp_path / "images.zip", members))
    assert msg.startswith("2.png: truncated or corrupt PNG") and "tEXt" in msg
    members["2.png"] = with_chunk(good_members(3)["2.png"], b"tEXt", b"Comment\x00hello")
    assert validate_zip(make_zip(tmp_path / "ok.zip", members), expected=5).images == 5  # a valid extra chunk


def test_first_problem_wins_across_thread_blocks(tmp_path, monkeypatch):
    # one member per block: the blocks run on several threads, the first problem in archive order is reported
    monkeypatch.setattr(validate, "CHECK_BLOCK", 1)
    members = good_members(8)
    members["6.png"] = png(fmt="JPEG")
    members["2.png"] = png(size=(32, 32))
    assert error_of(make_zip(tmp_path / "a.zip", members), expected=8).startswith("2.png: image is 32x32")
    # a member that cannot be read from the zip (bad zip CRC) loses to a bad PNG before it ...
    path = make_zip(tmp_path / "b.zip", {**good_members(8), "2.png": png(size=(32, 32))})
    spoil_member(path, "5.png")
    assert error_of(path, expected=8).startswith("2.png: image is 32x32")
    # ... and is reported when every member before it is good
    path = make_zip(tmp_path / "c.zip", good_members(8))
    spoil_member(path, "5.png")
    assert error_of(path, expected=8).startswith("5.png: cannot be read from")


def spoil_member(path, name: str) -> None:
    """Flip one byte of the stored member ``name`` inside the zip, so its zip CRC fails."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
    raw = bytearray(open(path, "rb").read())
    # the data starts after the 30-byte local header, the file name and the extra field
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    raw[start + 40] ^= 0xFF
    open(path, "wb").write(bytes(raw))


def test_pixels_come_back_in_archive_order(tmp_path, monkeypatch):
    monkeypatch.setattr(validate, "CHECK_BLOCK", 3)
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (10, 64, 64, 3), dtype=np.uint8)
    members = {}
    for i, image in enumerate(images):
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG")
        members[f"{i}.png"] = buf.getvalue()
    result = validate_zip(make_zip(tmp_path / "images.zip", members), expected=10, keep_pixels=True)
    assert result.pixels.shape == (10, 64, 64, 3) and np.array_equal(result.pixels, images)


def test_cli_exit_codes(tmp_path, capsys):
    good = make_zip(tmp_path / "good.zip", good_members(3))
    assert main([good, "--expected", "3"]) == 0
    assert capsys.readouterr().out.startswith("valid: 3 PNG images, 64x64 RGB")
    assert main([good]) == 2  # 3 files, 10,000 expected
    assert "holds 3 files, it must hold exactly 10000" in capsys.readouterr().err
    members = good_members(3)
    members["2.png"] = png(mode="RGBA")
    assert main([make_zip(tmp_path / "bad.zip", members), "--expected", "3"]) == 2
    assert capsys.readouterr().err.startswith("error: 2.png: image mode is RGBA")


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0 and "--expected" in capsys.readouterr().out


@pytest.mark.slow
def test_real_size_submission_is_valid(tmp_path):
    # 10,000 random 64x64 PNGs, as the generate stage would write them (timing printed, not asserted)
    rng = np.random.default_rng(0)
    path = tmp_path / "images.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(10_000):
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, format="PNG", compress_level=0)
            zf.writestr(f"{i:05d}.png", buf.getvalue())
    result = validate_zip(path)
    assert result.images == 10_000
    print(f"{result.summary()} in {result.seconds:.2f} s")
