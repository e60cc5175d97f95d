"""A melody run in the explorer: the same map, sliders and interpolation, melodies instead of images.

:class:`MelodyExplorer` answers the page's requests as :class:`~aekit.web.explorer.RunExplorer`
does, with two differences: every decoded melody comes back as a small piano-roll image (so the
page shows it where it shows a digit) *and* as its notes, ``[[start_step, end_step, pitch],
...]`` with ``seconds_per_step``, which ``static/music.js`` renders with Web Audio; and the
drawing pad has nothing to take (an upload is a 409).  :func:`explorer_for` picks the class by
what the run's task reads.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor

from ..app.music import notes_json, pitch_span, roll_images
from ..data.melodies import STEPS_PER_QUARTER, TEMPO_BPM
from ..errors import AekitError
from ..latent import Projection, encode_dataset, fit_projection
from ..run import Run
from .explorer import ConflictError, RunExplorer, _Loaded, fit_sliders, png_data_uri

log = logging.getLogger(__name__)

SECONDS_PER_STEP = 60.0 / TEMPO_BPM / STEPS_PER_QUARTER  # the tempo of the MIDI files aekit writes


def explorer_for(path: str | Path, **options) -> RunExplorer:
    """The explorer for the run in ``path``: a :class:`MelodyExplorer` when its task reads melodies."""
    reads = Run.open(path).task.data_kind
    return MelodyExplorer(path, **options) if reads == MelodyExplorer.data_kind else RunExplorer(path, **options)


class MelodyExplorer(RunExplorer):
    """A run of the melody task: test melodies on the map, decodes as piano rolls and notes."""

    data_kind = "melody"
    item = "melody"
    no_test_set = "this run's test melodies are not available"

    def info(self) -> dict:
        return {**super().info(), "data_kind": self.data_kind, "seconds_per_step": SECONDS_PER_STEP,
                "steps": int(self.load().model.in_shape[0])}

    def _load(self) -> _Loaded:
        cfg = self.config
        model, task = self.run.model, self.run.task
        melodies, data_error = None, None
        try:
            melodies = self.run.splits(download=False).test.melodies  # (N, T)
        except (AekitError, OSError) as err:
            data_error = f"the test melodies of {cfg.data.dataset} are not available here ({err}); the map is empty"
            log.warning("%s: %s", self.run_dir, data_error)
        codes = None
        shown = torch.zeros(0, dtype=torch.long)
        if melodies is not None and len(melodies):
            n = melodies.shape[0]
            shown = (torch.randperm(n, generator=torch.Generator().manual_seed(0))[:self.max_points].sort().values
                     if n > self.max_points else torch.arange(n))
            codes = encode_dataset(model, melodies[shown])  # (M, D)
        dim = model.latent_dim
        if codes is not None and codes.shape[0] >= 2:
            projection = fit_projection(codes)
        elif dim <= 2:
            projection = fit_projection(torch.zeros(1, dim))
        else:
            projection = Projection("axes", torch.zeros(dim), torch.eye(dim)[:2])
        text = projection.describe() if projection.method != "axes" else f"the first two of {dim} latent dimensions"
        sliders = fit_sliders(codes, dim, generative=bool(model.generative))
        # one pitch range for every roll of the run, so that rolls compare at a glance
        self.span = pitch_span(melodies) if melodies is not None else (48, 84)
        return _Loaded(model, task, melodies, None, melodies, shown,
                       projection.to2d(codes) if codes is not None else torch.zeros(0, 2), projection, text, sliders,
                       data_error, None if melodies is None else cfg.data.dataset)

    # -- melodies out ----------------------------------------------------------------------------
    def _melodies(self, z: Tensor) -> Tensor:
        """Codes (N, D) to melodies (N, T) on the CPU, greedy: one code, one tune."""
        with torch.inference_mode():
            return self.load().model.decode(z.to(self._device)).cpu()

    def _answers(self, melodies: Tensor) -> tuple[list[str], list[list[list[int]]]]:
        images = roll_images(melodies, *self.span)
        return [png_data_uri(im) for im in images], [notes_json(m) for m in melodies]

    def decode(self, *, z=None, point=None, coords=None, label=None) -> dict:
        latent = self.latent(z=z, point=point, coords=coords)
        self._labels(label, 1)  # a label is refused: melody models are not conditional
        images, notes = self._answers(self._melodies(latent[None]))
        return {"image": images[0], "notes": notes[0], "seconds_per_step": SECONDS_PER_STEP,
                **self._where_one(latent)}

    def interpolate(self, a: dict, b: dict, *, steps: int, label=None, spherical: bool = False) -> dict:
        path = self._path(a, b, steps=steps, spherical=spherical)  # (steps, D)
        self._labels(label, steps)  # a label is refused, as in decode
        images, notes = self._answers(self._melodies(path))
        return {"images": images, "melodies": notes, "seconds_per_step": SECONDS_PER_STEP, **self._where(path)}

    def sample(self, n: int, *, label=None, seed=None) -> dict:
        self._check_sample(n, label)
        # (n, D): drawn here, so that the page puts each draw on the map
        z = self.load().model.prior_sample(n, generator=self._prior_generator(seed))
        images, notes = self._answers(self._melodies(z))
        return {"images": images, "melodies": notes, "seconds_per_step": SECONDS_PER_STEP, **self._where(z),
                "labels": None}

    def test_image(self, index: int) -> dict:
        st = self.load()
        self._test_index(index, st.test_images)
        images, notes = self._answers(st.test_images[index:index + 1])
        return {"index": index, "label": None, "class": None, "image": images[0], "notes": notes[0],
                "seconds_per_step": SECONDS_PER_STEP}

    def reconstruct(self, data: bytes, *, label=None) -> dict:
        raise ConflictError("this run reads melodies, not images: click the map to hear one")
