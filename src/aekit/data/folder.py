"""A folder of images as a dataset: ``folder:PATH``.

Layout decides labels: if every image sits inside a subfolder of PATH, the first-level
subfolder names (sorted) are the classes, as in torchvision's ImageFolder; if any image
sits directly in PATH, the whole folder is one unlabelled set.  Hidden files and folders
(names starting with ".") and files without an image suffix are ignored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from .images import GREY_MODES, IMAGE_SUFFIXES, MAX_PIXELS, decode_image, open_image, oriented_size

log = logging.getLogger(__name__)

MIN_IMAGES = 3  # one each for train, val and test


@dataclass
class FolderScan:
    files: list[Path]
    labels: list[int] | None  # None when the folder is unlabelled
    classes: list[str]


def scan_folder(root: Path) -> FolderScan:
    """The image files under ``root`` (sorted), with class labels when the layout has them."""
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; pass folder:PATH with PATH a folder of images")
    files = sorted(
        p
        for p in root.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
        and p.is_file()
    )
    if not files:
        raise DataError(
            f"{root} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))}); put images in it, "
            "or in one subfolder per class"
        )
    top = [p.relative_to(root).parts for p in files]
    if any(len(parts) == 1 for parts in top):
        if any(len(parts) > 1 for parts in top):
            log.info(
                "%s has images both directly in it and in subfolders: loading all of them unlabelled", root
            )
        return FolderScan(files, None, [])
    classes = sorted({parts[0] for parts in top})
    index = {name: i for i, name in enumerate(classes)}
    return FolderScan(files, [index[parts[0]] for parts in top], classes)


def _skip(path: Path, error: DataError, *, strict: bool, skipped: list[str]) -> None:
    if strict:
        raise DataError(
            f"{error} (strict mode: remove the file, or load without strict to skip it)"
        ) from error
    log.debug("skipping %s: %s", path, error)
    skipped.append(path.name)


@dataclass
class FolderPlan:
    """What the files of a folder will decode to, known from their headers alone.

    Both ways of reading a folder use it: :func:`load_folder` decodes every file into one
    array, :class:`~aekit.data.stream.StreamingImageSet` decodes them one at a time in
    DataLoader workers.  Sharing the plan (and :func:`decode_file`) keeps the two
    pixel-identical: the same files, the same size, the same channels.
    """

    root: Path
    files: list[Path]  # readable by header, in scan order
    labels: np.ndarray | None  # (N,) int64, or None when unlabelled
    classes: list[str]
    channels: int
    size: tuple[int, int]  # (H, W) of every decoded image
    skipped: list[str]  # names of files whose header could not be read
    max_pixels: int = MAX_PIXELS

    @property
    def decoded_bytes(self) -> int:
        """Memory the whole folder takes once decoded to float32."""
        return len(self.files) * self.channels * self.size[0] * self.size[1] * 4


def plan_folder(
    root: str | Path,
    *,
    image_size: int | None = None,
    channels: int | None = None,
    strict: bool = False,
    max_pixels: int = MAX_PIXELS,
) -> FolderPlan:
    """Scan ``root`` and read every image's header (no pixels) to fix the output size and channels.

    Size: ``image_size`` squared if given, else the common size of all images (differing
    sizes raise DataError asking for --image-size).  Channels: ``channels`` if given, else 1
    when every image is grey, else 3.  Files whose header cannot be read are skipped (listed in
    ``skipped``; DataError instead when ``strict``).
    """
    root = Path(root).expanduser()
    scan = scan_folder(root)
    skipped: list[str] = []
    headers: list[tuple[int, Path, tuple[int, int], str]] = []
    for i, path in enumerate(scan.files):
        try:
            with open_image(path, max_pixels=max_pixels) as image:
                # upright, as decoding returns it: a phone photo is stored on its side
                headers.append((i, path, oriented_size(image), image.mode))
        except DataError as e:
            _skip(path, e, strict=strict, skipped=skipped)
    if not headers:
        raise DataError(f"{root}: none of its {len(scan.files)} image files could be read; check the files")

    if image_size is not None:
        size = (image_size, image_size)
    else:
        sizes = {hw for _, _, hw, _ in headers}
        if len(sizes) > 1:
            (h1, w1), (h2, w2) = sorted(sizes)[:2]
            raise DataError(
                f"images in {root} have {len(sizes)} different sizes (e.g. {h1}x{w1} and {h2}x{w2}); "
                "pass --image-size N to resize them all to N x N"
            )
        size = headers[0][2]
    if channels is None:
        channels = 1 if all(mode in GREY_MODES for *_, mode in headers) else 3
    labels = None if scan.labels is None else np.asarray([scan.labels[i] for i, *_ in headers], dtype=np.int64)
    return FolderPlan(root, [path for _, path, _, _ in headers], labels, scan.classes, channels, size,
                      skipped, max_pixels)


def decode_file(path: str | Path, *, channels: int, size: tuple[int, int], max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """One image file as float32 (channels, H, W) in [0, 1]: the per-file step of every folder reader."""
    with open_image(path, max_pixels=max_pixels) as image:
        return decode_image(image, channels=channels, size=size, source=str(path))


def warn_skipped(root: Path, skipped: list[str]) -> None:
    if skipped:
        shown = ", ".join(skipped[:5]) + (", ..." if len(skipped) > 5 else "")
        log.warning("skipped %d unreadable image file(s) in %s: %s", len(skipped), root, shown)


def check_enough(root: Path, kept: int, skipped: int) -> None:
    if kept < MIN_IMAGES:
        raise DataError(
            f"{root}: only {kept} readable image(s) (skipped {skipped}); "
            f"need at least {MIN_IMAGES} to split into train, val and test"
        )


def load_folder(
    root: str | Path,
    *,
    image_size: int | None = None,
    channels: int | None = None,
    strict: bool = False,
    max_pixels: int = MAX_PIXELS,
) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """Read every image under ``root``: float32 (N, C, H, W) in [0, 1], labels (N,) or None, classes.

    Size and channels are decided as in :func:`plan_folder`.  Unreadable or oversized images
    are skipped with one logged warning giving their count (DataError instead when
    ``strict``); a folder with no readable image, or fewer than three, raises DataError.
    """
    plan = plan_folder(root, image_size=image_size, channels=channels, strict=strict, max_pixels=max_pixels)
    images, labels = decode_plan(plan, strict=strict)
    return images, labels, plan.classes


def decode_plan(plan: FolderPlan, *, strict: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode every file of ``plan`` into one preallocated array; files that fail now
    (truncated data behind a good header) are skipped too."""
    skipped = list(plan.skipped)
    images = np.empty((len(plan.files), plan.channels, *plan.size), dtype=np.float32)
    kept: list[int] = []
    for i, path in enumerate(plan.files):
        try:
            images[len(kept)] = decode_file(path, channels=plan.channels, size=plan.size, max_pixels=plan.max_pixels)
            kept.append(i)
        except DataError as e:
            _skip(path, e, strict=strict, skipped=skipped)
    warn_skipped(plan.root, skipped)
    check_enough(plan.root, len(kept), len(skipped))
    labels = None if plan.labels is None else plan.labels[kept]
    return images[: len(kept)], labels


def parse_folder_name(name: str) -> Path:
    """``folder:PATH`` -> PATH."""
    path = name.split(":", 1)[1]
    if not path:
        raise ConfigError("folder dataset needs a path: folder:PATH, e.g. folder:./photos")
    return Path(path).expanduser()
