"""The one exception hierarchy and the exit codes. `cli.main` turns these into a one-line message and
an `ExitCode`.

Exit codes: 0 every check passed; 1 a check failed or scoring broke (fail closed);
2 usage, config or input error (the user must change something before a run can mean anything);
130 interrupted (SIGINT); 143 terminated (SIGTERM).
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """What `evalsuite` exits with (as pytest's `ExitCode`); the values are the stable interface for CI."""

    OK = 0  #: every check passed (eval: every run scored)
    GATE_FAILED = 1  #: a check failed, scoring broke or an internal error (the gate fails closed)
    USAGE = 2  #: usage, config or input error: change something before a run can mean anything
    INTERRUPTED = 130  #: SIGINT (Ctrl-C): 128 + 2
    TERMINATED = 143  #: SIGTERM (CI cancel or timeout): 128 + 15


class EvalsuiteError(Exception):
    """Base class. `str(err)` is the whole user-facing message: the problem, then the fix."""

    exit_code: ExitCode = ExitCode.USAGE


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

    exit_code = ExitCode.GATE_FAILED
