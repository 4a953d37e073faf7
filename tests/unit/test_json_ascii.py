"""Django's JSONField text on SQLite is json.dumps's: non-ASCII escaped. Its key lookups and
exact matches compare that text, so the django profile writes JSON the same way."""

from __future__ import annotations

import json
import sqlite3

from worker.core.converters import json_ascii


def test_json_text_is_escaped_as_json_dumps_writes_it():
    value = {"é": "ü 😀", "a": [1, "\u2028", None], "q": 'x"\\'}
    raw = json.dumps(value, ensure_ascii=False)  # what jsonb::text and MySQL's JSON print
    assert json_ascii([raw, None, "[]"]) == ([json.dumps(value), None, "[]"], 0)


def test_djangos_key_lookup_finds_the_escaped_key_only():
    # Django's has_key("é") is JSON_TYPE(data, '$."\u00e9"'): SQLite matches the key's text
    db = sqlite3.connect(":memory:")
    path = '$."\\u00e9"'
    raw, escaped = '{"é": 1}', json_ascii(['{"é": 1}'])[0][0]
    assert db.execute("SELECT JSON_TYPE(?, ?), JSON_TYPE(?, ?)",
                      (raw, path, escaped, path)).fetchone() == (None, "integer")
