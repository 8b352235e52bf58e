"""Errors with a message meant for the user, and the exit code the CLI returns for each."""


class PipelineError(Exception):
    """A stage stopped for a reason its message explains; no traceback needed."""

    exit_code = 1


class InputError(PipelineError, ValueError):
    """Bad params or input data."""

    exit_code = 2


class ConfigError(InputError):
    """A params.yaml value is missing, unknown, mistyped or out of range."""


class DataError(InputError):
    """Input data cannot be used: missing file, empty, non-numeric, missing target."""


class TrainingError(PipelineError):
    """Training could not produce a model, e.g. the loss diverged."""


class TrackingStoreError(PipelineError):
    """The MLflow tracking server cannot be reached."""


class TrackingLoginError(TrackingStoreError):
    """The MLflow tracking server refuses this login (wrong or missing username or password)."""


class RunNotFoundError(PipelineError):
    """The tracking store has no run for a file the pipeline made (from DVC's cache, or a cleaned store)."""
