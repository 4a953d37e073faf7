"""The API token's edges: a token that could never be sent as configured is refused with a
message naming LITESHIFT_API_TOKEN, every loopback spelling counts as loopback, and the
README says what the code does about the paths a caller may reach without the token."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from api.cli import commands as cli
from api.guards import OPEN_PATHS
from worker.core.config import get_settings

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
def environment(monkeypatch, tmp_path):
    """A CLI whose API would be a closed port: only the settings decide the outcome."""
    monkeypatch.setenv("LITESHIFT_API_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("LITESHIFT_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


@pytest.mark.parametrize(("token", "words"), [
    (" tok-123456", "has spaces or line breaks at its start or end"),
    ("tok-123456\n", "has spaces or line breaks at its start or end"),
    ("tök-123456", "must be printable ASCII without spaces"),
    ("tok 123456", "must be printable ASCII without spaces"),
])
def test_a_token_that_cannot_be_sent_is_one_clean_error(environment, capsys, token, words):
    environment.setenv("LITESHIFT_API_TOKEN", token)

    code = cli.main(["jobs"])

    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("liteshift: error: invalid configuration: LITESHIFT_API_TOKEN: ")
    assert words in err and "Traceback" not in err
    assert token.strip() not in err  # the token itself is not printed


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.0.0.2", True), ("localhost", True), ("LOCALHOST", True),
    ("::1", True), ("[::1]", True), ("::ffff:127.0.0.1", True), ("::ffff:7f00:2", True),
    ("0.0.0.0", False), ("::", False), ("::ffff:10.0.0.1", False), ("example.com", False),
])
def test_every_loopback_spelling_counts_as_loopback(host, loopback):
    assert cli._is_loopback(host) is loopback


def test_the_readme_names_exactly_the_paths_open_without_a_token():
    text = README.read_text()
    sentence = re.search(r"Every path but (.*?) needs", text, re.S)
    assert sentence, "the README's HTTP API section says which paths need no token"
    assert set(re.findall(r"`(/[^`]*)`", sentence.group(1))) == set(OPEN_PATHS)
