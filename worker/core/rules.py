"""The type-rule machinery both sources' tables are made of: `Rule`, the matchers and
declared-type helpers, and `rule_for` (first match wins).

A source's typemap (worker/sources/*/typemap.py) is an ordered tuple of Rules. Each names,
given the column and its context (profile, job options, per-column override; see
worker/core/profiles.py): the SQLite declared type, the SELECT expression that makes the
server render the value (so no per-value Python runs for most types), the wire type of that
expression, an optional column converter (worker/core/converters.py), an optional flag
expression (true where the value was written by a lossy fallback: counted per column), an
optional column CHECK, and whether it can lose information.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from worker.core.errors import InputError
from worker.core.identifiers import string_literal
from worker.core.model import ColumnPlan
from worker.core.profiles import ColumnContext as Ctx


class TypedColumn(Protocol):
    """What the rules read of every source's column; each source's has more."""

    @property
    def name(self) -> str: ...

    @property
    def type_sql(self) -> str:
        """The column's type as the source writes it: numeric(12,2), bigint(20) unsigned."""
        ...

    @property
    def type_name(self) -> str:
        """The base type's name the rules match on: int4, numeric, varchar, datetime, ..."""
        ...

    @property
    def nullable(self) -> bool: ...


Col = TypeVar("Col", bound=TypedColumn)


@dataclass(frozen=True)
class Rule(Generic[Col]):
    name: str
    matches: Callable[[Col, Ctx], bool]
    sqlite_type: Callable[[Col, Ctx], str]
    select: Callable[[str, Col, Ctx], str]  # (quoted column, column, context) -> SQL
    # PostgreSQL's binary COPY type of the expression; None: rows arrive as the driver's
    # Python values (MySQL)
    wire: str | Callable[[Col, Ctx], str] | None = None
    # name in converters.CONVERTERS, or a function of (column, context) giving one or None
    converter: str | Callable[[Col, Ctx], str | None] | None = None
    # SQL boolean: this value took a lossy fallback (None or "": counted elsewhere, or never)
    flag: Callable[[str, Col, Ctx], str | None] | None = None
    check: Callable[[str, Col, Ctx], str] | None = None  # a column CHECK the rule adds
    lossy: bool = False
    note: str = ""

    def wire_for(self, column: Col, ctx: Ctx) -> str | None:
        return self.wire(column, ctx) if callable(self.wire) else self.wire

    def converter_for(self, column: Col, ctx: Ctx) -> str | None:
        return self.converter(column, ctx) if callable(self.converter) else self.converter


def rule_for(rules: Sequence[Rule[Col]], column: Col, ctx: Ctx | None = None) -> Rule[Col]:
    """The first rule of `rules` that matches the column in its context."""
    ctx = ctx or Ctx()
    return next(rule for rule in rules if rule.matches(column, ctx))


def is_type(*names: str) -> Callable[[TypedColumn, Ctx], bool]:
    """Matches columns of these types that no per-column override names."""
    return lambda col, ctx: ctx.override is None and col.type_name in names


def override(name: str, *names: str) -> Callable[[TypedColumn, Ctx], bool]:
    """Matches the override `name`, on columns of these types (any type when none given)."""
    return lambda col, ctx: ctx.override == name and (not names or col.type_name in names)


def typed(ecto: str, rails: str | None = None, django: str | None = None,
          plain: str | None = None) -> Callable[[object, Ctx], str]:
    """Declared type per profile: what each framework's own migrations would write."""
    names = {"ecto": ecto, "rails": rails or ecto, "django": django or ecto,
             "plain": plain or ecto}
    return lambda col, ctx: names[ctx.profile]


def decimal_type(size: str, ctx: Ctx) -> str:
    """A decimal column's declared type, `size` its "(precision,scale)" or ""."""
    if ctx.profile == "django":
        return "decimal"  # Django declares the type without its size on SQLite
    return {"rails": "decimal", "plain": "NUMERIC"}.get(ctx.profile, "DECIMAL") + size


def labels_check(c: str, labels: Sequence[str]) -> str:
    """An enum's CHECK: the value is one of its labels."""
    return f"{c} IN ({', '.join(map(string_literal, labels))})"


def json_converter(profile: str) -> str | None:
    """The converter of a JSON column: the text each framework writes and compares, Rails'
    (compact, in a NUMERIC-affinity column) or Django's (json.dumps, non-ASCII escaped)."""
    return {"rails": "rails_json", "django": "json_ascii"}.get(profile)


def django_json_check(c: str, col: object, ctx: Ctx) -> str:
    """Django's JSONField on SQLite declares CHECK (JSON_VALID(...)); other profiles none."""
    return f"JSON_VALID({c}) OR {c} IS NULL" if ctx.profile == "django" else ""


def checked_rule(rules: Sequence[Rule[Col]], column: Col, ctx: Ctx, *, table: str,
                 override_rules: Mapping[str, str], known: str = "") -> Rule[Col]:
    """The column's rule. A per-column override that does not apply to the column's type
    (its rule, `override_rules[override]`, does not match) is refused, `known` saying which
    overrides the source has."""
    rule = rule_for(rules, column, ctx)
    if ctx.override and override_rules.get(ctx.override) != rule.name:
        raise InputError(f"column_types: {table}.{column.name} is {column.type_sql}, which the "
                         f"override {ctx.override!r} does not apply to{known}")
    return rule


def column_plan(rule: Rule[Col], column: Col, ctx: Ctx, *, quoted: str, wire: str,
                sqlite_type: str | None = None) -> ColumnPlan:
    """What the rule makes of the column (`quoted`, its name in the source's SQL);
    `sqlite_type` overrides the rule's declared type."""
    return ColumnPlan(
        name=column.name, source_type=column.type_sql,
        sqlite_type=sqlite_type or rule.sqlite_type(column, ctx),
        select_sql=rule.select(quoted, column, ctx), wire=wire,
        converter=rule.converter_for(column, ctx), rule=rule.name, lossy=rule.lossy,
        note=rule.note, nullable=column.nullable,
        flag_sql=(rule.flag(quoted, column, ctx) or None) if rule.flag else None)
