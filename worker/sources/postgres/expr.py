"""PostgreSQL expressions and view bodies → SQLite SQL, through sqlglot's transpiler.

sqlglot does the dialect work; the transforms here cover what it leaves PostgreSQL-shaped
for our purposes: casts of literals (`'a'::text`, `(0)::numeric`) become the bare literal,
because SQLite's CAST to an unknown type name means NUMERIC affinity (`CAST('{}' AS JSONB)` is
0); `x = ANY (ARRAY[...])` becomes `x IN (...)`; schema qualifiers are dropped (SQLite tables
are named without them). Every identifier is quoted on output, so names with spaces, mixed
case, reserved words and unicode survive.
"""

from __future__ import annotations

from sqlglot import exp

from worker.core import transpile as sql_transpile
from worker.core.transpile import generate

# Functions whose SQLite version computes what PostgreSQL's does on the values we store; a
# generated column using anything else is copied as values instead (lower/upper, for one,
# are ASCII-only in SQLite).
SAME_FUNCTIONS = (exp.Coalesce, exp.Nullif, exp.Length, exp.Abs, exp.Case, exp.If, exp.Cast)


def parse(sql: str) -> exp.Expression:
    return sql_transpile.parse(sql, dialect="postgres")


def to_sqlite(sql: str, *, value_as: str | None = None) -> str:
    """One expression (CHECK, default, index key or predicate, generated column).

    `value_as`: a domain CHECK names its value VALUE; it becomes this column.
    """
    tree = _rewrite(parse(sql))
    if value_as is not None:
        tree = tree.transform(lambda node: exp.column(value_as, quoted=True)
                              if isinstance(node, exp.Column) and node.name.upper() == "VALUE"
                              and not node.table else node)
    return generate(tree)


def view_to_sqlite(body: str) -> str:
    """A view's SELECT (pg_get_viewdef), without its trailing semicolon."""
    tree = _rewrite(parse(body.strip().rstrip(";")))
    for table in tree.find_all(exp.Table):
        table.set("db", None)
        table.set("catalog", None)
    return generate(tree)


def columns_used(sql: str) -> set[str]:
    return {col.name for col in parse(sql).find_all(exp.Column)}


def functions_used(sql: str) -> list[str]:
    """Functions in the expression whose SQLite result may differ from PostgreSQL's."""
    return sorted({type(f).__name__ if not isinstance(f, exp.Anonymous) else f.name
                   for f in parse(sql).find_all(exp.Func) if not isinstance(f, SAME_FUNCTIONS)})


def _rewrite(tree: exp.Expression) -> exp.Expression:
    # transform() does not revisit what a rewrite returns: a second pass reaches the values
    # an ANY(ARRAY[...]) rewrite moved into its IN list.
    return tree.transform(_rewrite_node).transform(_rewrite_node)


def _rewrite_node(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.Cast) and isinstance(_unparen(node.this),
                                                 (exp.Literal, exp.Boolean, exp.Null)):
        return _unparen(node.this).copy()
    if isinstance(node, (exp.EQ, exp.NEQ)) and isinstance(node.expression, (exp.Any, exp.All)):
        values = _array_values(node.expression.this)
        if values is not None:
            member = exp.In(this=node.this.copy(), expressions=values)
            return member if isinstance(node, exp.EQ) else exp.Not(this=member)
    return node


def _array_values(node: exp.Expression) -> list[exp.Expression] | None:
    node = _unparen(node)
    while isinstance(node, exp.Cast):
        node = _unparen(node.this)
    if isinstance(node, exp.Array):
        return [_unparen(v).copy() for v in node.expressions]
    return None


def _unparen(node: exp.Expression) -> exp.Expression:
    while isinstance(node, exp.Paren):
        node = node.this
    return node
