"""``vq-vae``: the vector-quantised autoencoder, with a PixelCNN prior over its codes.

van den Oord, Vinyals & Kavukcuoglu, "Neural Discrete Representation Learning" (2017).

1. The encoder maps an image to a grid of vectors z_e (stride-2 convolutions: 28 -> 14 -> 7,
   then residual blocks and a 1x1 convolution to ``code_dim``), one per grid position.
2. Each vector is replaced by its nearest codebook entry e_k (Euclidean); the decoder
   (transposed convolutions back to the image) sees z_q = e_k + (z_e - sg(z_e)), which is
   e_k exactly, with the gradient of z_e: the straight-through estimator, which passes the
   decoder's gradient to the encoder unchanged.
3. The codebook is learned by exponential moving averages (the paper's appendix A.1): each
   entry moves to the running mean of the vectors assigned to it, with decay 0.99 and Laplace
   smoothing of the counts.  The loss is then reconstruction + beta * ||z_e - sg(e)||^2, the
   commitment term, summed over the grid like the reconstruction is over pixels, with beta =
   0.25 on the *encoder's* term as in the paper.  (Some implementations of the loss form,
   ||sg(z_e) - e||^2 + beta ||z_e - sg(e)||^2, put beta on the codebook term instead.)  EMA
   was chosen over that loss form because it needs no learning rate of its own for the
   codebook, converges faster in the paper, and leaves the optimiser with the networks alone;
   and the k-means start and the restarts below act on the same running sums.
4. The codebook starts as k-means of the first training batch's encoder vectors, and a code
   unused for ``restart_after`` training steps is restarted at a random encoder vector of the
   current batch, so that codes do not die (Dhariwal et al., "Jukebox", 2020, does the same).
   Codebook perplexity and the share of codes used in each batch are logged as loss parts;
   they are diagnostics, detached and left out of ``total``.

The latent, for the rest of aekit: ``encode(x)`` is a point mass whose mean is the quantised
grid flattened channel-first, (B, code_dim * h * w) = (B, 64 * 7 * 7) for MNIST by default,
and ``decode`` takes any such vector back (it does not quantise again, so points between codes
decode to blends).  The explorer's map is therefore PCA of those vectors, as for any
many-dimensional code.  At the default width the vector (3,136 numbers) is longer than the
image, so :func:`aekit.latent.views.is_bottleneck` leaves the report's and ``aekit plot``'s
latent figures out; ``code_dim`` 15 or less (on a 7x7 grid) brings them in.

The prior: a gated PixelCNN (:class:`aekit.nn.GatedPixelCNN`) over the grid of code indices,
a submodule whose weights live in the same ``model.safetensors``.  It is trained in a second
stage, ``aekit train-prior RUN`` (:mod:`aekit.app.prior`), on the indices of the trained
encoder; ``prior_epochs`` records that it has been.  Until then ``sample`` and
``prior_sample`` raise a ConfigError naming ``aekit train-prior``, and ``generative`` is False
for the model (the family's class is generative): the report, the explorer and ``aekit
sample`` treat it as the plain autoencoder it is, and the contract "a generative model
samples" holds.  The prior's weights are held as buffers, not parameters: while the
autoencoder trains, its optimiser, DDP's gradient all-reduce and everything else that walks
``parameters()`` sees only the autoencoder, so no parameter is unused in a step
(``has_unused_parameters`` stays False); ``train-prior`` optimises those tensors directly.

Under DDP the EMA statistics (counts and sums) are summed over the processes before each
update, so every replica computes the same codebook; the k-means start and the restarts,
which draw random vectors, are taken from rank 0 and broadcast.  (DDP also broadcasts rank
0's buffers before each forward pass, the prior's ~280k weights among them: a small cost.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import MAX_SIDE, MAX_WIDTH, RECON_LOSSES, setting
from ..errors import ConfigError
from ..nn import ConvDecoder, ConvEncoder, GatedPixelCNN, halving_sizes
from ..registry import register
from .base import Autoencoder, Batch, Losses, Output, Posterior, reconstruction_loss

LAPLACE_EPS = 1e-5  # Laplace smoothing of the EMA counts (Sonnet's VectorQuantizerEMA uses the same)
KMEANS_ITERATIONS = 10  # Lloyd steps for the codebook's start; a batch of ~6k vectors settles in fewer
UNTRAINED_PRIOR = "the VQ-VAE's prior is not trained yet: run `aekit train-prior RUN`"


@dataclass
class VQVAEConfig:
    in_shape: tuple[int, int, int] = setting((1, 28, 28), minimum=1, maximum=MAX_SIDE)
    channels: tuple[int, ...] = setting((32, 64), minimum=1, maximum=MAX_WIDTH)  # two stride-2 convs: 28 -> 14 -> 7, a 7x7 grid of codes
    res_blocks: int = setting(2, minimum=0, maximum=64)  # residual blocks at the grid's size, on both sides, as in the paper
    code_dim: int = setting(64, minimum=1, maximum=MAX_WIDTH)  # width of each code vector: the paper's 64
    # 128 entries rather than the paper's 512 (for ImageNet): on MNIST's 7x7 grids all 128 stay in
    # use at perplexity ~94 (256 entries: ~153, 60%), so the perplexity stays above half the
    # codebook, and the prior's softmax and its training stay small enough for CPU minutes.
    codebook_size: int = setting(128, minimum=2, maximum=MAX_WIDTH)
    beta: float = setting(0.25, minimum=0.0)  # commitment weight, on the encoder's term: the paper's 0.25
    decay: float = setting(0.99, minimum=0.0, maximum=1.0)  # the codebook's EMA decay: the paper's
    # a code unused by 20 batches in a row (125k vectors at batch 128) is dead, not rare; restarting
    # sooner after the k-means start ends the early collapse (a few codes take every vector) sooner
    restart_after: int = setting(20, minimum=1, maximum=1_000_000)
    recon_loss: str = setting("bce", choices=RECON_LOSSES)
    # The prior: 48 channels train an epoch of MNIST's codes in about 80 s on one CPU core (64: 2 min)
    prior_width: int = setting(48, minimum=1, maximum=MAX_WIDTH)
    prior_layers: int = setting(5, minimum=1, maximum=64)  # gated blocks: with the first one's reach, 6 rows up and 6 columns across: a whole 7x7 grid
    prior_kernel: int = setting(5, minimum=3, maximum=31)  # the first block's kernel (odd): 2 rows up, 2 columns each side

    @classmethod
    def tiny(cls, in_shape: tuple[int, int, int] = (1, 16, 16), **overrides) -> VQVAEConfig:
        """A small config for fast CPU tests; ``overrides`` replace any other field."""
        # narrow stages, one residual block, 16 codes of width 8 and a 2-block, 16-wide prior
        sizes = {"channels": (8, 16), "res_blocks": 1, "code_dim": 8, "codebook_size": 16, "restart_after": 10,
                 "prior_width": 16, "prior_layers": 2, "prior_kernel": 3}
        return cls(in_shape=tuple(in_shape), **{**sizes, **overrides})


# -- the codebook --------------------------------------------------------------------------------

def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_finite(t: Tensor) -> bool:
    """Whether ``t`` is finite on every process: they all skip a codebook update, or none does
    (the update's collectives must match)."""
    finite = torch.isfinite(t).all().to(torch.int32)
    if _distributed():
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    return bool(finite)


def _pick(n: int, k: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """``k`` indices into ``n`` items: distinct where n >= k.  Drawn on the generator's device."""
    where = generator.device if generator is not None else device
    if n >= k:
        return torch.randperm(n, generator=generator, device=where)[:k].to(device)
    return torch.randint(n, (k,), generator=generator, device=where).to(device)


def nearest_code(z: Tensor, codebook: Tensor) -> Tensor:
    """Index of the nearest codebook row (Euclidean) for each row of ``z``.  (N, D), (K, D) -> (N,)"""
    # in float32 even under bf16 autocast: distances between close codes need the precision
    with torch.autocast(z.device.type, enabled=False):
        z, codebook = z.float(), codebook.float()
        distances = z.pow(2).sum(1, keepdim=True) - 2 * z @ codebook.T + codebook.pow(2).sum(1)  # (N, K)
    return distances.argmin(dim=1)


def assignment_sums(z: Tensor, indices: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """How many rows of ``z`` (N, D) each of ``k`` codes has in ``indices`` (N,), and their sum:
    ((k,), (k, D)).  A one-hot matrix product: on CPUs far faster than ``index_add_``'s scatter."""
    with torch.autocast(z.device.type, enabled=False):
        one_hot = F.one_hot(indices, k).to(z.dtype)  # (N, k)
        return one_hot.sum(dim=0), one_hot.T @ z


def kmeans(z: Tensor, k: int, *, iterations: int = KMEANS_ITERATIONS,
           generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Lloyd's k-means of the rows of ``z`` from ``k`` random rows: (centres (k, D), counts (k,)).

    A centre that loses all its points stays where it is (the restarts move it later).
    """
    centres = z[_pick(z.shape[0], k, generator, z.device)].clone()  # (k, D)
    for _ in range(iterations):
        counts, sums = assignment_sums(z, nearest_code(z, centres), k)
        filled = counts > 0
        centres[filled] = sums[filled] / counts[filled, None]
    idx = nearest_code(z, centres)
    return centres, torch.bincount(idx, minlength=k).to(z.dtype)


class EMACodebook(nn.Module):
    """``size`` code vectors of width ``dim``, learned by EMA; every tensor is a buffer, so it is
    saved and loaded with the model and never reaches the optimiser."""

    def __init__(self, size: int, dim: int, *, decay: float, restart_after: int):
        super().__init__()
        self.size, self.dim = size, dim
        self.decay, self.restart_after = decay, restart_after
        self.register_buffer("codebook", torch.randn(size, dim))  # (K, D); replaced by k-means in training
        self.register_buffer("ema_count", torch.zeros(size))  # (K,) running count of vectors per code
        self.register_buffer("ema_sum", torch.zeros(size, dim))  # (K, D) running sum of those vectors
        self.register_buffer("idle_steps", torch.zeros(size, dtype=torch.long))  # (K,) steps since last used
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))  # k-means done

    def nearest(self, z: Tensor) -> Tensor:
        """(N, D) -> (N,) code indices"""
        return nearest_code(z, self.codebook)

    def lookup(self, indices: Tensor) -> Tensor:
        """Code vectors of ``indices`` (any shape S), no gradient.  (*S, D)"""
        return F.embedding(indices, self.codebook)

    @torch.no_grad()
    def initialise(self, z: Tensor, generator: torch.Generator | None) -> None:
        """k-means of the encoder vectors ``z`` (N, D) as the starting codebook; its cluster sizes
        start the EMA counts (at least 1, so that empty clusters keep their centre)."""
        centres, counts = kmeans(z, self.size, generator=generator)
        counts = counts.clamp_min(1.0)
        self.codebook.copy_(centres)
        self.ema_count.copy_(counts)
        self.ema_sum.copy_(centres * counts[:, None])
        self.idle_steps.zero_()
        self._from_rank0(self.codebook, self.ema_count, self.ema_sum)
        self.initialised.fill_(True)

    @torch.no_grad()
    def update(self, z: Tensor, indices: Tensor, generator: torch.Generator | None) -> int:
        """One EMA step towards the vectors ``z`` (N, D) assigned to ``indices`` (N,), then the
        restarts; returns how many codes were restarted."""
        counts, sums = assignment_sums(z, indices, self.size)  # (K,), (K, D)
        if _distributed():
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        self.ema_count.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        # Laplace smoothing: no count is zero, and the total is kept
        total = self.ema_count.sum()
        smoothed = (self.ema_count + LAPLACE_EPS) / (total + self.size * LAPLACE_EPS) * total
        self.codebook.copy_(self.ema_sum / smoothed[:, None])

        self.idle_steps.add_(1).masked_fill_(counts > 0, 0)
        dead = self.idle_steps >= self.restart_after  # the same on every process: counts are global
        restarted = int(dead.sum())
        if restarted:
            fresh = z[_pick(z.shape[0], restarted, generator, z.device)]  # (R, D)
            self.codebook[dead] = fresh
            self.ema_sum[dead] = fresh
            self.ema_count[dead] = 1.0
            self.idle_steps[dead] = 0
            self._from_rank0(self.codebook, self.ema_count, self.ema_sum)
        return restarted

    @staticmethod
    def _from_rank0(*tensors: Tensor) -> None:
        if _distributed():
            for t in tensors:
                dist.broadcast(t, src=0)


def code_statistics(indices: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Perplexity exp(H) of the codes' frequencies in ``indices`` (any shape), and the share of
    the ``size`` codes that occur at all.  Both scalars; the perplexity is ``size`` at most."""
    counts = torch.bincount(indices.flatten(), minlength=size).float()
    p = counts / counts.sum().clamp_min(1.0)
    entropy = -(p * torch.log(p.clamp_min(1e-12))).sum()
    return entropy.exp(), (counts > 0).float().mean()


# -- the model ------------------------------------------------------------------------------------

@dataclass
class VQOutput(Output):
    indices: Tensor | None = None  # (B, h, w) code index of each grid position
    commitment: Tensor | None = None  # (B,) ||z_e - sg(e)||^2 summed over the grid
    restarts: int = 0  # codes restarted in this step


class _Residual(nn.Module):
    """x + conv1x1(relu(conv3x3(relu(x)))): the paper's residual block, its 3x3 conv half as
    wide as the block (the paper's 32 hidden channels in 128-channel blocks is narrower still)."""

    def __init__(self, channels: int):
        super().__init__()
        hidden = max(channels // 2, 1)
        self.net = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, hidden, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(hidden, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.net(x)


def _hold_as_buffers(module: nn.Module) -> None:
    """Turn every parameter of ``module`` into a buffer of the same name (saved, loaded and moved
    with the model like a parameter, but not in ``parameters()``)."""
    for sub in module.modules():
        for name, p in list(sub.named_parameters(recurse=False)):
            delattr(sub, name)
            sub.register_buffer(name, p.detach())


@register("vq-vae", VQVAEConfig)
class VQVAE(Autoencoder):
    """Conv encoder to a grid of codes, an EMA codebook, a transposed-conv decoder, a PixelCNN prior."""

    variational = False

    def __init__(self, config: VQVAEConfig):
        super().__init__(config)
        if config.prior_kernel % 2 == 0:
            raise ConfigError(f"model.prior_kernel must be odd, got {config.prior_kernel}")
        c, h, w = self.in_shape
        chans = tuple(config.channels)
        sizes = halving_sizes(h, w, len(chans), owner=self.registry_name, stage="stride-2")
        self.grid = sizes[-1]  # (7, 7) for MNIST
        deep = chans[-1]
        self.encoder = nn.Sequential(ConvEncoder(c, chans, downsample="stride"),
                                     *[_Residual(deep) for _ in range(config.res_blocks)],
                                     nn.ReLU(), nn.Conv2d(deep, config.code_dim, 1))  # (B, D, h, w)
        self.quantizer = EMACodebook(config.codebook_size, config.code_dim, decay=config.decay,
                                     restart_after=config.restart_after)
        # widths narrow as the maps grow, as in the conv VAE's decoder (64 -> 32 -> 16 for (32, 64))
        widths = [*reversed(chans[:-1]), max(chans[0] // 2, 1)]
        self.decoder = nn.Sequential(nn.Conv2d(config.code_dim, deep, 3, padding=1),
                                     *[_Residual(deep) for _ in range(config.res_blocks)], nn.ReLU(),
                                     ConvDecoder(deep, widths, c, sizes, upsample="transpose"))
        self.prior = GatedPixelCNN(config.codebook_size, width=config.prior_width, layers=config.prior_layers,
                                   first_kernel=config.prior_kernel)
        _hold_as_buffers(self.prior)
        self.register_buffer("prior_epochs", torch.zeros((), dtype=torch.long))  # 0: the prior is untrained

    # -- shapes ---------------------------------------------------------------------------
    @property
    def latent_dim(self) -> int:
        return self.config.code_dim * self.grid[0] * self.grid[1]

    def _to_vector(self, grid: Tensor) -> Tensor:
        """(B, h, w, D) code vectors -> (B, D * h * w), channel-first like a conv map."""
        return grid.permute(0, 3, 1, 2).flatten(1)

    # -- the contract ---------------------------------------------------------------------
    def _encode_grid(self, x: Tensor) -> Tensor:
        """The encoder's vectors z_e, one row per grid position, in float32.  (B, h, w, D)"""
        self.check_input(x)
        return self.encoder(x).float().permute(0, 2, 3, 1)

    def _indices(self, z_e: Tensor) -> Tensor:
        """The nearest code of every grid position.  (B, h, w, D) -> (B, h, w) int64"""
        return self.quantizer.nearest(z_e.detach().flatten(0, 2)).view(z_e.shape[:3])

    def encode(self, x: Tensor, y: Tensor | None = None) -> Posterior:
        """A point mass at the quantised grid, flattened.  (B, D * h * w)"""
        return Posterior(self._to_vector(self.quantizer.lookup(self._indices(self._encode_grid(x)))))

    @torch.no_grad()
    def code_indices(self, x: Tensor) -> Tensor:
        """The code index of every grid position.  (B, C, H, W) -> (B, h, w) int64"""
        return self._indices(self._encode_grid(x))

    def decode_logits(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        return self.decoder(z.reshape(-1, self.config.code_dim, *self.grid))

    def forward(self, batch: Batch, generator: torch.Generator | None = None) -> VQOutput:
        z_e = self._encode_grid(batch.x)  # (B, h, w, D)
        flat = z_e.reshape(-1, z_e.shape[-1])  # (B*h*w, D)
        learn = self.training and _all_finite(flat)  # a non-finite batch must not reach the codebook
        if learn and not bool(self.quantizer.initialised):
            self.quantizer.initialise(flat.detach(), generator)
        indices = self.quantizer.nearest(flat.detach())  # (B*h*w,)
        z_q = self.quantizer.lookup(indices)  # (B*h*w, D), the codebook before this step's update
        restarts = self.quantizer.update(flat.detach(), indices, generator) if learn else 0
        b = batch.x.shape[0]
        commitment = (flat - z_q).pow(2).view(b, -1).sum(dim=1)  # (B,): gradient to the encoder only
        # straight-through: the decoder sees exactly z_q (x - x is exactly 0), the encoder gets its gradient
        z_st = z_q + (flat - flat.detach())
        z = self._to_vector(z_st.view(z_e.shape))  # (B, D * h * w)
        return VQOutput(logits=self.decode_logits(z), posterior=Posterior(self._to_vector(z_q.view(z_e.shape))), z=z,
                        indices=indices.view(z_e.shape[:3]), commitment=commitment, restarts=restarts)

    def loss(self, batch: Batch, out: VQOutput) -> Losses:
        recon = reconstruction_loss(out.logits, batch.target, self.config.recon_loss).mean()
        commitment = out.commitment.mean()
        perplexity, used = code_statistics(out.indices.detach(), self.config.codebook_size)
        parts = {"recon": recon, "commitment": commitment, "perplexity": perplexity, "codes_used": used,
                 "restarts": recon.new_tensor(float(out.restarts))}
        return Losses(total=recon + self.config.beta * commitment, parts=parts)

    # -- the prior ------------------------------------------------------------------------
    @property
    def generative(self) -> bool:
        """The family samples (on the class this property is truthy), each model once its prior
        is trained: until then the report, the explorer and ``aekit sample`` treat it as the
        plain autoencoder it is, and every generative model can sample, as the contract says."""
        return self.prior_trained

    def describe_prior(self) -> str:
        return "a PixelCNN over the code grid"

    @property
    def prior_trained(self) -> bool:
        return int(self.prior_epochs) > 0

    def sample(self, n: int, *, label: int | Tensor | None = None, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> Tensor:
        """Decode ``n`` grids drawn from the prior (:meth:`prior_sample`).  (n, C, H, W)"""
        if not self.prior_trained:
            raise ConfigError(UNTRAINED_PRIOR)
        return super().sample(n, label=label, temperature=temperature, generator=generator)

    def prior_weights(self) -> list[Tensor]:
        """The prior's weight tensors, for its own optimiser (``aekit train-prior``): call
        ``requires_grad_(True)`` on them while it trains, and back to False after."""
        return list(self.prior.buffers())

    def prior_nll(self, indices: Tensor) -> Tensor:
        """-log p(indices) under the prior, in nats per grid.  (B, h, w) -> (B,)"""
        logits = self.prior(indices)  # (B, K, h, w)
        return F.cross_entropy(logits.float(), indices, reduction="none").flatten(1).sum(dim=1)

    def record_prior_training(self, epochs: int) -> None:
        self.prior_epochs.add_(epochs)

    def prior_indices(self, n: int, *, temperature: float = 1.0,
                      generator: torch.Generator | None = None) -> Tensor:
        """``n`` grids of code indices drawn from the prior, position by position, with its
        logits divided by ``temperature``.  (n, h, w) int64, on the CPU"""
        if not self.prior_trained:
            raise ConfigError(UNTRAINED_PRIOR)
        if not (math.isfinite(temperature) and temperature > 0):
            raise ConfigError(f"temperature must be a positive number, got {temperature}")
        device = self.prior_epochs.device
        return self.prior.sample(n, *self.grid, temperature=temperature, generator=generator, device=device)

    def prior_sample(self, n: int, *, temperature: float = 1.0,
                     generator: torch.Generator | None = None) -> Tensor:
        """The code vectors of :meth:`prior_indices`, flattened as :meth:`encode` gives them,
        ready for ``decode``; ``temperature`` scales the prior's logits.  (n, D * h * w), on the CPU"""
        indices = self.prior_indices(n, temperature=temperature, generator=generator)
        return self._to_vector(self.quantizer.lookup(indices.to(self.prior_epochs.device))).cpu()

    def log_prior(self, z: Tensor) -> Tensor:
        raise ConfigError("the VQ-VAE's prior is a distribution over code indices, not a density over code "
                          "vectors; use prior_nll(code_indices(x)) for its negative log-likelihood")
