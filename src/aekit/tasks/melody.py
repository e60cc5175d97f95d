"""``melody``: a melody in, the same melody out (MusicVAE's task), scored as melodies are.

The task of every ``melodies`` dataset (chosen for it when ``--task`` is not given).  Its
inputs are class indices (B, T), never corrupted; it is scored by per-step accuracy (all steps
and note-on steps), decoded free-running from the posterior mean and teacher-forced, by the
ELBO, and against two baselines on the same windows ("repeat the last note" and a Markov chain
fitted on the training windows, see :mod:`aekit.eval.music`); and its samples and
interpolation midpoints by simple music statistics against the training windows.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch
from torch import Tensor

from ..data.melodies import TRANSPOSE, is_melody_dataset
from ..errors import ConfigError
from ..eval import music as em
from ..models.base import Batch
from . import register_task
from .base import TEST_STREAM, Task, image_seed

log = logging.getLogger(__name__)

EVAL_BATCH = 500
MARKOV_DRAWS = 4  # sampled accuracy of the chain: the mean over this many draws per window
STAT_SAMPLES = 500  # samples and interpolation midpoints the music statistics are taken over
SAMPLE_TEMPERATURES = (1.0, 0.5)  # 0.5: MusicVAE's usual choice for listening


@register_task
class Melody(Task):
    name = "melody"
    default_model = "music-vae"
    target_is_input = True
    data_kind = "melody"
    data_plural = "melodies"
    train_hint = "aekit train --dataset melodies"

    @classmethod
    def from_options(cls, *, noise=None, scale=None) -> Melody:
        if noise:
            raise ConfigError("--noise applies to images (--task denoise), not to melodies")
        if scale:
            raise ConfigError("--scale applies to images (--task super-resolution), not to melodies")
        return cls()

    @classmethod
    def reads_dataset(cls, name: str) -> bool:
        return is_melody_dataset(name)

    def describe(self) -> str:
        return "melody reconstruction"

    # -- scoring -------------------------------------------------------------------------------
    def score(self, model, splits, *, split: str = "test", seed: int = 0) -> dict[str, Any]:
        """The model's accuracies and ELBO on ``split``, the baselines on the same windows, and
        the music statistics of its samples and interpolations (see the module's docstring)."""
        started = time.perf_counter()
        data = getattr(splits, split)
        melodies = data.melodies
        metrics = model_metrics(model, melodies, seed=seed)
        chain = fit_chain(splits, split)
        metrics["baselines"] = baselines(chain, melodies, seed=seed)
        metrics["music"] = music_table(model, chain, splits.train.melodies, melodies, seed=seed)
        log.info("scored %s on %d %s windows in %.1f s", model.registry_name, len(melodies), split,
                 time.perf_counter() - started)
        return metrics

    def likelihood_metrics(self, estimate, model, items=None, splits=None, split: str = "test") -> dict[str, Any]:
        """The importance-sampled NLL per melody and per step: the per-step figure replaces the
        ELBO's bound in ``nll_per_step``, comparable with the Markov chain's exact one.

        Given the estimated windows (``items``) and their ``splits``, also the chain's exact NLL
        on those same windows and the model's gain over it, paired window by window: the mean of
        log p_model(x) - log p_chain(x) per step with its standard error.  Pairing removes the
        spread between easy and hard windows, so a small gain can still be told from noise.
        """
        steps = int(model.in_shape[0])
        metrics = dict(estimate.as_dict())
        metrics["nll_per_step"] = metrics["nll"] / steps
        metrics["nll_negative_elbo_per_step"] = metrics["nll_negative_elbo"] / steps
        if items is not None and splits is not None:
            chain_log_prob = fit_chain(splits, split).log_prob(items.cpu()).double()
            gain = estimate.log_likelihood.double().cpu() - chain_log_prob
            n = gain.numel()
            metrics["markov_nll_per_step"] = -float(chain_log_prob.mean()) / steps
            metrics["nll_gain_over_markov_per_step"] = float(gain.mean()) / steps
            metrics["nll_gain_over_markov_se"] = (float(gain.std()) / n ** 0.5 / steps) if n > 1 else float("nan")
        return metrics


def fit_chain(splits, split: str = "test") -> em.MarkovChain:
    """The first-order Markov chain baseline: fitted on the training windows in every transposition
    the model trains on, its smoothing tuned on the validation windows (on training ones when
    ``split`` is the validation split itself)."""
    tuning = splits.train if split == "val" else splits.val
    return em.fit_markov(em.transpositions(splits.train.melodies, TRANSPOSE), tuning.melodies)


def _device(model) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def model_metrics(model, melodies: Tensor, *, seed: int = 0, batch_size: int = EVAL_BATCH) -> dict[str, Any]:
    """Accuracies and the ELBO of a melody model on windows (N, T).

    Free-running ("accuracy"): each window encoded to its posterior mean and decoded greedily,
    every step reading the decoder's own previous choice.  Teacher-forced: the decoder reads
    the true previous steps, with a code drawn from q(z|x) as the ELBO draws it.  The ELBO is
    in nats per melody; ``nll_per_step`` is -ELBO / T, an upper bound on the true NLL per step
    (``aekit evaluate --nll`` replaces it with the importance-sampled estimate).
    """
    model.eval()
    device = _device(model)
    gen = torch.Generator(device=device).manual_seed(image_seed(seed, TEST_STREAM, 0))
    free, forced = torch.zeros(4, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
    recon_sum = kl_sum = 0.0
    n, t = melodies.shape
    for start in range(0, n, batch_size):
        x = melodies[start:start + batch_size].to(device)
        out = model(Batch(x=x, target=x), gen)
        forced += em.accuracy_counts(out.logits.argmax(dim=2).cpu(), x.cpu())
        free += em.accuracy_counts(model.decode(out.posterior.mode()).cpu(), x.cpu())
        recon_sum += float(em.sequence_nats(out.logits, x).double().sum())
        kl_sum += float(model.kl(out.posterior, out.z).double().sum())
    recon, kl = recon_sum / max(n, 1), kl_sum / max(n, 1)
    return {**em.accuracies(free), **em.accuracies(forced, "teacher_forced_"),
            "elbo": -(recon + kl), "elbo_recon": recon, "kl": kl, "nll_per_step": (recon + kl) / t,
            "melodies": int(n), "steps": int(t)}


def baselines(chain: em.MarkovChain, melodies: Tensor, *, seed: int = 0) -> dict[str, dict[str, Any]]:
    """"repeat the last note" and the Markov chain on windows (N, T), in the model's columns:
    free-running ``accuracy`` (the chain's sampled from each window's first step, averaged over
    :data:`MARKOV_DRAWS` draws), teacher-forced accuracy, and the chain's exact NLL per step."""
    n, t = melodies.shape
    held = em.repeat_last_note(melodies)
    repeat = {**em.accuracies(em.accuracy_counts(held, melodies)),
              **em.accuracies(em.accuracy_counts(held, melodies), "teacher_forced_"), "melodies": int(n)}
    gen = torch.Generator().manual_seed(image_seed(seed, TEST_STREAM, 1))
    sampled = torch.zeros(4, dtype=torch.float64)
    for _ in range(MARKOV_DRAWS):
        sampled += em.accuracy_counts(chain.sample(melodies[:, 0], t, gen), melodies)
    markov = {**em.accuracies(sampled),
              **em.accuracies(em.accuracy_counts(chain.most_likely_next(melodies), melodies), "teacher_forced_"),
              "nll_per_step": -float(chain.log_prob(melodies).double().mean()) / t, "melodies": int(n),
              "param": f"alpha={chain.alpha:g}"}
    return {"repeat the last note": repeat, "markov chain": markov}


@torch.inference_mode()
def interpolation_midpoints(model, melodies: Tensor, n: int, *, seed: int = 0) -> Tensor:
    """Greedy decodes of the midpoints between the posterior means of ``n`` random pairs of
    windows (N, T), pairs drawn with ``seed``.  (n, T)"""
    gen = torch.Generator().manual_seed(image_seed(seed, TEST_STREAM, 2))
    device = _device(model)
    a = torch.randint(0, len(melodies), (n,), generator=gen)
    b = torch.randint(0, len(melodies), (n,), generator=gen)
    za = model.encode(melodies[a].to(device)).mode()
    zb = model.encode(melodies[b].to(device)).mode()
    return model.decode((za + zb) / 2).cpu()


@torch.inference_mode()
def music_table(model, chain: em.MarkovChain, train: Tensor, test: Tensor, *, seed: int = 0,
                n: int = STAT_SAMPLES) -> dict[str, dict[str, float]]:
    """Music statistics (:func:`aekit.eval.music.music_statistics`) of the training and test
    windows, the model's samples, its interpolation midpoints and the Markov chain's samples,
    all against the training windows' pitch-class histogram."""
    model.eval()
    reference = em.pitch_class_histogram(train)
    gen = torch.Generator().manual_seed(image_seed(seed, TEST_STREAM, 3))
    # random windows, not the first: the first come from the first pieces, all of one collection
    pick_train = torch.randperm(len(train), generator=gen)[:n]
    pick_test = torch.randperm(len(test), generator=gen)[:n]
    rows = {"training windows": em.music_statistics(train[pick_train], reference),
            "test windows": em.music_statistics(test[pick_test], reference)}
    for temperature in SAMPLE_TEMPERATURES:
        drawn = model.sample(n, temperature=temperature, generator=gen).cpu()
        rows[f"samples (temperature {temperature:g})"] = em.music_statistics(drawn, reference)
    if len(test) >= 2:
        rows["interpolation midpoints"] = em.music_statistics(interpolation_midpoints(model, test, n, seed=seed),
                                                              reference)
    rows["markov chain samples"] = em.music_statistics(chain.sample_free(n, test.shape[1], gen), reference)
    return rows
