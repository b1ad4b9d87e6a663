"""The one wording of "a server does not answer": the MLflow tracking server (tasks/tracking.py) and
the Prefect API (flows/servers.py, flows/deployments.py). No Prefect or MLflow import: Prefect reads
its settings when first imported."""

from __future__ import annotations

PROBE_TIMEOUT_S = 5  # how long a health check waits for a server
MLFLOW_FIX = "check that the server runs (`adapterflow up` starts one) and that tracking.uri / MLFLOW_TRACKING_URI is right"
PREFECT_FIX = "start one with `adapterflow up`, or fix PREFECT_API_URL"


def unreachable(server: str, url: str, error: BaseException, timeout_s: float, fix: str) -> str:
    """'<server> <url> is not reachable (<why>); <fix>', `error` being what the request raised."""
    return f"{server} {url} is not reachable ({_reason(error, timeout_s)}); {fix}"


def _reason(error: BaseException, timeout_s: float) -> str:
    response = getattr(error, "response", None)
    if response is not None:
        return f"HTTP {response.status_code} from {response.request.url}"
    text = str(error)
    if isinstance(error, TimeoutError) or "Timeout" in type(error).__name__ or "timed out" in text:
        return f"no answer within {timeout_s} s"
    if "refused" in text:
        return "connection refused"
    if "resolve" in text or "not known" in text:
        return "host name not found"
    return f"{type(error).__name__}: {text.splitlines()[0][:200] if text else ''}"
