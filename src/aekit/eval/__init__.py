"""Evaluation: image metrics as pure tensor functions, and the baselines models are compared to.

Metrics (:mod:`aekit.eval.metrics`) return one value per image; :func:`summarize` averages
them for a table.  Baselines (:mod:`aekit.eval.baselines`) are the classical denoisers, the
interpolating upsamplers and PCA, tuned on validation images and scored with the same metrics.
"""

from .baselines import (
    DEFAULT_MAX_IMAGES,
    DENOISERS,
    UPSAMPLE_METHODS,
    PCABaseline,
    evaluate_denoisers,
    evaluate_upsamplers,
    fit_pca,
    gaussian_blur,
    knn_accuracy,
    median_filter,
    nl_means,
    roc_auc,
    tune_denoisers,
    tv_chambolle,
    upsample,
)
from .metrics import (
    PSNR_CAP_DB,
    bce_per_pixel,
    mean_psnr,
    mse_per_image,
    psnr,
    sse_per_image,
    ssim,
    summarize,
)

__all__ = [
    "DEFAULT_MAX_IMAGES",
    "DENOISERS",
    "PSNR_CAP_DB",
    "UPSAMPLE_METHODS",
    "PCABaseline",
    "bce_per_pixel",
    "evaluate_denoisers",
    "evaluate_upsamplers",
    "fit_pca",
    "gaussian_blur",
    "knn_accuracy",
    "mean_psnr",
    "median_filter",
    "mse_per_image",
    "nl_means",
    "psnr",
    "roc_auc",
    "sse_per_image",
    "ssim",
    "summarize",
    "tune_denoisers",
    "tv_chambolle",
    "upsample",
]
