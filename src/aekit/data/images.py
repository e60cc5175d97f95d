"""Single image files: read one for inference, write one atomically.

Pillow opens a file lazily (the header only), so the pixel count is checked before any
pixel is decoded: a small PNG that claims 100,000 x 100,000 pixels (a decompression bomb)
is refused without allocating its 10 GB.  Icons (.ico) are the exception Pillow makes (it
decodes one on opening), so their directory and each picture's own header are read first.

Whatever the file holds comes out as float32 in [0, 1], or a DataError naming the file:
8-bit, 16-bit and 32-bit integer and float pixels (see :func:`decode_image` for how each is
scaled), palettes, CMYK, the first frame of an animation, a phone photo turned upright by its
EXIF orientation.
"""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import IcoImagePlugin, Image, ImageOps, UnidentifiedImageError

from ..errors import ConfigError, DataError
from ..fileio import atomic_write_with

# 50 megapixels: above any camera photo a user would feed an autoencoder, far below what
# would exhaust memory once decoded to float32 (50e6 * 3 channels * 4 bytes = 600 MB).
MAX_PIXELS = 50_000_000

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".pnm", ".ico"}
)

# Modes that hold one grey value per pixel.  "I;16*" (16-bit scans and PNGs), "I" (32-bit
# integers) and "F" (32-bit floats) are scaled to [0, 1] by decode_image, not clipped at 255
# (or, for floats in [0, 1], truncated to 0) as Pillow's convert("L") would do.
GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
_WIDE_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N", "F"})

_ICO_MAGIC = b"\x00\x00\x01\x00"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_ORIENTATION = 0x0112  # EXIF tag: how the camera was held; 1 is upright
_READ_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, KeyError, struct.error,
                ZeroDivisionError, Image.DecompressionBombError)


def _one_line(err: BaseException) -> str:
    """An exception's text on one line (a library's message may hold newlines or raw bytes)."""
    return " ".join(str(err).split())[:200] or type(err).__name__


def check_channels(channels: int) -> None:
    if channels not in (1, 3):
        raise ConfigError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")


def open_image(path: str | Path, *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open ``path`` lazily (header only) and check its pixel count; DataError names the file.

    An icon (.ico) gives its largest picture (Pillow picks by the directory, which cannot say
    more than 256 pixels), decoded here once its own header has passed the same check.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: a folder, not an image file; pass the image files in it (e.g. {path}/*.png)")
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except FileNotFoundError as e:
        raise DataError(f"{path}: no such file") from e
    except OSError as e:
        raise DataError(f"cannot read {path}: {_one_line(e)}") from e
    if not head:
        raise DataError(f"{path}: the file is empty (0 bytes); it holds no image")
    if head[:4] == _ICO_MAGIC:
        return _open_ico(path, max_pixels)
    try:
        with warnings.catch_warnings():
            # aekit applies its own, lower limit just below; Pillow's warning would only repeat it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            warnings.simplefilter("ignore", UserWarning)  # e.g. "Corrupt EXIF data": decoding says more
            image = Image.open(path)
    except FileNotFoundError as e:
        raise DataError(f"{path}: no such file") from e
    except UnidentifiedImageError as e:
        raise DataError(f"{path}: not an image Pillow can read (PNG, JPEG, BMP, ...); check the file") from e
    except Image.DecompressionBombError as e:
        raise DataError(f"{path}: image too large to decode safely ({e})") from e
    except OSError as e:
        raise DataError(f"cannot read {path}: {_one_line(e)}") from e
    except (ValueError, SyntaxError, EOFError, IndexError, TypeError, struct.error) as e:
        # Some plugins' header parsers let these escape Image.open (the PPM one raises ValueError
        # for a header token that is not a number); each means "not an image Pillow can read".
        raise DataError(f"{path}: not an image Pillow can read ({_one_line(e)}); check the file") from e
    try:
        _check_pixels(path, image.size, max_pixels)
    except DataError:
        image.close()
        raise
    return image


def _check_pixels(path, size: tuple[int, int], max_pixels: int) -> None:
    w, h = size
    if w < 1 or h < 1:
        raise DataError(f"{path}: the header says {w}x{h} pixels; the file is corrupt")
    if w * h > max_pixels:
        raise DataError(
            f"{path}: {w}x{h} = {w * h:,} pixels, above the limit of {max_pixels:,}; "
            "shrink the image first or raise max_pixels if you trust it"
        )


def _ico_entry_size(fh, entry) -> tuple[int, int]:
    """An icon picture's true (width, height), from its own header (PNG or bitmap).

    The directory holds one byte per side, so it says 256 for any picture of 256 or more.
    """
    fh.seek(entry.offset)
    head = fh.read(24)
    if head[:8] == _PNG_MAGIC and head[12:16] == b"IHDR":
        return struct.unpack(">II", head[16:24])
    if len(head) >= 12 and struct.unpack("<I", head[:4])[0] >= 40:  # BITMAPINFOHEADER
        w, h = struct.unpack("<ii", head[4:12])
        return abs(w), abs(h) // 2  # the height counts the colour bitmap and its mask
    return entry.dim


def _open_ico(path: Path, max_pixels: int) -> Image.Image:
    """The largest picture of an icon file, decoded after its header passed the pixel check."""
    try:
        with open(path, "rb") as fh, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            warnings.simplefilter("ignore", UserWarning)
            ico = IcoImagePlugin.IcoFile(fh)
            if not ico.entry:
                raise DataError(f"{path}: an icon file that holds no pictures; check the file")
            sizes = [_ico_entry_size(fh, entry) for entry in ico.entry]
            best = max(range(len(sizes)), key=lambda i: (sizes[i][0] * sizes[i][1], ico.entry[i].color_depth, -i))
            _check_pixels(path, sizes[best], max_pixels)
            image = ico.frame(best)
            image.load()
    except DataError:
        raise
    except _READ_ERRORS as e:
        raise DataError(f"{path}: cannot read the icon ({_one_line(e)}); the file is truncated or corrupt") from e
    _check_pixels(path, image.size, max_pixels)  # a bitmap's header may have understated it
    return image


def oriented_size(image: Image.Image) -> tuple[int, int]:
    """(height, width) of ``image`` as :func:`decode_image` returns it: upright by its EXIF
    orientation (a phone photo held upright is stored on its side, with orientation 6 or 8)."""
    w, h = image.size
    return (w, h) if _orientation(image) in (5, 6, 7, 8) else (h, w)


def _orientation(image: Image.Image) -> int:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            value = image.getexif().get(_ORIENTATION, 1)
    except _READ_ERRORS:  # unreadable EXIF: the picture is still there, taken as stored
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _resize_pil(image: Image.Image, size_hw: tuple[int, int]) -> Image.Image:
    h, w = size_hw
    if image.size == (w, h):
        return image
    # BOX is exact area averaging when shrinking (the same as the tensor path's "area");
    # enlarging with BOX would only repeat pixels, so use bicubic there.
    shrinking = w <= image.width and h <= image.height
    return image.resize((w, h), Image.Resampling.BOX if shrinking else Image.Resampling.BICUBIC)


def decode_image(
    image: Image.Image, *, channels: int, size: tuple[int, int] | None, source: str
) -> np.ndarray:
    """Decode an opened image to float32 (channels, H, W) in [0, 1], resized to ``size`` (H, W).

    How pixels become [0, 1]:

    - 8-bit (grey, RGB, palette, CMYK, ...): divided by 255, after Pillow's conversion to grey
      (ITU-R 601-2 luma) or RGB.  Alpha is dropped (not composited): autoencoders here model
      the colour channels only.
    - 16-bit grey ("I;16", "I;16B", ...): divided by 65535.
    - 32-bit integers ("I"): divided by 65535 when every value lies in 0..65535 (16-bit data
      that Pillow hands over as "I"); otherwise min-max scaled over the image's own range,
      since dividing by 2**32 would turn any real picture black.
    - 32-bit floats ("F", e.g. float TIFFs): kept when every value lies in [0, 1]; otherwise
      min-max scaled over the image's range.  A constant image outside [0, 1] is clipped.
      NaN or infinite values raise DataError.

    The picture is turned upright by its EXIF orientation first.  Multi-frame files (GIF,
    WebP, TIFF) give their first frame.  A truncated or corrupt file raises DataError naming
    ``source``.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            warnings.simplefilter("ignore", UserWarning)  # corrupt EXIF, odd palettes: the pixels still come
            image.load()
            if _orientation(image) != 1:
                image = ImageOps.exif_transpose(image)
    except _READ_ERRORS as e:
        # OSError: "image file is truncated" and friends; the others: some plugins' parse errors.
        raise DataError(f"{source}: cannot decode the image ({_one_line(e)}); the file is truncated or corrupt") from e
    if image.mode in _WIDE_MODES:
        grey = _wide_to_unit(image, source)  # (H, W) float32 in [0, 1]
        if size is not None:
            grey = np.asarray(_resize_pil(Image.fromarray(grey), size), dtype=np.float32)
        arr = np.clip(grey, 0.0, 1.0)[None]
        return np.repeat(arr, channels, axis=0) if channels == 3 else np.ascontiguousarray(arr)
    try:
        converted = _convert(image, "L" if channels == 1 else "RGB")
        if size is not None:
            converted = _resize_pil(converted, size)
        arr = np.asarray(converted, dtype=np.float32) / 255.0
    except _READ_ERRORS as e:
        raise DataError(f"{source}: cannot convert its {image.mode} pixels to {'grey' if channels == 1 else 'RGB'} "
                        f"({_one_line(e)}); save the image as an 8-bit PNG") from e
    return arr[None] if arr.ndim == 2 else np.ascontiguousarray(arr.transpose(2, 0, 1))


def _convert(image: Image.Image, mode: str) -> Image.Image:
    """``image`` in ``mode`` ("L" or "RGB"), by way of RGBA where Pillow has no direct path."""
    if image.mode == mode:
        return image
    if image.mode in ("P", "PA"):
        # A palette's transparency would only raise a warning here; alpha is dropped anyway.
        image = image.convert("RGBA")
    try:
        return image.convert(mode)
    except ValueError:  # e.g. "La" (premultiplied) has no direct conversion to L
        return image.convert("RGBA").convert(mode)


def _wide_to_unit(image: Image.Image, source: str) -> np.ndarray:
    """A 16-bit, 32-bit integer or float grey image as (H, W) float32 in [0, 1] (see decode_image)."""
    try:
        raw = np.asarray(image)
    except (ValueError, TypeError):  # a byte order numpy has no name for: let Pillow widen it
        raw = np.asarray(image.convert("F"))
    arr = raw.astype(np.float32)
    if image.mode.startswith("I;16"):
        return arr / 65535.0
    if image.mode == "F" and not np.isfinite(arr).all():
        raise DataError(f"{source}: the float image holds NaN or infinite values; replace them and save it again")
    lo, hi = float(arr.min()), float(arr.max())
    if image.mode == "I" and lo >= 0 and hi <= 65535:
        return arr / 65535.0
    if image.mode == "F" and lo >= 0 and hi <= 1:
        return arr
    if hi == lo:
        return np.clip(arr, 0.0, 1.0)
    # In float64: the range of 32-bit integers overflows nothing, and no precision is lost.
    return ((raw.astype(np.float64) - lo) / (hi - lo)).astype(np.float32)


def load_image(
    path: str | Path, *, channels: int, size: tuple[int, int] | None = None, max_pixels: int = MAX_PIXELS
) -> torch.Tensor:
    """Read one image file as a float32 tensor (channels, H, W) in [0, 1].

    ``channels``: 1 (grey, ITU-R 601-2 luma) or 3 (RGB).  ``size``: (H, W) to resize to,
    area-averaged when shrinking; None keeps the file's size.  A missing file, a non-image,
    a truncated image or one above ``max_pixels`` raises DataError naming the file.
    """
    check_channels(channels)
    if size is not None and (len(size) != 2 or min(size) < 1):
        raise ConfigError(f"size must be (height, width) with both at least 1, got {size}")
    with open_image(path, max_pixels=max_pixels) as image:
        arr = decode_image(image, channels=channels, size=tuple(size) if size else None, source=str(path))
    return torch.from_numpy(arr)


# The most pixels per side that a format's files (or Pillow's writer for them) can hold.
MAX_SIDE_BY_FORMAT = {"JPEG": 65_500, "WEBP": 16_383, "GIF": 65_535, "ICO": 256}


def check_savable(path: str | Path, size_hw: tuple[int, int]) -> str:
    """The Pillow format ``path``'s suffix names, if it can hold an image of ``size_hw`` (H, W).

    Raises DataError naming the file otherwise, so that a command can check every output
    before it writes any.
    """
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise DataError(f"{path}: unknown image extension {path.suffix!r}; use .png (lossless) or .jpg")
    h, w = size_hw
    most = MAX_SIDE_BY_FORMAT.get(fmt)
    if most is not None and max(h, w) > most:
        raise DataError(f"{path}: {w}x{h} pixels do not fit the {fmt} format (at most {most} pixels a side); "
                        "convert the input to PNG first")
    return fmt


def save_image(image: torch.Tensor, path: str | Path, *, overwrite: bool = True) -> None:
    """Write a (C, H, W) tensor in [0, 1] (C = 1 or 3) to ``path``, format from the suffix; atomic.

    Values are clamped to [0, 1] and rounded to 8 bits.  The file appears complete or not at
    all (temporary file, then rename), so a viewer or a crash never sees half an image; it gets
    the permissions of any new file (the umask's).  ``overwrite=False`` never replaces an
    existing ``path`` (FileExistsError).  An icon keeps the image's own size (Pillow would
    otherwise write squares of 16 to 256 pixels).
    """
    path = Path(path)
    if not isinstance(image, torch.Tensor) or image.ndim != 3 or image.shape[0] not in (1, 3):
        check_savable(path, (1, 1))
        got = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise DataError(f"cannot save {path}: expected a tensor (C, H, W) with C 1 or 3, got {got}")
    fmt = check_savable(path, tuple(image.shape[1:]))
    x = image.detach().to("cpu", torch.float32)
    if not all(bool(torch.isfinite(band).all()) for band in x.split(256, dim=1)):
        raise DataError(f"cannot save {path}: the image has NaN or infinite values")
    pixels = _to_uint8(x)  # (H, W, C)
    pil = Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels)
    options = {"sizes": [pil.size]} if fmt == "ICO" else {}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_with(path, lambda tmp: pil.save(tmp, format=fmt, **options), overwrite=overwrite,
                      suffix=path.suffix)


def _to_uint8(x: torch.Tensor, rows: int = 256) -> np.ndarray:
    """(C, H, W) float in [0, 1] -> (H, W, C) uint8, a band of rows at a time, so a large
    image costs its 8-bit copy and not four float ones."""
    c, h, w = x.shape
    out = np.empty((h, w, c), dtype=np.uint8)
    for top in range(0, h, rows):
        band = x[:, top:top + rows]
        out[top:top + rows] = (band.clamp(0.0, 1.0) * 255.0).round_().to(torch.uint8).permute(1, 2, 0).numpy()
    return out
