"""Fixtures of the OpenAI-client tests: a running verinfer API named by the environment.

VERINFER_BASE_URL  the OpenAI base URL, e.g. http://127.0.0.1:8080/v1 (required)
VERINFER_API_KEY   an API key `sk-...` of that server (required)
VERINFER_MODEL     the served model id (default: the first one `GET /v1/models` lists)
VERINFER_EXPECT_FINAL=1  also wait for a receipt to become final on L1 (a devnet: seconds)

`tests/openai_python.rs` (cargo test) starts `verinfer devnet` and runs this suite against it.
"""

import json
import os
import urllib.error
import urllib.request

import openai
import pytest


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.exit(f"{name} is not set: point the suite at a running verinfer API", returncode=2)
    return value


@pytest.fixture(scope="session")
def base_url() -> str:
    return _env("VERINFER_BASE_URL").rstrip("/")


@pytest.fixture(scope="session")
def api_key() -> str:
    return _env("VERINFER_API_KEY")


@pytest.fixture(scope="session")
def client(base_url: str, api_key: str) -> openai.OpenAI:
    # No retries: a 429/5xx must fail the test, not be papered over.
    with openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=120) as c:
        yield c


class Http:
    """Plain HTTP (stdlib) for the routes the client has no method for (receipts)."""

    def __init__(self, base_url: str, api_key: str) -> None:
        self.base_url = base_url
        self.api_key = api_key

    def get(self, path: str) -> tuple[int, dict]:
        """GET `base_url + path`: the status and the JSON body (of errors too)."""
        req = urllib.request.Request(self.base_url + path, headers={"Authorization": f"Bearer {self.api_key}"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())


@pytest.fixture(scope="session")
def http(base_url: str, api_key: str) -> Http:
    return Http(base_url, api_key)


@pytest.fixture(scope="session")
def model(client: openai.OpenAI) -> str:
    return os.environ.get("VERINFER_MODEL") or client.models.list().data[0].id
