"""Turn whatever a learner hands us into a clean RGB ``PIL.Image``.

Accepted: a path, a ``PIL.Image``, a numpy array (H x W, H x W x 3 or H x W x 4; uint8, uint16 or
float in [0, 1]) or the raw bytes of an image file. Every odd mode is converted on purpose:
CMYK -> RGB, 16-bit -> 8-bit by scaling (not clipping), palette / LA / RGBA -> composited on
white, EXIF orientation applied. Anything unreadable raises :class:`ImageError` saying why
(:class:`NotAnImageError` and :class:`ImageTooLargeError` for the two cases a server answers
differently), and so do images stretched beyond :data:`MAX_ASPECT_RATIO`. :func:`load_image_bytes`
is the entry point for untrusted uploads: a byte limit, a pixel limit checked before decoding, and
only the :data:`UPLOAD_FORMATS`, recognised by content.
"""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError, ImageTooLargeError, NotAnImageError

ImageLike = Union[str, os.PathLike, Image.Image, np.ndarray, bytes, bytearray]  # noqa: UP007 (a runtime alias)

#: Larger images are refused before decoding (decompression-bomb guard): 64 megapixels.
MAX_PIXELS = 64_000_000

#: Wider or taller images are refused (long side / short side). Every model's processor resizes
#: the short side to a few hundred pixels, so a 300000 x 1 strip (a 1 kB PNG) would become a
#: 100-megapixel-row tensor and exhaust memory; 20:1 still admits any panorama.
MAX_ASPECT_RATIO = 20

#: The formats :func:`load_image_bytes` accepts from untrusted uploads: common raster formats PIL
#: decodes itself (EPS, for one, would hand the data to Ghostscript).
UPLOAD_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")


def _composite_on_white(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB, keeping what a person would see."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr8 = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr8, mode="L").convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        top = 1.0 if arr.max() <= 1.0 else arr.max()
        return Image.fromarray(np.clip(arr / top * 255 + 0.5, 0, 255).astype(np.uint8), mode="L").convert("RGB")
    if img.mode == "P":
        # palette images may carry transparency in their info; RGBA keeps it
        return _composite_on_white(img.convert("RGBA"))
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return _composite_on_white(img)
    if img.mode == "RGB":
        return img
    return img.convert("RGB")  # CMYK, YCbCr, LAB, HSV, L, 1


def _from_array(arr: np.ndarray) -> Image.Image:
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)  # channels-first (C, H, W) as torch gives it
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        raise ImageError(
            f"An image array must be H x W, H x W x 3 or H x W x 4; got shape {arr.shape}. "
            "Reshape it or pass a file path instead."
        )
    if arr.dtype == np.uint8:
        out = arr
    elif arr.dtype == np.uint16:
        out = (arr.astype(np.float64) / 65535.0 * 255.0 + 0.5).astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ImageError("The image array contains NaN or infinite values; clean it before passing it in.")
        top = 1.0 if arr.max() <= 1.0 else 255.0
        out = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.integer):
        out = np.clip(arr, 0, 255).astype(np.uint8)
    else:
        raise ImageError(f"Image arrays of dtype {arr.dtype} are not supported; use uint8, uint16 or float.")
    mode = {2: "L", 3: "RGB", 4: "RGBA"}[out.ndim if out.ndim == 2 else out.shape[-1]]
    return Image.fromarray(out, mode=mode)


def _open_checked(fp, what: str, max_pixels: int, formats=None) -> Image.Image:
    try:
        img = Image.open(fp, formats=formats)  # recognised by its content (magic bytes), never by a name
    except UnidentifiedImageError:
        kinds = ", ".join(formats) if formats else "PNG, JPEG, WebP, BMP, TIFF, GIF ..."
        raise NotAnImageError(f"{what} is not an image PIL can read ({kinds}).") from None
    except Image.DecompressionBombError as err:
        raise ImageTooLargeError(f"{what} is too large to decode safely ({err}).") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as err:  # e.g. a JPEG cut inside its header
        raise ImageError(f"{what} is damaged or truncated and cannot be decoded ({err}).") from None
    if img.width * img.height > max_pixels:
        raise ImageTooLargeError(
            f"{what} is {img.width} x {img.height} pixels, more than the {max_pixels:,} allowed; "
            "downscale it first (models see it at a few hundred pixels anyway)."
        )
    try:
        img.load()
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as err:
        raise ImageError(f"{what} is damaged or truncated and cannot be decoded ({err}).") from None
    return img


def load_image(source: ImageLike, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Return ``source`` as an RGB ``PIL.Image`` with EXIF rotation applied.

    Raises :class:`ImageError` with the reason and a fix for missing files, non-images,
    truncated files, images over ``max_pixels`` and arrays of an unusable shape or dtype.
    """
    if isinstance(source, Image.Image):
        img = source
    elif isinstance(source, np.ndarray):
        img = _from_array(source)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        return load_image_bytes(source, max_pixels=max_pixels)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if str(source).startswith(("http://", "https://")):
            raise ImageError(f"{source!r} is a URL; download the image first and pass the file path or bytes.")
        if not path.exists():
            raise ImageError(f"No image file at {str(path)!r}; check the path (relative paths start at {os.getcwd()!r}).")
        if path.is_dir():
            raise ImageError(f"{str(path)!r} is a folder, not an image file.")
        with open(path, "rb") as fh:
            img = _open_checked(io.BytesIO(fh.read()), f"The file {str(path)!r}", max_pixels)
    else:
        raise ImageError(
            f"Cannot use a {type(source).__name__} as an image; pass a path, PIL image, numpy array or bytes."
        )
    return _finish(img, max_pixels)


def load_image_bytes(data: bytes | bytearray | memoryview, max_pixels: int = MAX_PIXELS, max_bytes: int | None = None,
                     formats: tuple[str, ...] | None = None) -> Image.Image:
    """Decode an image held in memory (an upload) into an RGB ``PIL.Image``; nothing touches disk.

    max_bytes: refuse longer data (:class:`ImageTooLargeError`); max_pixels: refuse larger
    declared dimensions before decoding (:class:`ImageTooLargeError`); formats: the PIL format
    names to accept, e.g. :data:`UPLOAD_FORMATS` (``None``: any PIL reads). Empty, truncated or
    damaged data raises :class:`ImageError`; data in no accepted format :class:`NotAnImageError`.
    """
    if len(data) == 0:
        raise ImageError("The image data is empty (0 bytes); upload or pass a real image file.")
    if max_bytes is not None and len(data) > max_bytes:
        raise ImageTooLargeError(f"The image data is {len(data):,} bytes, more than the {max_bytes:,} allowed; "
                                 "send a smaller file (models see it at a few hundred pixels anyway).")
    return _finish(_open_checked(io.BytesIO(bytes(data)), "The uploaded data", max_pixels, formats), max_pixels)


def _finish(img: Image.Image, max_pixels: int) -> Image.Image:
    """The checks and conversions every decoded image goes through: size, EXIF rotation, RGB."""
    if img.width * img.height > max_pixels:
        raise ImageTooLargeError(f"The image is {img.width} x {img.height} pixels, more than the {max_pixels:,} "
                                 "allowed; downscale it first.")
    if img.width == 0 or img.height == 0:
        raise ImageError("The image has zero width or height.")
    if max(img.width, img.height) > MAX_ASPECT_RATIO * min(img.width, img.height):
        raise ImageError(
            f"The image is {img.width} x {img.height} pixels, more than {MAX_ASPECT_RATIO}:1 between its sides: "
            "the models resize the short side to a few hundred pixels, which would blow the long side up beyond "
            "memory. Crop it into squarer pieces, or pad it to a squarer shape, first."
        )
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block should not cost the picture
        pass
    return _to_rgb(img)


def load_images(sources) -> list[Image.Image]:
    """:func:`load_image` over a list (or a single image, returned as a one-item list)."""
    if isinstance(sources, (str, os.PathLike, Image.Image, bytes, bytearray)) or (
        isinstance(sources, np.ndarray) and sources.ndim in (2, 3) and sources.dtype != object
    ):
        sources = [sources]
    return [load_image(s) for s in sources]
