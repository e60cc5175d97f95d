"""Tensors that the figures show: what a model makes of images and of chosen latent points.

Every function takes a model (through the :class:`~aekit.models.base.Autoencoder` contract
only) and tensors, runs on the model's device, and returns CPU tensors, so the CLI, the run
report and a notebook can draw the same things.  Random draws come from a CPU generator, so a
seed gives the same picture on any device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from scipy.special import ndtri
from torch import Tensor

from ..errors import ConfigError
from .space import Projection, empirical_samples, encode_dataset, fit_projection, interpolate, tsne_2d

# The lesson's manifold spans the 5%..95% quantiles of N(0, 1): the tails beyond hold too few
# codes for their decodes to mean much.
MANIFOLD_SPAN = (0.05, 0.95)

# Noise on the latent grows in multiples of the codes' own spread, so the same levels read the
# same for a VAE (codes near unit scale) and for a plain AE (codes at any scale).
LATENT_NOISE_LEVELS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _labels_for(model, labels: Tensor | None, n: int) -> Tensor | None:
    """Labels to pass a model: only conditional models take them, and those need them."""
    if not model.conditional:
        return None
    if labels is None:
        raise ConfigError(f"{model.registry_name} is conditional and these images have no labels; "
                          "use a labelled dataset")
    return labels[:n]


def check_label(model, label: int | None) -> None:
    """A label is for conditional models, and must name one of their classes."""
    if label is None:
        return
    if not model.conditional:
        raise ConfigError(f"--label {label}: {model.registry_name} is not conditional, so it takes no label; "
                          "drop --label or use a conditional model (cvae)")
    if not 0 <= label < model.num_classes:
        raise ConfigError(f"--label {label} is out of range; {model.registry_name} knows labels 0..{model.num_classes - 1}")


@torch.inference_mode()
def decode_latents(model, z: Tensor, labels: Tensor | None = None, *, batch_size: int = 512) -> Tensor:
    """Decode latents in batches on the model's device.  (N, D) -> (N, C, H, W) on the CPU"""
    model.eval()
    device = _device(model)
    out = []
    for start in range(0, z.shape[0], batch_size):
        y = labels[start:start + batch_size].to(device) if labels is not None else None
        out.append(model.decode(z[start:start + batch_size].to(device).float(), y).float().cpu())
    return torch.cat(out) if out else torch.empty(0, *model.out_shape)


@torch.inference_mode()
def model_outputs(model, task, images: Tensor, labels: Tensor | None = None, *,
                  generator: torch.Generator | None = None, batch_size: int = 512) -> tuple[Tensor, Tensor]:
    """The model's input (what ``task`` makes of the clean images) and its output.  Both (N, ...)

    The output is decoded from the posterior's mode, so it is deterministic; denoising noise
    comes from ``generator``, drawn on the CPU.
    """
    model.eval()
    device = _device(model)
    inputs, outputs = [], []
    for start in range(0, images.shape[0], batch_size):
        clean = images[start:start + batch_size]
        y = _labels_for(model, None if labels is None else labels[start:start + batch_size], clean.shape[0])
        x = task.make_batch(clean, y, generator).x
        inputs.append(x)
        outputs.append(model.reconstruct(x.to(device), None if y is None else y.to(device)).float().cpu())
    return torch.cat(inputs), torch.cat(outputs)


def before_after(model, task, images: Tensor, labels: Tensor | None = None, *,
                 generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Rows for a reconstruction figure: {row title: (N, C, H, W)}.

    Plain reconstruction shows originals above reconstructions; denoising and super-resolution
    also show what the model was given (small inputs enlarged by repeating pixels, so that the
    rows line up and nothing is smoothed on the model's behalf).
    """
    x, out = model_outputs(model, task, images, labels, generator=generator)
    if task.target_is_input:
        return {"original": images, "reconstructed": out}
    shown = torch.nn.functional.interpolate(x, size=images.shape[-2:], mode="nearest")
    return {"clean": images, "model input": shown, "output": out}


def reconstruction_errors(model, task, images: Tensor, labels: Tensor | None = None, *,
                          generator: torch.Generator | None = None) -> Tensor:
    """Sum of squared errors of each output against its clean image.  (N,) float64"""
    from ..eval.metrics import sse_per_image

    _, out = model_outputs(model, task, images, labels, generator=generator)
    return sse_per_image(out, images)


def code_scale(codes: Tensor) -> float:
    """The codes' typical spread along one latent axis (mean over axes of the std)."""
    if codes.shape[0] < 2:
        raise ConfigError(f"need at least 2 encoded images to measure the codes' spread, got {codes.shape[0]}")
    return float(codes.float().std(dim=0).mean())


# -- generation ---------------------------------------------------------------------------------

@torch.inference_mode()
def sample_panels(model, n: int, *, codes: Tensor | None = None, label: int | None = None,
                  temperature: float = 1.0, generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Generated images, {panel title: (n, C, H, W)}.

    A generative model (VAE, AAE, CVAE) decodes draws from its prior.  A plain AE has no prior,
    so it gets two panels, the lesson's point: draws from a Gaussian fitted to its ``codes``
    (where encoded data lies) decode to plausible images, while draws from an isotropic
    Gaussian of the codes' own scale mostly land where no image was encoded and decode to blobs.
    """
    if n < 1:
        raise ConfigError(f"-n must be at least 1, got {n}")
    if temperature <= 0:
        raise ConfigError(f"--temperature must be positive, got {temperature}")
    check_label(model, label)
    t = f", temperature {temperature:g}" if temperature != 1 else ""
    if model.generative:
        images = model.sample(n, label=label, temperature=temperature, generator=generator).float().cpu()
        if model.conditional:
            which = f"label {label}" if label is not None else "labels 0, 1, 2, ... in turn"
            return {f"prior {model.describe_prior()}{t}, {which}": images}
        return {f"prior {model.describe_prior()}{t}": images}
    if codes is None:
        raise ConfigError(f"{model.registry_name} has no prior: pass the encoded dataset (codes) to sample from")
    fitted = empirical_samples(codes, n, generator=generator, temperature=temperature)  # (n, D)
    scale = code_scale(codes)
    random = torch.randn(n, codes.shape[1], generator=generator) * scale * temperature  # (n, D)
    return {
        f"where the codes lie: N(mean, cov) of {codes.shape[0]} encoded images{t}": decode_latents(model, fitted),
        f"random codes: N(0, s\u00b2I), s = codes' std = {scale:.3g}{t}": decode_latents(model, random),
    }


# -- the latent space as a map ------------------------------------------------------------------

@dataclass
class Map2D:
    """Codes placed in a plane, with words for the axes."""

    points: Tensor  # (N, 2)
    description: str  # what the plane is, for a title
    xlabel: str
    ylabel: str


def project_codes(codes: Tensor, method: str = "pca", *, seed: int = 0) -> Map2D:
    """Codes (N, D) in 2-D: themselves for D <= 2, else PCA or t-SNE."""
    if method not in ("pca", "tsne"):
        raise ConfigError(f"unknown projection {method!r}; use --method pca or tsne")
    if codes.shape[1] <= 2:
        proj = fit_projection(codes)
        return Map2D(proj.to2d(codes), proj.describe(), "z0", "z1" if codes.shape[1] == 2 else "(none)")
    if method == "tsne":
        if codes.shape[0] < 10:
            raise ConfigError(f"t-SNE needs at least 10 points, got {codes.shape[0]}; raise -n")
        return Map2D(tsne_2d(codes, seed=seed), f"t-SNE of the {codes.shape[1]}-D latent means (distances are not kept)",
                     "t-SNE 1", "t-SNE 2")
    proj = fit_projection(codes)
    return Map2D(proj.to2d(codes), f"PCA: {proj.describe()}", "principal axis 1", "principal axis 2")


@dataclass
class ManifoldGrid:
    """Latent points on a side x side grid, and where each row and column sits in the 2-D view."""

    latents: Tensor  # (side * side, D), row-major; row 0 is the top of the picture
    xs: Tensor  # (side,) first coordinate of each column, left to right
    ys: Tensor  # (side,) second coordinate of each row, top to bottom (decreasing)
    description: str
    xlabel: str
    ylabel: str


def _grid(xs: Tensor, ys: Tensor) -> Tensor:
    """Points (x, y) row by row: row r holds ys[r] with every x in turn.  (len(ys) * len(xs), 2)"""
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")  # (rows, cols) each
    return torch.stack([xx, yy], dim=-1).reshape(-1, 2)


def manifold_latents(side: int, *, latent_dim: int, variational: bool, codes: Tensor | None = None,
                     projection: Projection | None = None) -> ManifoldGrid:
    """A grid over the latent space, at Gaussian quantiles 5%..95% along two axes.

    For a 2-D VAE the axes are the latent's own and the quantiles are the prior's, as in the
    lesson (``norm.ppf(np.linspace(0.05, 0.95, n))``).  Otherwise the grid lies on the plane
    of the two principal axes of the encoded ``codes`` (:meth:`Projection.from2d`), at the
    quantiles of a Gaussian with the codes' mean and spread along each axis, so it covers where
    the data is whatever the scale of a plain AE's codes.
    """
    if side < 2:
        raise ConfigError(f"a manifold grid needs at least 2 points a side, got {side}")
    q = torch.from_numpy(ndtri(torch.linspace(*MANIFOLD_SPAN, side, dtype=torch.float64).numpy())).float()  # (side,)
    if variational and latent_dim == 2:
        xs, ys = q, q.flip(0)
        grid = _grid(xs, ys)
        return ManifoldGrid(grid, xs, ys, "the 2-D latent at the prior's quantiles 5%..95%", "z0", "z1")
    if codes is None:
        raise ConfigError("a manifold over a plain or many-dimensional latent needs encoded data (codes)")
    proj = projection or fit_projection(codes)
    p = proj.to2d(codes)  # (N, 2)
    mu, sd = p.mean(dim=0), p.std(dim=0)
    xs, ys = mu[0] + sd[0] * q, (mu[1] + sd[1] * q).flip(0)
    grid = _grid(xs, ys)
    if proj.method == "identity":
        where, xl, yl = f"the {latent_dim}-D latent", "z0", "z1"
    else:
        where, xl, yl = proj.describe(), "principal axis 1", "principal axis 2"
    return ManifoldGrid(proj.from2d(grid), xs, ys, f"{where}, at the codes' Gaussian quantiles 5%..95%", xl, yl)


# -- moving in the latent space -----------------------------------------------------------------

def pick_pair(labels: Tensor | None, n: int) -> tuple[int, int]:
    """Two default image indices to interpolate between: the first two of different classes."""
    if n < 2:
        raise ConfigError(f"interpolation needs at least 2 images, got {n}")
    if labels is not None:
        for j in range(1, n):
            if labels[j] != labels[0]:
                return 0, j
    return 0, 1


@torch.inference_mode()
def interpolation_rows(model, images: Tensor, labels: Tensor | None, i: int, j: int, steps: int, *,
                       spherical: bool = False) -> dict[str, Tensor]:
    """Decodes along the line from image i's code to image j's, {row title: (steps, C, H, W)}.

    A conditional model decodes under a label, and a label cannot be halfway between two
    classes, so it gets one row under each end's label.
    """
    n = images.shape[0]
    for k in (i, j):
        if not 0 <= k < n:
            raise ConfigError(f"--between index {k} is out of range; the split has images 0..{n - 1}")
    pair = images[[i, j]]
    y = _labels_for(model, None if labels is None else labels[[i, j]], 2)
    z = encode_dataset(model, pair, y)  # (2, D)
    path = interpolate(z[0], z[1], steps, spherical=spherical)  # (steps, D)
    kind = "slerp" if spherical else "straight line"
    if y is None:
        return {f"{kind} from image {i} to {j}": decode_latents(model, path)}
    rows = {}
    for which, label in ((i, int(y[0])), (j, int(y[1]))):
        rows[f"label {label} (image {which}'s)"] = decode_latents(model, path, torch.full((steps,), label))
    return rows


@torch.inference_mode()
def latent_noise_rows(model, images: Tensor, labels: Tensor | None = None, *, scale: float,
                      levels: tuple[float, ...] = LATENT_NOISE_LEVELS,
                      generator: torch.Generator | None = None) -> Tensor:
    """The lesson's Task 2: encode, add Gaussian noise of std level * scale, decode.

    One noise direction per image is drawn once and scaled for every level, so each column
    shows one code drifting further the same way, and row 0 (level 0) is the plain
    reconstruction.  (levels, N, C, H, W)
    """
    y = _labels_for(model, labels, images.shape[0])
    z = encode_dataset(model, images, y)  # (N, D)
    eps = torch.randn(z.shape, generator=generator)  # (N, D)
    return torch.stack([decode_latents(model, z + level * scale * eps, y) for level in levels])


@torch.inference_mode()
def label_sweep(model, images: Tensor, labels: Tensor) -> Tensor:
    """Each image's code decoded under every label: style kept, class changed.  (N, K, C, H, W)"""
    if not model.conditional:
        raise ConfigError(f"`labels` plots need a conditional model (cvae); {model.registry_name} is not conditional")
    if labels is None:
        raise ConfigError("`labels` plots need a labelled dataset")
    z = encode_dataset(model, images, labels)  # (N, D)
    k = model.num_classes
    zz = z.repeat_interleave(k, dim=0)  # (N*K, D): image 0 under labels 0..K-1, then image 1, ...
    yy = torch.arange(k).repeat(z.shape[0])  # (N*K,)
    return decode_latents(model, zz, yy).reshape(z.shape[0], k, *model.out_shape)


def has_vector_latent(model, images: Tensor, labels: Tensor | None = None) -> bool:
    """Whether codes are flat vectors (N, D) that ``decode`` takes back: what the latent-space
    figures (scatter, manifold, interpolation) need."""
    y = _labels_for(model, labels, min(2, images.shape[0]))
    z = encode_dataset(model, images[:2], y)
    return z.dim() == 2 and z.shape[1] == model.latent_dim


def is_bottleneck(model) -> bool:
    """Whether the code is smaller than the input, so it has to summarise the image.

    The image-to-image models (``dn``, ``sr``) pass every encoder level to the decoder through
    skip connections, and their "latent" is all of those features packed together: larger than
    the image, and no map of anything.  Latent-space plots are for models with a bottleneck.
    """
    return model.latent_dim < math.prod(model.in_shape)


def first_images(data, n: int | None = None) -> tuple[Tensor, Tensor | None]:
    """The first ``n`` (all: None) images and labels of an ImageSet (or the items of another
    in-memory set: melodies), or of a streamed training set (which has no items tensor and
    decodes its images from disk)."""
    images = getattr(data, "items", None)
    if not isinstance(images, Tensor):
        data = data.load(n)
        images = data.images
    labels = data.labels
    if n is not None:
        images, labels = images[:n], None if labels is None else labels[:n]
    return images, labels
