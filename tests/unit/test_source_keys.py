"""The chunk key both sources share (worker/core/keys.py) and PostgreSQL's resume clause."""

from __future__ import annotations

from worker.core.keys import after_clause, chunk_key
from worker.sources.postgres import keys as pg_keys


def test_the_primary_key_wins_else_the_shortest_usable_unique_key():
    def exact(column: str) -> bool:
        return column != "score"

    assert chunk_key(["id"], [["a"]], not_null={"a"}, orders_exactly=exact) == \
        (["id"], "primary_key")
    assert chunk_key([], [["a", "b"], ["b"], ["c"]], not_null={"a", "b"},
                     orders_exactly=exact) == (["b"], "unique")
    assert chunk_key(["score"], [["score"], [None], ["n"]], not_null={"score"},
                     orders_exactly=exact) == ([], "none")


def test_a_resume_clause_compares_one_column_or_a_row_value():
    assert after_clause(["a"], ["1"]) == "a > 1"
    assert after_clause(["a", "b"], ["1", "2"]) == "(a, b) > (1, 2)"


def test_postgres_resume_values_are_literals_of_the_key_types():
    clause = pg_keys.after_clause(["id", 'we"ird'], ["bigint", "text"], [7, "o'k \\ é"])

    assert clause == '("id", "we""ird") > (\'7\'::bigint, E\'o\'\'k \\\\ é\'::text)'
