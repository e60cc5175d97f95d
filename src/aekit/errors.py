"""aekit's own error types.

Every problem that a user can fix (a bad file, a wrong option, a shape that does not fit)
is raised as an :class:`AekitError` with a message that names the thing and the fix.  The CLI
prints such errors as one line and exits non-zero; anything else is a bug in aekit.
"""


class AekitError(Exception):
    """Base class: a problem the user can fix, described in one line."""


class DataError(AekitError):
    """A dataset or image file is missing, corrupt or of the wrong kind."""


class ConfigError(AekitError):
    """An option, a config value or a shape does not fit."""


class CheckpointError(AekitError):
    """A run folder or checkpoint cannot be read (missing, corrupt, or unsafe)."""


class TrainingError(AekitError):
    """Training cannot go on (a NaN loss, for example)."""
