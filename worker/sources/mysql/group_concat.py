"""MySQL's GROUP_CONCAT(DISTINCT x ORDER BY o SEPARATOR s) in SQL that SQLite 3.40 runs.

SQLite reads an ORDER BY inside an aggregate only from 3.44 on, and never a DISTINCT
aggregate with a second argument (the separator). Each such GROUP_CONCAT becomes a
group_concat(v, s) fed by an ordered subquery over the same FROM and WHERE, narrowed to the
row's group: SQLite's group_concat concatenates in the order its subquery yields the rows.

    SELECT k AS k, GROUP_CONCAT(DISTINCT x ORDER BY o SEPARATOR s) AS g FROM f GROUP BY k
    → SELECT _ls_g.k AS k,
             (SELECT group_concat(_ls_v, s) FROM (SELECT x AS _ls_v FROM f
              WHERE k IS _ls_g._ls_k0 GROUP BY _ls_v ORDER BY MIN(o))) AS g
      FROM (SELECT k AS k, k AS _ls_k0 FROM f GROUP BY k) AS _ls_g

DISTINCT becomes GROUP BY the value, ordered by the least (DESC: greatest) of its order
keys. Only the forms that keep MySQL's result are rewritten: the GROUP_CONCAT is a whole
(named) column of a SELECT that either groups, with every column named, or selects only it;
anything else is left as it is, and SQLite's refusal reports the view as skipped.
"""

from __future__ import annotations

from sqlglot import exp

VALUE = "_ls_v"
GROUPS = "_ls_g"


def rewrite(tree: exp.Expression) -> exp.Expression:
    """The tree with every rewritable GROUP_CONCAT rewritten, innermost SELECT first."""
    selects = [s for s in tree.find_all(exp.Select)]
    for select in sorted(selects, key=lambda s: -s.depth):
        replaced = _rewrite_select(select)
        if replaced is not None:
            if select is tree:
                tree = replaced
            else:
                select.replace(replaced)
    return tree


def _needs_rewrite(node: exp.Expression) -> bool:
    return isinstance(node, exp.GroupConcat) and (
        isinstance(node.this, exp.Order) or
        (isinstance(node.this, exp.Distinct) and node.args.get("separator") is not None))


def _rewrite_select(select: exp.Select) -> exp.Select | None:
    targets = {i for i, column in enumerate(select.expressions)
               if _needs_rewrite(column.unalias())}
    if not targets:
        return None
    found = [n for n in select.find_all(exp.GroupConcat) if _needs_rewrite(n)
             and n.find_ancestor(exp.Select) is select]
    if len(found) != len(targets):
        return None  # one inside an expression: left as it is
    group = select.args.get("group")
    if group is None:
        if len(select.expressions) != 1 or select.args.get("having"):
            return None
        column = select.expressions[0]
        return _feeder(column.unalias(), select, None, name=column.alias)
    if select.args.get("distinct") or any(not c.alias_or_name for c in select.expressions):
        return None
    keys = [k.copy() for k in group.expressions]
    grouped = select.copy()
    grouped.set("expressions", [c.copy() for i, c in enumerate(select.expressions)
                                if i not in targets]
                + [exp.alias_(k, f"_ls_k{n}") for n, k in enumerate(keys)])
    columns: list[exp.Expr] = []
    for i, column in enumerate(select.expressions):
        name = column.alias_or_name
        if i in targets:
            correlation: list[exp.Expression] = [
                exp.NullSafeEQ(this=k.copy(), expression=exp.column(f"_ls_k{n}", GROUPS))
                for n, k in enumerate(keys)]
            feeder = _feeder(column.unalias(), select, correlation)
            columns.append(exp.alias_(exp.Subquery(this=feeder), name))
        else:
            columns.append(exp.alias_(exp.column(name, GROUPS), name))
    return exp.select(*columns).from_(grouped.subquery(GROUPS))


def _concat(node: exp.GroupConcat) -> exp.Expression:
    separator = node.args.get("separator")
    args = [exp.column(VALUE)] + ([separator.copy()] if separator is not None else [])
    return exp.Anonymous(this="group_concat", expressions=args)


def _feeder(node: exp.GroupConcat, select: exp.Select,
            correlation: list[exp.Expression] | None, name: str = "") -> exp.Select:
    """SELECT group_concat(_ls_v, s) FROM (the ordered values of one group)."""
    body = node.this
    order = body.expressions if isinstance(body, exp.Order) else []
    value = body.this if isinstance(body, exp.Order) else body
    distinct = isinstance(value, exp.Distinct)
    if distinct:
        value = value.expressions[0] if len(value.expressions) == 1 else exp.Concat(
            expressions=[e.copy() for e in value.expressions])
    values = exp.select(exp.alias_(value.copy(), VALUE))
    values.set("from_", select.args["from_"].copy())
    if select.args.get("joins"):
        values.set("joins", [j.copy() for j in select.args["joins"]])
    conditions = ([select.args["where"].this.copy()] if select.args.get("where") else []) + (
        correlation or [])
    if conditions:
        values = values.where(exp.and_(*conditions), copy=False)
    if distinct:
        values = values.group_by(exp.column(VALUE), copy=False)
        order = [exp.Ordered(this=exp.Max(this=o.this.copy()) if o.args.get("desc")
                             else exp.Min(this=o.this.copy()), desc=o.args.get("desc"),
                             nulls_first=not o.args.get("desc"))  # MySQL's NULL order
                 for o in order]
    if order:
        values = values.order_by(*[o.copy() for o in order], copy=False)
    concat = _concat(node)
    return exp.select(exp.alias_(concat, name) if name else concat).from_(values.subquery())
