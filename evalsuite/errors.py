"""The one exception hierarchy. `cli.main` turns these into a one-line message and an exit code.

Exit codes: 0 every check passed; 1 a check failed or scoring broke (fail closed);
2 usage, config or input error (the user must change something before a run can mean anything).
"""

from __future__ import annotations


class EvalsuiteError(Exception):
    """Base class. `str(err)` is the whole user-facing message: the problem, then the fix."""

    exit_code: int = 2


class UsageError(EvalsuiteError):
    """Bad command-line arguments."""


class ConfigError(EvalsuiteError):
    """A TOML config is malformed, has unknown keys, wrong types or missing values."""


class DataError(EvalsuiteError):
    """A dataset is missing, has the wrong sha256, or is empty after truncation."""


class ModelError(EvalsuiteError):
    """A model source cannot be found, loaded, exported or is unsafe/incompatible."""


class ScoringError(EvalsuiteError):
    """Something broke while scoring (NaN/Inf logits, runtime failure). The gate fails."""

    exit_code = 1


class GateFailed(EvalsuiteError):
    """At least one configured check did not pass."""

    exit_code = 1
