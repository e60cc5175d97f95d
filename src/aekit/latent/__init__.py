"""The latent space: encode a dataset, project it to 2-D and back, interpolate, sample."""

from .space import (
    Projection,
    empirical_samples,
    encode_dataset,
    fit_projection,
    interpolate,
    prior_samples,
)

__all__ = ["Projection", "empirical_samples", "encode_dataset", "fit_projection", "interpolate", "prior_samples"]
