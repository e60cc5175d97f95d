"""The run layer: a trained run folder, opened and read safely (:class:`Run`, :func:`load`)."""

from .folder import Run, load
from .layout import (
    CHECKPOINTS_DIR,
    CONFIG_NAME,
    METRICS_NAME,
    RECONSTRUCTIONS_NAME,
    REPORT_NAME,
    TEST_METRICS_NAME,
    WEIGHTS_NAME,
    list_checkpoints,
    read_config,
    read_metrics,
    read_test_metrics,
)

__all__ = [
    "CHECKPOINTS_DIR", "CONFIG_NAME", "METRICS_NAME", "RECONSTRUCTIONS_NAME", "REPORT_NAME",
    "TEST_METRICS_NAME", "WEIGHTS_NAME", "Run", "list_checkpoints", "load", "read_config",
    "read_metrics", "read_test_metrics",
]
