"""The CLI's HTTP client: one place that turns transport and API errors into CliError."""

from __future__ import annotations

from typing import Any

import httpx

from worker.core.config import Settings
from worker.core.redact import redact


class CliError(Exception):
    """Raised for an error the CLI prints as one line and exits with `code`."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.message = message
        self.code = code


class ApiClient:
    """Calls the liteshift API at settings.api_url, with the bearer token when one is set."""

    def __init__(self, settings: Settings, http: httpx.Client | None = None):
        self.url = settings.api_url
        # Submitting waits for the source probe and the reachability check, so the read
        # timeout follows the server's own limits rather than httpx's 5 s default.
        read_s = settings.probe_timeout_s + settings.connect_timeout_s + 30
        self.http = http or httpx.Client(base_url=self.url,
                                         timeout=httpx.Timeout(read_s, connect=5.0))
        self.headers = ({"Authorization": f"Bearer {settings.api_token}"}
                        if settings.api_token else {})

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, json=body)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, headers=self.headers, **kwargs)
        except httpx.TimeoutException:
            raise CliError(f"the liteshift API at {self.url} did not answer in time", 1) from None
        except httpx.TransportError:
            raise CliError(f"cannot reach the liteshift API at {self.url}: "
                           "is `liteshift api` running?", 1) from None
        if response.status_code >= 400:
            raise CliError(_error_message(response), 2 if response.status_code < 500 else 1)
        return response.json()

    @staticmethod
    def error_message(response: httpx.Response) -> str:
        return _error_message(response)


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return redact(body["error"])
    text = response.text.strip()[:300] or response.reason_phrase
    return f"the API answered {response.status_code}: {redact(text)}"
