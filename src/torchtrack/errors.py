"""Errors with a message meant for the user, and the exit code the CLI returns for each: the one
list of every exit code (EXIT_MEANINGS), which --help prints and the README's table repeats."""


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
    """The MLflow tracking store cannot be reached or opened (a server down, a damaged SQLite file)."""


class TrackingLoginError(TrackingStoreError):
    """The MLflow tracking server refuses this login (wrong or missing username or password)."""


class UnsafePlaceError(TrackingStoreError):
    """The store daemon's folder, one of its files or the process on its socket is not this user's
    alone (another account made it, or it is a link): nothing is sent to it or read from it."""


class RunNotFoundError(PipelineError):
    """The tracking store has no run for a file the pipeline made (from DVC's cache, or a cleaned store)."""


EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
EXIT_TERMINATED = 143  # 128 + SIGTERM
EXIT_MEANINGS = {
    0: "success",
    PipelineError.exit_code: "the command failed (e.g. training diverged, tracking server unreachable)",
    InputError.exit_code: "bad params, input data or command line",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
    EXIT_TERMINATED: "terminated (SIGTERM)",
}
