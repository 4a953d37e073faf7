"""The JSON text each framework writes on SQLite, which its lookups compare: Django's
json.dumps (non-ASCII escaped) and ActiveSupport's (compact, HTML characters escaped)."""

from __future__ import annotations

import json
import sqlite3

from worker.core.converters import json_ascii, rails_json


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


def test_rails_json_is_compact_as_activesupport_writes_it():
    # ActiveSupport::JSON.encode({"a" => "<é>&", "b" => [1.5, nil]}) on ActiveRecord 6.1;
    # jsonb::text's spaces made where(doc: h) miss on SQLite, which compares the text
    jsonb_text = '{"a": "<é>& \\" x", "b": [1.5, null]}'
    assert rails_json([jsonb_text, " 5 ", None]) == (
        ['{"a":"\\u003cé\\u003e\\u0026 \\" x","b":[1.5,null]}', 5, None], 1)
