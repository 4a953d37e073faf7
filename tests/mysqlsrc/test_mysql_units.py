"""MySQL connection errors against the real server: translated once, with advice and no
password. The pure MySQL pieces are tested in tests/unit/test_mysql_parts.py."""

from __future__ import annotations

import pytest

from worker.core.errors import SourceRejected, SourceUnavailable
from worker.sources import for_kind
from worker.sources.url import parse_source_url


@pytest.mark.parametrize(("url", "error", "words"), [
    ("mysql://root:not-the-password@127.0.0.1:3306/mysql", SourceRejected,
     "wrong user name or password"),
    ("mysql://root@127.0.0.1:3306/lstest_no_such_database", SourceRejected,
     "the database does not exist"),
    ("mysql://root@127.0.0.1:1/app", SourceUnavailable, "connection failed"),
])
def test_mysql_connection_errors_are_translated_once(mysql_up, url, error, words):
    source = parse_source_url(url)
    with pytest.raises(error) as raised:
        with for_kind("mysql").connect(source, timeout_s=3):
            pass
    assert words in str(raised.value)
    assert "not-the-password" not in str(raised.value)
