"""What every task is: a mapping from clean images to the model's input, with its yardsticks.

A task owns everything that differs between "the input is the target" and the image-to-image
uses of an autoencoder: the input's shape, how a clean batch is corrupted during training, the
fixed corrupted inputs it is scored on, the baselines scored on those same inputs, and the
model it trains when none is named.  Nothing outside :mod:`aekit.tasks` asks which task it has;
it asks the task.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from ..models.base import Batch

# Noise streams for evaluation: image ``i`` of a scored split gets noise from a generator
# seeded by (seed, stream, i), so figures repeat whatever the batch size or the device, and
# the baselines see the very inputs the model saw.
TEST_STREAM = 12_345  # the split being scored
TUNING_STREAM = 54_321  # the images the baselines' parameters are tuned on


def image_seed(seed: int, stream: int, index: int) -> int:
    # Large odd multipliers keep (seed, stream, index) triples from colliding.
    return (seed * 1_000_003 + stream * 104_729 + index * 7_919) % (2**63 - 1)


class Task:
    """Base class; subclasses register with :func:`aekit.tasks.register_task`."""

    name: ClassVar[str]  # the --task value
    default_model: ClassVar[str]  # trained when --model is not given
    # True when the model's input is its target, so figures show two rows, not three, and
    # the run can be compared with PCA; False for tasks that corrupt the input.
    target_is_input: ClassVar[bool] = False
    # The command that applies a run of this task to a user's image files, if any.
    apply_command: ClassVar[str | None] = None
    # How to train a run of this task, for messages that ask for one.
    train_hint: ClassVar[str] = "aekit train"
    # What its data is, as its model must read it: "image" (B, C, H, W) in [0, 1], or "melody"
    # (B, T) class indices.  A task of another kind than "image" names the datasets it reads
    # (reads_dataset), and is the task those datasets get when --task is not given.
    data_kind: ClassVar[str] = "image"
    data_plural: ClassVar[str] = "images"  # the kind in words, for messages

    @classmethod
    def reads_dataset(cls, name: str) -> bool:
        """Whether dataset ``name`` holds this task's kind of data; image tasks read every
        dataset that a task of another kind does not claim (see :func:`aekit.tasks.dataset_kind`)."""
        return False

    @classmethod
    def from_options(cls, *, noise: str | None = None, scale: int | None = None) -> Task:
        """The task from its command-line options; options it does not take are refused."""
        raise NotImplementedError

    def options(self) -> dict[str, Any]:
        """The task's options as stored in config.json's ``data`` section (``noise``, ``scale``)."""
        return {"noise": None, "scale": None}

    def input_shape(self, target_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """The model's input shape (C, H, W) for targets of ``target_shape``."""
        return tuple(target_shape)

    def model_options(self) -> dict[str, Any]:
        """Model config values the task decides (super-resolution's scale), by field name."""
        return {}

    def corrupt(self, clean: Tensor, generator: torch.Generator | None) -> Tensor:
        """The model's input for clean images (B, C, H, W), noise drawn from ``generator``."""
        return clean

    def make_batch(self, clean: Tensor, labels: Tensor | None, generator: torch.Generator | None) -> Batch:
        return Batch(x=self.corrupt(clean, generator), target=clean, y=labels)

    def fixed_inputs(self, clean: Tensor, *, seed: int, first_index: int = 0, stream: int = TEST_STREAM) -> Tensor:
        """The model's inputs for ``clean`` images (B, C, H, W), any noise fixed per image.

        ``first_index`` is the index of ``clean[0]`` in its split, so a split scored in
        batches gets the same inputs as scored in one go.  Tasks without randomness simply
        corrupt.
        """
        return self.corrupt(clean, None)

    def score(self, model, splits, *, split: str = "test", seed: int = 0) -> dict[str, Any]:
        """Metrics of ``model`` on one of ``splits`` ("test", "val", "train"), plus "baselines"
        where the task has them.  For images: PSNR, SSIM, BCE and, for VAEs, the ELBO
        (:func:`aekit.eval.evaluate.evaluate_model`).

        The baselines' parameters are tuned on validation images; when the validation split is
        the one scored, on training images instead, so that tuning never sees the scored images.
        """
        from ..eval.evaluate import evaluate_model

        data = getattr(splits, split)
        metrics = evaluate_model(model, data, self, seed=seed)
        tuning = splits.train if split == "val" else splits.val
        baselines = self.baselines(tuning, data, seed=seed)
        if baselines:
            metrics["baselines"] = baselines
        return metrics

    def likelihood_metrics(self, estimate, model, items=None, splits=None, split: str = "test") -> dict[str, Any]:
        """What ``aekit evaluate --nll`` adds to the metrics from an
        :class:`~aekit.eval.likelihood.LikelihoodEstimate`: nats per image here.  ``items`` are
        the estimated inputs, from ``split`` of ``splits``, for a task that compares a baseline
        on the same ones."""
        return estimate.as_dict()

    def baselines(self, val_set, test_set, *, seed: int = 0, max_images: int | None = None,
                  max_tuning_images: int | None = None) -> dict[str, dict[str, Any]]:
        """Classical methods scored on the same test inputs as the model: {name: {"psnr", ...}}.

        Parameters are tuned on ``val_set``, never on the scored images.  None by default.
        """
        return {}

    def describe(self) -> str:
        return self.name

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.options() == self.options()

    def __hash__(self) -> int:
        return hash((self.name, tuple(sorted(self.options().items()))))

    def __repr__(self) -> str:
        return f"<task {self.describe()}>"
