"""Finding a dataset's official files: a given folder, then the cache, then a download.

Every file is checked against a pinned SHA-256 before it is parsed, wherever it came from,
so a damaged or substituted file fails here with a clear message rather than as a strange
training curve.  Downloads use only the standard library, land in the cache through a
temporary file and a rename, and are checked before the rename: the cache never holds a
file that failed its checksum.
"""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import DataError
from ._files import atomic_path

log = logging.getLogger(__name__)

# Mirrors are tried in order.  Module-level so that tests (and users behind a proxy mirror)
# can replace them.
MIRRORS: dict[str, list[str]] = {
    "mnist": [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ],
    "fashion-mnist": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
    "cifar10": ["https://www.cs.toronto.edu/~kriz/"],
}

# SHA-256 of the official files.  MNIST and Fashion-MNIST: computed from byte-identical
# copies of the official files whose MD5s equal the published ones.  CIFAR-10: the published
# checksum is the MD5 c58f30108f718f92721af3b95e74349a; the SHA-256 below is the one Keras's
# cifar10.load_data and torchvision's datasets pin for the same tarball (170,498,071 bytes).
SHA256: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
    "cifar10": {
        "cifar-10-python.tar.gz": "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
    },
}

TIMEOUT_S = 30  # per connection attempt; a dead mirror should not hang a run for minutes
_CHUNK = 1 << 20


def cache_root() -> Path:
    """``$AEKIT_DATA_DIR`` if set, else ``~/.cache/aekit``."""
    env = os.environ.get("AEKIT_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "aekit"


def cache_dir(name: str) -> Path:
    """Where downloaded files of dataset ``name`` live."""
    return cache_root() / name


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def verify_file(path: Path, expected: str) -> None:
    """Raise DataError unless ``path``'s SHA-256 is ``expected``."""
    found = sha256_of(path)
    if found != expected:
        raise DataError(
            f"{path}: SHA-256 is {found}, expected {expected} (the official file); delete it so that "
            "aekit downloads a fresh copy, or pass verify=False (--no-verify) to use it as it is"
        )


def search_folders(name: str, data_dir: str | Path | None) -> list[Path]:
    """Folders searched for ``name``'s files, in order: data_dir, data_dir/name, the cache."""
    folders = []
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        if not root.is_dir():
            raise DataError(
                f"data folder {root} does not exist; pass --data-dir a folder holding the {name} files"
            )
        folders += [root, root / name]
    folders.append(cache_dir(name))
    return folders


def _download(url: str, dest: Path, expected: str) -> None:
    """Fetch ``url`` into ``dest`` through a temporary file, checking the SHA-256 before the rename."""
    log.info("downloading %s -> %s", url, dest)
    with atomic_path(dest) as tmp:
        h = hashlib.sha256()
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, open(tmp, "wb") as out:
            while chunk := response.read(_CHUNK):
                h.update(chunk)
                out.write(chunk)
        if h.hexdigest() != expected:
            # Raised inside the block, so atomic_path deletes the temporary file.
            raise ValueError(f"SHA-256 is {h.hexdigest()}, expected {expected}")


def download(name: str, filename: str, *, searched: list[Path]) -> Path:
    """Download ``filename`` of dataset ``name`` from its mirrors into the cache; returns its path."""
    dest = cache_dir(name) / filename
    expected = SHA256[name][filename]
    failures = []
    for mirror in MIRRORS[name]:
        url = mirror + filename
        try:
            _download(url, dest, expected)
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", None) or e
            log.warning("could not download %s: %s", url, reason)
            failures.append(f"{url} ({reason})")
            continue
        return dest
    raise DataError(
        f"cannot get {name} file {filename}: tried {'; '.join(failures)}; without a network, put the "
        f"official files in {cache_dir(name)} or pass --data-dir FOLDER holding them "
        f"(searched {', '.join(str(p) for p in searched)})"
    )


def locate_files(
    name: str,
    filenames: list[str],
    *,
    data_dir: str | Path | None = None,
    download_missing: bool = True,
    verify: bool = True,
) -> dict[str, Path]:
    """Paths of ``name``'s official ``filenames``: found in data_dir (or data_dir/name), the
    cache, or downloaded into the cache.

    A file found on disk whose SHA-256 differs from the pinned one raises DataError, naming
    both checksums and the fix (delete it to download again, or ``verify=False`` to trust it:
    a re-compressed copy such as Debian's ``dataset-fashion-mnist`` has the same pixels but
    other checksums).  Downloads are always verified.
    """
    searched = search_folders(name, data_dir)
    paths: dict[str, Path] = {}
    for filename in filenames:
        found = next((folder / filename for folder in searched if (folder / filename).is_file()), None)
        if found is not None:
            if verify:
                verify_file(found, SHA256[name][filename])
            paths[filename] = found
        elif download_missing:
            paths[filename] = download(name, filename, searched=searched)
        else:
            raise DataError(
                f"{name} file {filename} not found in {', '.join(str(p) for p in searched)}; put the "
                "official files there, pass --data-dir FOLDER holding them, or allow downloading"
            )
    log.debug("%s files: %s", name, paths)
    return paths
