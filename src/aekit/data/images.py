"""Single image files: read one for inference, write one atomically.

Pillow opens a file lazily (the header only), so the pixel count is checked before any
pixel is decoded: a small PNG that claims 100,000 x 100,000 pixels (a decompression bomb)
is refused without allocating its 10 GB.
"""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import ConfigError, DataError
from ._files import atomic_path

# 50 megapixels: above any camera photo a user would feed an autoencoder, far below what
# would exhaust memory once decoded to float32 (50e6 * 3 channels * 4 bytes = 600 MB).
MAX_PIXELS = 50_000_000

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".pnm"}
)

# Modes that hold one grey value per pixel.  "I" and "I;16*" are 16-bit scans and PNGs:
# they are scaled by 65535, not clipped at 255 as Pillow's convert("L") would do.
GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
_WIDE_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})


def _one_line(err: BaseException) -> str:
    """An exception's text on one line (a library's message may hold newlines or raw bytes)."""
    return " ".join(str(err).split())[:200] or type(err).__name__


def check_channels(channels: int) -> None:
    if channels not in (1, 3):
        raise ConfigError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")


def open_image(path: str | Path, *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open ``path`` lazily (header only) and check its pixel count; DataError names the file."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            # aekit applies its own, lower limit just below; Pillow's warning would only repeat it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
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
    w, h = image.size
    if w * h > max_pixels:
        image.close()
        raise DataError(
            f"{path}: {w}x{h} = {w * h:,} pixels, above the limit of {max_pixels:,}; "
            "shrink the image first or raise max_pixels if you trust it"
        )
    return image


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

    Alpha is dropped (not composited): autoencoders here model the colour channels only.
    Multi-frame files (GIF, TIFF) give their first frame.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.load()
            if image.mode in _WIDE_MODES:
                # 16-bit grey: resize in float so no precision is lost, then scale to [0, 1].
                grey = image.convert("F")
                if size is not None:
                    grey = _resize_pil(grey, size)
                arr = np.clip(np.asarray(grey, dtype=np.float32) / 65535.0, 0.0, 1.0)[None]
                return np.repeat(arr, channels, axis=0) if channels == 3 else arr
            converted = image.convert("L" if channels == 1 else "RGB")
            if size is not None:
                converted = _resize_pil(converted, size)
            arr = np.asarray(converted, dtype=np.float32) / 255.0
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, struct.error,
            Image.DecompressionBombError) as e:
        # OSError: "image file is truncated" and friends; the others: some plugins' parse errors.
        raise DataError(f"{source}: cannot decode the image ({_one_line(e)}); the file is truncated or corrupt") from e
    return arr[None] if arr.ndim == 2 else np.ascontiguousarray(arr.transpose(2, 0, 1))


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


def save_image(image: torch.Tensor, path: str | Path) -> None:
    """Write a (C, H, W) tensor in [0, 1] (C = 1 or 3) to ``path``, format from the suffix; atomic.

    Values are clamped to [0, 1] and rounded to 8 bits.  The file appears complete or not at
    all (temporary file, then rename), so a viewer or a crash never sees half an image.
    """
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: unknown image extension {path.suffix!r}; use .png (lossless) or .jpg")
    if not isinstance(image, torch.Tensor) or image.ndim != 3 or image.shape[0] not in (1, 3):
        got = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise DataError(f"cannot save {path}: expected a tensor (C, H, W) with C 1 or 3, got {got}")
    x = image.detach().to("cpu", torch.float32)
    if not torch.isfinite(x).all():
        raise DataError(f"cannot save {path}: the image has NaN or infinite values")
    pixels = (x.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
    pil = Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels)
    with atomic_path(path) as tmp:
        pil.save(tmp, format=fmt)
