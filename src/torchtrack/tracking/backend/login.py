"""Logins to a tracking server behind MLflow's basic-auth app (`torchtrack server --auth`).

The client's credentials come from MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, as
MLflow's own client reads them. A stage checks them once, before it creates a run, so a wrong
password ends it in one line instead of a traceback from the first run it tries to create;
neither the message nor anything logged carries the password.
"""

from __future__ import annotations

import os

from torchtrack.errors import TrackingLoginError

USERNAME = "MLFLOW_TRACKING_USERNAME"
PASSWORD = "MLFLOW_TRACKING_PASSWORD"
TOKEN = "MLFLOW_TRACKING_TOKEN"
PROBE = "api/2.0/mlflow/experiments/search?max_results=1"  # the cheapest call every login may make


def credentials() -> tuple[str, str] | None:
    """(username, password) from the environment, or None unless both are set (as in MLflow)."""
    username, password = os.environ.get(USERNAME), os.environ.get(PASSWORD)
    return (username, password) if username and password else None


def check_login(address: str, timeout: float = 5.0) -> None:
    """Raise TrackingLoginError when the server at `address` (a URL without credentials) refuses
    this environment's login (HTTP 401). Any other answer, or none, is left to MLflow to report.
    """
    import requests

    login = credentials()
    headers = {"Authorization": f"Bearer {os.environ[TOKEN]}"} if os.environ.get(TOKEN) else {}
    try:
        response = requests.get(
            f"{address.rstrip('/')}/{PROBE}",
            auth=login,
            headers=headers,
            timeout=(timeout, 2 * timeout),
            allow_redirects=False,
        )
    except requests.RequestException:
        return
    if response.status_code != 401:
        return
    if login is None and not headers:
        raise TrackingLoginError(
            f"the MLflow tracking server at {address} asks for a login: set {USERNAME} and {PASSWORD}"
        )
    who = f"user {login[0]!r}" if login else TOKEN
    raise TrackingLoginError(
        f"the MLflow tracking server at {address} refused the login of {who} (HTTP 401): "
        f"check {USERNAME} and {PASSWORD}"
    )
