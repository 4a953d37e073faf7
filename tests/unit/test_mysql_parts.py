"""MySQL source pieces that need no server: catalog parsing, keyset SQL, converters."""

from __future__ import annotations

import pytest

from worker.sources.mysql import keys as mysql_keys
from worker.sources.mysql.catalog import parse_labels
from worker.sources.mysql.converters import negative_zero, set_json, unsigned_text


def test_mysql_labels_are_unquoted_as_mysql_writes_them():
    assert parse_labels("enum('a','b''c','d\\\\e','x,y')") == ["a", "b'c", "d\\e", "x,y"]
    assert parse_labels("set('')") == [""]


def test_mysql_keyset_sql_quotes_every_value_without_escaping():
    assert mysql_keys.literal("o'k \\ é", "varchar(10)", raw=False) == \
        "_utf8mb4 X'6f276b205c20c3a9'"
    assert mysql_keys.literal("00FF", "binary(2)", raw=True) == "X'00FF'"
    assert mysql_keys.literal(18446744073709551615, "bigint(20) unsigned", raw=False) == \
        "18446744073709551615"
    assert mysql_keys.literal("1.50", "decimal(12,2) unsigned", raw=True) == \
        "CAST(_utf8mb4 X'312e3530' AS DECIMAL(12,2))"
    with pytest.raises(ValueError):
        mysql_keys.literal("0x'; DROP", "varbinary(4)", raw=True)
    assert mysql_keys.raw_key_sql("e", "enum('b','a')") == "(`e` + 0)"
    assert not mysql_keys.keyable("double") and mysql_keys.keyable("datetime(6)")


def test_mysql_converters_count_what_they_change():
    assert unsigned_text([1, None, 2**64 - 1]) == ([1, None, "18446744073709551615"], 1)
    values, changed = negative_zero([-0.0, 0.0, None, 1.5])
    assert values == [0.0, 0.0, None, 1.5] and changed == 1 and str(values[0]) == "0.0"
    assert set_json(["a,b", "", None, 'q"x']) == (['["a","b"]', "[]", None, '["q\\"x"]'], 0)
