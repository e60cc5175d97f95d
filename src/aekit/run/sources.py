"""Where a run is read from: a folder, a model shipped inside aekit, or a Hugging Face Hub repository.

Every command that reads a run, ``aekit.load`` and ``aekit serve`` name it with one string,
resolved here (:meth:`aekit.run.Run.open` calls :func:`resolve`)::

    runs/my-run                 a run folder
    pretrained:mnist-vae-2d     a run folder shipped in the package (aekit/zoo/NAME/)
    hf://ORG/NAME[@REV]         a model repository on the Hub: huggingface_hub downloads the files
                                aekit reads (never code) into its own cache, read like a folder

Pretrained and Hub models are read-only: what a command would write into a run folder (the
Gaussian mixture ``aekit sample --sampler gmm`` fits, ``aekit report``'s page, a figure's
default file) goes to the source's own folder in aekit's cache instead
(:meth:`Source.output_file`), named after the weights it was derived from.  A folder literally
named ``pretrained:x`` is reached as ``./pretrained:x``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import CheckpointError, ConfigError
from .layout import CONFIG_NAME, METRICS_NAME, RECONSTRUCTIONS_NAME, TEST_METRICS_NAME, WEIGHTS_NAME

PRETRAINED_PREFIX = "pretrained:"
HUB_PREFIX = "hf://"
# The models shipped in the package: one run folder per model.  Tests point this elsewhere.
ZOO_DIR = Path(__file__).resolve().parents[1] / "zoo"

# Only the files aekit reads are downloaded from a Hub repository: whatever else a repository
# holds (a pickle, a script, a large archive) never reaches the disk.
HUB_FILES = [CONFIG_NAME, WEIGHTS_NAME, TEST_METRICS_NAME, METRICS_NAME, RECONSTRUCTIONS_NAME, "README.md"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # a zoo name; no "/" or "..": it stays inside the zoo
# Hub repository ids: ORG/NAME, letters, digits, "-", "_", "." (the Hub's own rule, checked here so
# that a typo is named before any request)
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
# pathlib folds "hf://org/name" to "hf:/org/name": both spellings are accepted
_HUB_SPEC = re.compile(r"hf:/{1,2}(?P<repo>[^@]*)(?:@(?P<revision>.*))?", flags=re.DOTALL)


@dataclass(frozen=True)
class Source:
    """A resolved run source: the folder to read, and what to call it."""

    spec: str  # as the user would write it: "runs/x", "pretrained:mnist-vae-2d", "hf://org/name@v1"
    path: Path  # the folder holding config.json and the weights
    name: str  # what titles and listings call it
    read_only: bool  # pretrained and Hub models: nothing is written into `path`

    def output_dir(self) -> Path:
        """Where files derived from the run go: the run folder itself, or for a read-only source
        ``<aekit cache>/outputs/<name>-<digest of its weights>/`` (created on first use), so that
        a mixture fitted to one version of a model is never read back for another."""
        if not self.read_only:
            return self.path
        from ..data.fetch import cache_root  # the cache's one rule: $AEKIT_DATA_DIR or ~/.cache/aekit

        folder = cache_root() / "outputs" / f"{_safe(self.name)}-{_weights_digest(self.path)}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(f"{folder}: cannot create it ({err.strerror}) to hold what {self.spec} derives; "
                              "set AEKIT_DATA_DIR to a writable folder, or pass -o") from None
        return folder

    def output_file(self, name: str) -> Path:
        """The path a derived file ``name`` is written to (see :meth:`output_dir`)."""
        return self.output_dir() / name


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "run"


def _weights_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        path = folder / name
        if path.is_file():
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:12]


def is_source_spec(spec: str | Path) -> bool:
    """True when ``spec`` names a pretrained or Hub model rather than a folder."""
    text = str(spec)
    return text.startswith(PRETRAINED_PREFIX) or _HUB_SPEC.fullmatch(text) is not None


def resolve(spec: str | Path) -> Source:
    """The :class:`Source` that ``spec`` names; a pretrained name or Hub repository that cannot be
    had is one error naming it and the fix.  A folder is returned as is (read_config checks it)."""
    text = str(spec)
    if text.startswith(PRETRAINED_PREFIX):
        return _pretrained(text[len(PRETRAINED_PREFIX):])
    hub = _HUB_SPEC.fullmatch(text)
    if hub is not None:
        return _hub(hub["repo"], hub["revision"])
    path = Path(spec)
    return Source(spec=text, path=path, name=path.name or text, read_only=False)


# -- pretrained models ---------------------------------------------------------------------------

def pretrained_names() -> list[str]:
    """The models shipped in the package (folders of the zoo holding a config.json), sorted."""
    if not ZOO_DIR.is_dir():
        return []
    return sorted(p.name for p in ZOO_DIR.iterdir() if p.is_dir() and (p / CONFIG_NAME).is_file())


def pretrained_dir(name: str) -> Path:
    """The folder of the shipped model ``name``; an unknown name lists the known ones."""
    names = pretrained_names()
    if _NAME.fullmatch(name) is None or name not in names:
        known = ", ".join(names) if names else "none (this install ships no pretrained models)"
        raise CheckpointError(f"{PRETRAINED_PREFIX}{name}: no such pretrained model; shipped: {known} "
                              "(see `aekit pretrained`)")
    return ZOO_DIR / name


def _pretrained(name: str) -> Source:
    return Source(spec=PRETRAINED_PREFIX + name, path=pretrained_dir(name), name=name, read_only=True)


# -- the Hugging Face Hub --------------------------------------------------------------------------

# (repo id, revision) -> snapshot folder: one look-up per process, however often a command opens the run
_downloaded: dict[tuple[str, str | None], Path] = {}


def _hub(repo_id: str, revision: str | None) -> Source:
    spec = f"{HUB_PREFIX}{repo_id}" + (f"@{revision}" if revision is not None else "")
    if _HUB_ID.fullmatch(repo_id) is None or ".." in repo_id:
        raise ConfigError(f"{spec}: expected hf://ORG/NAME or hf://ORG/NAME@REVISION "
                          "(letters, digits, '-', '_', '.')")
    if revision is not None and (not revision.strip() or any(c.isspace() for c in revision)):
        raise ConfigError(f"{spec}: the revision after '@' must be a branch, tag or commit, without spaces")
    key = (repo_id, revision)
    if key not in _downloaded:
        _downloaded[key] = _download(spec, repo_id, revision)
    folder = _downloaded[key]
    if not (folder / CONFIG_NAME).is_file():
        raise CheckpointError(f"{spec}: the repository has no {CONFIG_NAME}; it is not an aekit model "
                              "(write one with `aekit export RUN DIR --format hub`)")
    return Source(spec=spec, path=folder, name=repo_id + (f"@{revision}" if revision else ""), read_only=True)


def _download(spec: str, repo_id: str, revision: str | None) -> Path:
    """The repository's snapshot in huggingface_hub's cache (``HF_HOME``, ``HF_HUB_CACHE``), with only
    :data:`HUB_FILES`; offline (``HF_HUB_OFFLINE=1``) a snapshot already there is used."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ConfigError(f'{spec} is downloaded with huggingface_hub, which is not installed: '
                          'pip install "aekit[hub]"') from None
    from .. import __version__

    try:
        folder = snapshot_download(repo_id, revision=revision, allow_patterns=HUB_FILES, library_name="aekit",
                                   library_version=__version__)
    except Exception as err:  # noqa: BLE001 - the client's error classes differ between its versions
        reason = " ".join(str(err).split())[:300] or type(err).__name__
        raise CheckpointError(f"{spec}: cannot download it ({type(err).__name__}: {reason}); check the name and "
                              "revision, the network, and for a private repository your token "
                              "(hf auth login)") from None
    return Path(folder)
