import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from vlmstudy import ImageError, load_image, load_images


def _png_bytes(img: Image.Image, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kwargs)
    return buf.getvalue()


def _rgb(img: Image.Image, xy=(0, 0)) -> tuple[int, int, int]:
    assert img.mode == "RGB"
    return img.getpixel(xy)


def _close(a, b, tol=3):
    return all(abs(int(x) - int(y)) <= tol for x, y in zip(a, b))


def test_cmyk_jpeg_becomes_rgb():
    img = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # no cyan, full magenta + yellow: red
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95)
    out = load_image(buf.getvalue())
    assert out.size == (8, 8)
    assert _close(_rgb(out, (4, 4)), (255, 0, 0), tol=12)


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    arr = np.array([[0, 1000, 32768, 65535]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(arr).save(path)
    assert Image.open(path).mode in ("I;16", "I")  # really 16-bit on disk
    out = load_image(path)
    values = [_rgb(out, (x, 0))[0] for x in range(4)]
    assert values[0] == 0 and values[3] == 255
    assert abs(values[2] - 128) <= 1
    assert values[1] <= 5  # clipping would have made 1000 -> 255


def test_palette_with_transparency_is_composited_on_white():
    img = Image.new("P", (2, 1))
    img.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    img.putpixel((0, 0), 0)
    img.putpixel((1, 0), 1)
    data = _png_bytes(img, transparency=1)  # palette entry 1 (green) is fully transparent
    out = load_image(data)
    assert _rgb(out, (0, 0)) == (255, 0, 0)
    assert _rgb(out, (1, 0)) == (255, 255, 255)


def test_la_and_rgba_are_composited_on_white():
    la = Image.new("LA", (2, 1), (0, 0))
    la.putpixel((1, 0), (0, 255))
    out = load_image(la)
    assert _rgb(out, (0, 0)) == (255, 255, 255)  # transparent black shows the white page
    assert _rgb(out, (1, 0)) == (0, 0, 0)
    rgba = Image.new("RGBA", (1, 1), (255, 0, 0, 128))
    assert _close(_rgb(load_image(_png_bytes(rgba))), (255, 127, 127), tol=2)


def test_exif_rotated_jpeg_comes_out_upright():
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (20, 0, 40, 20))  # left half red, right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation 6: display rotated 90 degrees clockwise
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    out = load_image(buf.getvalue())
    assert out.size == (20, 40)  # portrait now
    assert _close(_rgb(out, (10, 5)), (255, 0, 0), tol=20)  # the left half went to the top
    assert _close(_rgb(out, (10, 35)), (0, 0, 255), tol=20)


@pytest.mark.parametrize(
    "array, expected",
    [
        (np.full((4, 5, 3), (10, 20, 30), dtype=np.uint8), (10, 20, 30)),
        (np.full((4, 5, 3), 65535, dtype=np.uint16), (255, 255, 255)),
        (np.full((4, 5, 3), 32768, dtype=np.uint16), (128, 128, 128)),
        (np.full((4, 5, 3), 0.5, dtype=np.float32), (128, 128, 128)),
        (np.full((4, 5), 200.0, dtype=np.float64), (200, 200, 200)),  # float beyond 1: 0..255 scale
        (np.full((4, 5), 7, dtype=np.uint8), (7, 7, 7)),
        (np.full((4, 5, 1), 9, dtype=np.uint8), (9, 9, 9)),
    ],
    ids=["uint8", "uint16-max", "uint16-half", "float01", "float255", "gray", "hw1"],
)
def test_numpy_arrays(array, expected):
    out = load_image(array)
    assert out.size == (5, 4)
    assert _close(_rgb(out, (2, 2)), expected, tol=1)


def test_channels_first_array_as_torch_gives_it():
    chw = np.zeros((3, 4, 5), dtype=np.float32)
    chw[0] = 1.0  # red channel
    out = load_image(chw)
    assert out.size == (5, 4)
    assert _rgb(out, (1, 1)) == (255, 0, 0)


@pytest.mark.parametrize("array", [np.zeros((2, 3, 4, 5)), np.zeros((5, 6, 2)), np.array([[np.nan, 0.0]])])
def test_unusable_arrays_are_refused(array):
    with pytest.raises(ImageError):
        load_image(array)


def test_bytes_pil_and_path_give_the_same_picture(tmp_path):
    img = Image.new("RGB", (6, 3), (1, 2, 3))
    data = _png_bytes(img)
    path = tmp_path / "x.png"
    path.write_bytes(data)
    for source in (data, bytearray(data), img, path, str(path)):
        out = load_image(source)
        assert out.size == (6, 3) and _rgb(out) == (1, 2, 3)
    assert len(load_images([data, img])) == 2 and len(load_images(data)) == 1


def test_truncated_png():
    rng = np.random.default_rng(0)
    data = _png_bytes(Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)))
    with pytest.raises(ImageError, match="truncated|damaged"):
        load_image(data[: len(data) // 2])


def test_non_image_bytes():
    with pytest.raises(ImageError, match="not an image"):
        load_image(b"this is a text file, not a picture\n" * 10)


def test_empty_bytes():
    with pytest.raises(ImageError, match="empty"):
        load_image(b"")


def test_missing_path_names_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "cat.png"
    with pytest.raises(ImageError) as info:
        load_image(missing)
    assert str(missing) in str(info.value)


def test_folder_and_url_and_wrong_type():
    with pytest.raises(ImageError, match="folder"):
        load_image(".")
    with pytest.raises(ImageError, match="URL"):
        load_image("https://example.com/cat.png")
    with pytest.raises(ImageError, match="dict"):
        load_image({"image": 1})


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


def test_huge_declared_size_is_refused_before_decoding():
    with pytest.raises(ImageError, match="too large|more than"):
        load_image(_png_header_only(100_000, 100_000))


def test_max_pixels_can_be_lowered():
    data = _png_bytes(Image.new("RGB", (100, 100)))
    with pytest.raises(ImageError, match="100 x 100"):
        load_image(data, max_pixels=1_000)
    assert load_image(data, max_pixels=10_000).size == (100, 100)
