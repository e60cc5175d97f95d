"""MusicVAE for melodies: a bidirectional LSTM encoder, a Gaussian code, an autoregressive LSTM decoder.

Roberts, Engel, Raffel, Hawthorne & Eck, "A Hierarchical Latent Vector Model for Learning
Long-Term Structure in Music" (2018), https://arxiv.org/abs/1803.05428, at a size that trains
on two CPU cores.  Melodies are (B, T) class indices, 90 per step (:mod:`aekit.data.melodies`).

- Encoder: the classes embedded, a bidirectional LSTM, its two final states to the posterior's
  mean and log-variance.
- Decoder: an LSTM whose first state comes from z (through tanh of a dense layer) and which
  reads z and the previous class at every step.  For melodies longer than two bars the
  decoder is hierarchical, as MusicVAE's 16-bar model: a "conductor" LSTM turns z into one
  embedding per bar, and the bar decoder starts every bar from that embedding, so no single
  recurrence has to carry the code across 256 steps.
- Training: teacher forcing with scheduled sampling (the decoder is fed its own samples with
  a probability that rises over training, MusicVAE's inverse-sigmoid schedule), and the loss
  is reconstruction + beta_t * max(KL - free_bits, 0), beta_t rising to ``beta`` as
  beta (1 - beta_rate^t): MusicVAE's KL annealing and free bits.

Where this departs from MusicVAE, and why: the LSTMs are 256 wide rather than 2048 (two CPU
cores); classes go through a learned embedding rather than as one-hot vectors (the same map,
cheaper); and scheduled sampling is done in parallel (Duckworth et al. 2019,
https://arxiv.org/abs/1906.04331): one teacher-forced pass without gradients draws the
decoder's own samples, and a second pass is fed the mix, instead of a step-by-step loop that
would cost 32 small LSTM calls per batch on a CPU.  The training step count that both
schedules follow is a buffer of the model, so it is saved, resumed and loaded with the weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import MAX_WIDTH, setting
from ..errors import ConfigError
from ..registry import register
from .base import LOG_2PI, Autoencoder, Batch, Losses, Output, Posterior, StepContext

# MusicVAE's melody classes (aekit.data.melodies): 0 hold, 1 note off, 2..89 note on for MIDI
# pitches 21..108.  The decoder reads one more symbol, START, before the first step.
NUM_CLASSES = 90
START = NUM_CLASSES
LOG_WEIGHT_STEPS = 65_536  # melody steps decoded at once for the likelihood: about 25 MB of logits


@dataclass
class MusicVAEConfig:
    in_shape: tuple[int, ...] = setting((32,), minimum=1, maximum=4096)  # steps per melody, from the data
    latent_dim: int = setting(64, minimum=1, maximum=MAX_WIDTH)  # MusicVAE's small 2-bar model: 256; 64 on a CPU
    embed_dim: int = setting(32, minimum=1, maximum=MAX_WIDTH)  # each of the 90 classes as a vector
    # per direction; the encoder only sums up 32 steps, so it gets the smaller share of two cores
    # (MusicVAE's small 2-bar model: 512, its big one 2048)
    encoder_hidden: int = setting(128, minimum=1, maximum=MAX_WIDTH)
    decoder_hidden: int = setting(256, minimum=1, maximum=MAX_WIDTH)  # MusicVAE's small 2-bar decoder: 2 x 256
    decoder_layers: int = setting(2, minimum=1, maximum=8)
    conductor_hidden: int = setting(256, minimum=1, maximum=MAX_WIDTH)  # the hierarchical decoder's bar LSTM
    # the conductor, for melodies longer than this many bars (MusicVAE uses it for 16, not for 2)
    conductor_above_bars: int = setting(2, minimum=0, maximum=4096)
    steps_per_bar: int = setting(16, minimum=1, maximum=4096)  # sixteenth notes in 4/4
    beta: float = setting(0.2, minimum=0.0)  # the KL weight annealing reaches: MusicVAE's max_beta for melodies
    # beta_t = beta * (1 - beta_rate^t) after t steps.  MusicVAE's 0.99999 anneals over 100,000s of GPU steps;
    # 0.999 is at two thirds of beta after 1,100 steps, the scale of a 20-minute CPU run
    beta_rate: float = setting(0.999, minimum=0.0, maximum=1.0)
    # nats of KL per melody that cost nothing, so that a short run keeps its code in use (MusicVAE: 48 for
    # its 2-bar drum models, 0 for 2-bar melodies, 256 for 16 bars: set model.free_bits=256 there)
    free_bits: float = setting(48.0, minimum=0.0)
    # scheduled sampling: the decoder reads its own sample with probability 1 - k / (k + exp(t / k)) after
    # t steps, k = sampling_rate: a tenth of the time at 2,000 steps and half at 3,100 for 500 (MusicVAE
    # uses 1000 over far longer runs); 0 turns it off
    sampling_rate: float = setting(500.0, minimum=0.0)
    grad_clip: float = setting(1.0, above=0.0)  # gradients clipped to this global norm, as MusicVAE does

    @classmethod
    def tiny(cls, in_shape: tuple[int, ...] = (16,), **overrides) -> MusicVAEConfig:
        """A small config for fast CPU tests: 4 bars of 4 steps, so the conductor is in use."""
        sizes = {"latent_dim": 4, "embed_dim": 8, "encoder_hidden": 16, "decoder_hidden": 16, "decoder_layers": 1,
                 "conductor_hidden": 16, "steps_per_bar": 4, "free_bits": 0.0, "beta_rate": 0.99,
                 "sampling_rate": 200.0}
        return cls(in_shape=tuple(in_shape), **{**sizes, **overrides})


def scheduled_sampling_probability(step: int, rate: float) -> float:
    """MusicVAE's inverse-sigmoid schedule: the chance of feeding the decoder its own sample."""
    if rate <= 0:
        return 0.0
    return 1.0 - rate / (rate + math.exp(min(step / rate, 50.0)))


def annealed_beta(step: int, beta: float, rate: float) -> float:
    """beta (1 - rate^t): 0 at the start, ``beta`` in the end (MusicVAE's KL annealing)."""
    return beta * (1.0 - rate ** step)


class _StateFrom(nn.Module):
    """A conditioning vector to an LSTM's initial (h, c) for every layer, through tanh."""

    def __init__(self, features: int, hidden: int, layers: int):
        super().__init__()
        self.hidden, self.layers = hidden, layers
        self.dense = nn.Linear(features, 2 * layers * hidden)

    def forward(self, cond: Tensor) -> tuple[Tensor, Tensor]:
        hc = torch.tanh(self.dense(cond)).view(-1, 2, self.layers, self.hidden)  # (B, 2, L, H)
        return hc[:, 0].transpose(0, 1).contiguous(), hc[:, 1].transpose(0, 1).contiguous()  # (L, B, H) each


@register("music-vae", MusicVAEConfig)
class MusicVAE(Autoencoder):
    """MusicVAE for melodies: biLSTM encoder, LSTM decoder (hierarchical above 2 bars)."""

    variational = True
    generative = True
    data_kind = "melody"
    auto_bf16 = False  # its LSTMs were measured in float32 only

    def __init__(self, config: MusicVAEConfig):
        super().__init__(config)
        c = config
        if len(c.in_shape) != 1:  # a melody is one row of steps; an image's (C, H, W) is not one
            raise ConfigError(f"a music-vae reads melodies: in_shape is (steps,), got {tuple(c.in_shape)}")
        steps = self.steps
        self.bars = max(1, steps // c.steps_per_bar)
        self.hierarchical = self.bars > c.conductor_above_bars
        if self.hierarchical and steps % c.steps_per_bar:
            raise ConfigError(f"a hierarchical music-vae needs whole bars: {steps} steps do not divide into bars of "
                              f"{c.steps_per_bar}; set model.steps_per_bar or model.conductor_above_bars")
        self.embed = nn.Embedding(NUM_CLASSES + 1, c.embed_dim)
        self.encoder = nn.LSTM(c.embed_dim, c.encoder_hidden, batch_first=True, bidirectional=True)
        self.to_mean = nn.Linear(2 * c.encoder_hidden, c.latent_dim)
        self.to_logvar = nn.Linear(2 * c.encoder_hidden, c.latent_dim)
        cond = c.latent_dim
        if self.hierarchical:
            self.conductor_state = _StateFrom(c.latent_dim, c.conductor_hidden, 2)
            self.conductor = nn.LSTM(1, c.conductor_hidden, num_layers=2, batch_first=True)  # reads zeros, as MusicVAE's
            cond = c.conductor_hidden
        self.decoder_state = _StateFrom(cond, c.decoder_hidden, c.decoder_layers)
        self.decoder = nn.LSTM(c.embed_dim + cond, c.decoder_hidden, num_layers=c.decoder_layers, batch_first=True)
        self.to_logits = nn.Linear(c.decoder_hidden, NUM_CLASSES)
        # the optimisation steps taken: KL annealing and scheduled sampling follow it
        self.register_buffer("steps_trained", torch.zeros((), dtype=torch.long))

    # -- shapes ---------------------------------------------------------------------------------
    @property
    def steps(self) -> int:
        return int(self.config.in_shape[0])

    @property
    def logits_shape(self) -> tuple[int, ...]:
        return (self.steps, NUM_CLASSES)

    def example_input(self, n: int, *, shape: tuple[int, ...] | None = None,
                      generator: torch.Generator | None = None) -> Tensor:
        """``n`` random class sequences (not tunes, but what the model must accept).  (n, *shape)"""
        return torch.randint(0, NUM_CLASSES, (n, *(shape or self.in_shape)), generator=generator)

    def check_input(self, x: Tensor) -> None:
        if x.dim() != 2 or x.shape[1] != self.steps or x.is_floating_point() or x.dtype == torch.bool:
            got = f"{tuple(x.shape[1:]) if x.dim() >= 2 else tuple(x.shape)} {x.dtype}"
            raise ConfigError(f"this model expects melodies of shape ({self.steps},): {self.steps} steps of class "
                              f"indices (int64), got {got}; load them with --dataset melodies, or train a model "
                              "for this length")
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= NUM_CLASSES):
            raise ConfigError(f"melody classes must lie in 0..{NUM_CLASSES - 1}, got {int(x.min())}..{int(x.max())}")

    # -- encoder ----------------------------------------------------------------------------------
    def encode(self, x: Tensor, y: Tensor | None = None) -> Posterior:
        self.check_input(x)
        _, (h, _) = self.encoder(self.embed(x))  # h: (2, B, H), the last states of both directions
        features = torch.cat([h[0], h[1]], dim=1)  # (B, 2H)
        return Posterior(self.to_mean(features), self.to_logvar(features))

    # -- decoder ----------------------------------------------------------------------------------
    def _conditions(self, z: Tensor) -> Tensor:
        """What the bar decoder is conditioned on: z itself (flat), or the conductor's embedding
        of each bar (hierarchical).  (B, U, C) with U = 1 for the flat decoder"""
        if not self.hierarchical:
            return z.unsqueeze(1)
        zeros = z.new_zeros(z.shape[0], self.bars, 1)
        out, _ = self.conductor(zeros, self.conductor_state(z))
        return out  # (B, U, Hc)

    def teacher_forced_logits(self, z: Tensor, fed: Tensor) -> Tensor:
        """Logits for every step when the decoder reads ``fed`` (B, T) as the previous classes
        (the targets for teacher forcing).  (B, T, 90)"""
        b, t = fed.shape
        previous = torch.cat([fed.new_full((b, 1), START), fed[:, :-1]], dim=1)  # (B, T)
        cond = self._conditions(z)  # (B, U, C)
        u = cond.shape[1]
        s = t // u
        # every bar decodes at once: (B * U, S) sequences, each starting from its own bar embedding
        cond_bars = cond.reshape(b * u, -1)  # (B*U, C)
        inputs = torch.cat([self.embed(previous.reshape(b * u, s)),
                            cond_bars.unsqueeze(1).expand(b * u, s, cond_bars.shape[1])], dim=2)
        out, _ = self.decoder(inputs, self.decoder_state(cond_bars))  # (B*U, S, H)
        return self.to_logits(out).reshape(b, t, NUM_CLASSES)

    def free_running(self, z: Tensor, *, temperature: float = 0.0,
                     generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Decode step by step, each step reading the class chosen before it: the argmax
        (``temperature`` 0) or a draw from softmax(logits / temperature).  ((B, T) classes, (B, T, 90) logits)"""
        b = z.shape[0]
        cond = self._conditions(z)  # (B, U, C)
        u = cond.shape[1]
        s = self.steps // u
        token = torch.full((b,), START, dtype=torch.long, device=z.device)
        classes, logits = [], []
        for bar in range(u):
            c = cond[:, bar]  # (B, C)
            state = self.decoder_state(c)
            for _ in range(s):
                inp = torch.cat([self.embed(token), c], dim=1).unsqueeze(1)  # (B, 1, E + C)
                out, state = self.decoder(inp, state)
                step_logits = self.to_logits(out[:, 0])  # (B, 90)
                if temperature > 0:
                    probs = torch.softmax(step_logits.float() / temperature, dim=1)
                    token = torch.multinomial(probs, 1, generator=generator)[:, 0]
                else:
                    token = step_logits.argmax(dim=1)
                classes.append(token)
                logits.append(step_logits)
        return torch.stack(classes, dim=1), torch.stack(logits, dim=1)

    def decode_logits(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """The free-running (greedy) decoder's logits.  (B, T, 90)"""
        return self.free_running(z)[1]

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """Latents (B, D) to melodies (B, T): greedy decoding, so the same code gives the same tune."""
        return self.free_running(z)[0]

    # -- training ---------------------------------------------------------------------------------
    def forward(self, batch: Batch, generator: torch.Generator | None = None) -> Output:
        posterior = self.encode(batch.x, batch.y)
        z = posterior.sample(generator)
        fed = batch.target
        p = scheduled_sampling_probability(int(self.steps_trained), self.config.sampling_rate) if self.training else 0.0
        if p > 0:
            with torch.no_grad():  # parallel scheduled sampling: the decoder's own draws, from a first pass
                first = self.teacher_forced_logits(z, fed).float()
                drawn = torch.multinomial(torch.softmax(first.reshape(-1, NUM_CLASSES), dim=1), 1,
                                          generator=generator).view_as(fed)
                mix = torch.rand(fed.shape, generator=generator, device=fed.device) < p
                fed = torch.where(mix, drawn, fed)
        return Output(logits=self.teacher_forced_logits(z, fed), posterior=posterior, z=z)

    def reconstruction_nats(self, logits: Tensor, target: Tensor) -> Tensor:
        """Cross-entropy summed over a melody's steps, in nats.  (B,)"""
        return F.cross_entropy(logits.float().transpose(1, 2), target, reduction="none").sum(dim=1)

    @property
    def current_beta(self) -> float:
        return annealed_beta(int(self.steps_trained), self.config.beta, self.config.beta_rate)

    def loss(self, batch: Batch, out: Output) -> Losses:
        recon = self.reconstruction_nats(out.logits, batch.target)  # (B,)
        kl = self.kl(out.posterior, out.z)  # (B,)
        kl_cost = (kl - self.config.free_bits).clamp_min(0.0)
        total = (recon + self.current_beta * kl_cost).mean()
        return Losses(total=total, parts={"recon": recon.mean(), "kl": kl.mean()})

    def training_step(self, batch: Batch, optimizers: dict, ctx: StepContext | None = None) -> Losses:
        """The base class's step with the gradients clipped to ``grad_clip`` (recurrent nets' usual
        guard against a rare huge gradient), then one more step on the schedules' count."""
        ctx = ctx or StepContext(forward=self)
        optimizer = optimizers["main"]
        with ctx.autocast():
            out = ctx.forward(batch, ctx.generator)
            losses = self.loss(batch, out)
        ctx.check_finite(losses)
        optimizer.zero_grad(set_to_none=True)
        if ctx.scaler is None:
            losses.total.backward()
            nn.utils.clip_grad_norm_(self.parameters(), self.config.grad_clip)
            optimizer.step()
        else:
            ctx.scaler.scale(losses.total).backward()
            ctx.scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            nn.utils.clip_grad_norm_(self.parameters(), self.config.grad_clip)
            ctx.scaler.step(optimizer)
            ctx.scaler.update()
        self.steps_trained += 1
        return losses

    # -- likelihood and samples -------------------------------------------------------------------
    def log_weights(self, target: Tensor, y: Tensor | None, posterior: Posterior, z: Tensor) -> Tensor:
        """log p(x|z) + log p(z) - log q(z|x) for codes ``z`` (K, B, D) of melodies ``target``
        (B, T), with the teacher-forced categorical decoder.  (K, B)"""
        k, b, d = z.shape
        flat = z.reshape(k * b, d)
        targets = target.unsqueeze(0).expand(k, *target.shape).reshape(k * b, -1)
        # in slices of LOG_WEIGHT_STEPS melody steps: the logits of 10,000 16-bar melodies would take 1 GB
        rows = max(1, LOG_WEIGHT_STEPS // self.steps)
        log_px_z = torch.cat([-self.reconstruction_nats(self.teacher_forced_logits(flat[i:i + rows], targets[i:i + rows]),
                                                        targets[i:i + rows]) for i in range(0, k * b, rows)])  # (K*B,)
        repeated = Posterior(posterior.mean.unsqueeze(0).expand(k, b, d).reshape(k * b, d),
                             posterior.logvar.unsqueeze(0).expand(k, b, d).reshape(k * b, d))
        log_prior = -0.5 * (LOG_2PI + flat.pow(2)).sum(dim=1)
        return (log_px_z + log_prior - repeated.log_prob(flat)).reshape(k, b)

    @torch.inference_mode()
    def sample(self, n: int, *, label: int | Tensor | None = None, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> Tensor:
        """``n`` melodies from codes z ~ N(0, I), each step drawn from softmax(logits / temperature),
        as MusicVAE samples (its temperature is the decoder's, not the code's).  (n, T)"""
        if label is not None:
            raise ConfigError("music-vae is not conditional; it takes no label")
        if not temperature > 0:
            raise ConfigError(f"--temperature must be a positive number, got {temperature}")
        device = next(self.parameters()).device
        z = self.prior_sample(n, generator=generator).to(device)
        draw = None if generator is None or generator.device == device else \
            torch.Generator(device=device).manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
        return self.free_running(z, temperature=temperature, generator=draw or generator)[0]
