"""DuckDB-dialect SQL → PostgreSQL with sqlglot, plus the rewrites sqlglot does not do; cached per statement."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

import sqlglot
from sqlglot import TokenType, exp, transforms

from cinematch.core.errors import BadInput


@dataclass(frozen=True)
class Translation:
    """A DuckDB statement as PostgreSQL: one or more statements run in order (in one transaction)."""

    statements: tuple[str, ...]
    bound: tuple[bool, ...]  # per statement: whether it takes the parameters (its literal % are escaped)
    params: tuple[str, ...]  # placeholder names in the PostgreSQL text (the i-th `?` is named `_p<i>`)
    positional: int
    tables: frozenset[str]
    kind: str  # "query", "transaction", "other"
    insert_target: str | None = None
    insert_columns: tuple[str, ...] | None = None
    insert_source_tables: frozenset[str] = field(default_factory=frozenset)
    insert_select: str | None = None  # the insert's SELECT in DuckDB's dialect (evaluated locally when possible)
    # when that SELECT only picks columns of one table and constants: ("col", name) | ("const", expr) | ("star", "")
    insert_plan: tuple[tuple[str, str], ...] | None = None


def table_name(t: exp.Table) -> str:
    """``schema.name`` of a table reference, lower-cased (how registered and attached names are matched)."""
    return ".".join(p for p in (t.catalog, t.db, t.name) if p).lower()


def _anti_joins(node: exp.Expr) -> exp.Expr:
    """``a anti join b using (k)`` → ``where not exists (select 1 from b where a.k = b.k)`` (semi: ``exists``)."""
    if not isinstance(node, exp.Select):
        return node
    left = node.args.get("from_") or node.args.get("from")
    for join in list(node.args.get("joins") or []):
        if join.kind not in ("SEMI", "ANTI"):
            continue
        on = join.args.get("on")
        using = join.args.get("using")
        if on is None and using and left is not None:
            lname = left.this.alias_or_name
            rname = join.this.alias_or_name
            on = exp.and_(*(exp.column(u.name, lname).eq(exp.column(u.name, rname)) for u in using))
        if on is None:
            continue
        exists: exp.Expr = exp.Exists(this=exp.select("1").from_(join.this.copy()).where(on))
        if join.kind == "ANTI":
            exists = exists.not_()
        join.pop()
        node.where(exists, copy=False)
    return node


def _qualify(node: exp.Expr) -> exp.Expr:
    """QUALIFY → a filtering subquery. Over ``select *`` the row is carried whole so no helper column leaks out."""
    if not isinstance(node, exp.Select) or not node.args.get("qualify"):
        return node
    star_only = len(node.expressions) == 1 and isinstance(node.expressions[0], exp.Star)
    source = node.args.get("from_") or node.args.get("from")
    if not star_only or node.args.get("joins") or source is None or not isinstance(source.this, exp.Table):
        return transforms.eliminate_qualify(node)
    condition = node.args["qualify"].this.copy()
    table: exp.Expr = source.this.copy()
    alias = table.alias_or_name
    if not table.alias:
        table = exp.alias_(table, alias, table=True)
    inner = node.copy()
    inner.set("qualify", None)
    inner.set("order", None)
    inner.set("limit", None)
    inner.set("expressions", [exp.alias_(exp.column(alias), "_cm_row"), exp.alias_(condition, "_cm_keep")])
    inner.set("from_" if "from_" in inner.args else "from", exp.From(this=table))
    outer = exp.select(exp.Dot(this=exp.Paren(this=exp.column("_cm_row", "_cm_q")), expression=exp.Star()))
    outer = outer.from_(exp.alias_(exp.Subquery(this=inner), "_cm_q", table=True)).where(
        exp.column("_cm_keep", "_cm_q")
    )
    for arg in ("order", "limit"):
        if node.args.get(arg):
            outer.set(arg, node.args[arg].copy())
    return outer


def _functions(node: exp.Expr) -> exp.Expr:
    """DuckDB spellings PostgreSQL lacks: ``make_date`` as parsed by sqlglot, ``order by all``."""
    if (
        isinstance(node, exp.Select)
        and node.args.get("order")
        and not any(isinstance(e, exp.Star) for e in node.expressions)
    ):
        ordered = node.args["order"].expressions
        if len(ordered) == 1 and isinstance(ordered[0].this, exp.Var) and ordered[0].this.name.upper() == "ALL":
            template = ordered[0]
            node.args["order"].set("expressions", [
                exp.Ordered(this=exp.Literal.number(i + 1), desc=template.args.get("desc"),
                            nulls_first=template.args.get("nulls_first"))
                for i in range(len(node.expressions))
            ])  # fmt: skip
        return node
    if isinstance(node, exp.DateFromParts):
        return exp.Anonymous(this="make_date", expressions=[node.args["year"], node.args["month"], node.args["day"]])
    return node


def _number_positional(sql: str) -> tuple[str, int]:
    """``?`` → ``$_p0``, ``$_p1``, ... in textual order (the order a parameter list binds in), via the tokenizer."""
    parts: list[str] = []
    last = count = 0
    for tok in sqlglot.tokenize(sql, read="duckdb"):
        if tok.token_type == TokenType.PLACEHOLDER and tok.text == "?":
            parts += [sql[last : tok.start], f"$_p{count}"]
            last, count = tok.end + 1, count + 1
    return "".join([*parts, sql[last:]]), count


def _to_postgres(tree: exp.Expr, names: set[str]) -> tuple[str, bool]:
    """Generate PostgreSQL text; placeholders become ``%(name)s`` and literal ``%`` is escaped for psycopg."""
    tree = tree.transform(_qualify).transform(_anti_joins).transform(_functions)
    own: set[str] = set()
    for ph in list(tree.find_all(exp.Placeholder)):
        own.add(ph.name)
        ph.replace(exp.Placeholder(this=f"cmph_{ph.name}"))
    text = tree.sql(dialect="postgres")
    if not own:
        return text, False
    names |= own
    text = text.replace("%", "%%")
    return re.sub(r"%%\(cmph_([A-Za-z0-9_]+)\)s", r"%(\1)s", text), True


def _create_or_replace(tree: exp.Create, names: set[str]) -> list[tuple[str, bool]]:
    target = tree.this.this if isinstance(tree.this, exp.Schema) else tree.this
    plain = tree.copy()
    plain.set("replace", False)
    return [(f"drop table if exists {exp.table_name(target, dialect='postgres')}", False), _to_postgres(plain, names)]


_CONSTANTS = (exp.Placeholder, exp.Literal, exp.Null, exp.Boolean)


def _projection_plan(query: exp.Expr) -> tuple[tuple[str, str], ...] | None:
    """For ``select a, b, $x, 'y' from t``: which outputs are columns of t and which are constants, else None.

    Such an insert needs no query engine: the columns are taken from the registered Arrow table as they are
    and each constant is evaluated once (ingestion appends batch id, source file and time to every row).
    """
    if not isinstance(query, exp.Select) or len(list(query.find_all(exp.Table))) != 1:
        return None
    if any(query.args.get(a) for a in ("joins", "where", "group", "having", "order", "limit", "distinct", "qualify",
                                       "with", "offset")):  # fmt: skip
        return None
    plan = []
    for item in query.expressions:
        node = item.this if isinstance(item, exp.Alias) else item
        if isinstance(node, exp.Star):
            plan.append(("star", ""))
        elif isinstance(node, exp.Column) and not isinstance(node.this, exp.Star):
            plan.append(("col", node.name))
        elif isinstance(node, _CONSTANTS) or (isinstance(node, exp.Cast) and isinstance(node.this, _CONSTANTS)):
            plan.append(("const", node.sql(dialect="duckdb")))
        else:
            return None
    return tuple(plan)


@functools.lru_cache(maxsize=1024)
def translate(sql: str) -> Translation:
    """Translate one DuckDB statement (or ``;``-separated statements) to PostgreSQL; cached per text."""
    try:
        numbered, positional = _number_positional(sql)
        trees = [t for t in sqlglot.parse(numbered, read="duckdb") if t is not None]
    except sqlglot.errors.SqlglotError as exc:
        raise BadInput(f"cannot translate SQL for PostgreSQL: {' '.join(str(exc).split())[:200]}") from None
    statements: list[tuple[str, bool]] = []
    names: set[str] = set()
    tables: set[str] = set()
    kind = "other"
    insert: dict[str, Any] = {}
    for tree in trees:
        tables |= {table_name(t) for t in tree.find_all(exp.Table)}
        if isinstance(tree, exp.Transaction):
            statements.append(("begin isolation level repeatable read", False))
            kind = "transaction"
        elif isinstance(tree, exp.Commit | exp.Rollback):
            statements.append((tree.sql(dialect="postgres"), False))
            kind = "transaction"
        elif isinstance(tree, exp.Create) and tree.args.get("replace") and tree.kind == "TABLE":
            statements += _create_or_replace(tree, names)
        else:
            if isinstance(tree, exp.Query):
                kind = "query"
            if isinstance(tree, exp.Insert) and isinstance(tree.expression, exp.Query) and len(trees) == 1:
                target = tree.this
                cols = tuple(c.name for c in target.expressions) if isinstance(target, exp.Schema) else None
                table = target.this if isinstance(target, exp.Schema) else target
                insert = {"insert_target": table_name(table), "insert_columns": cols,
                          "insert_source_tables": frozenset(table_name(t) for t in tree.expression.find_all(exp.Table)),
                          "insert_select": tree.expression.sql(dialect="duckdb"),
                          "insert_plan": _projection_plan(tree.expression)}  # fmt: skip
            statements.append(_to_postgres(tree, names))
    texts, bound = tuple(t for t, _ in statements), tuple(b for _, b in statements)
    return Translation(texts, bound, tuple(sorted(names)), positional, frozenset(tables), kind, **insert)
