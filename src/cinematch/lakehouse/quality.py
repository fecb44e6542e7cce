"""Data-quality checks and gates: hard checks stop a layer; soft checks are reported against a tolerance."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cinematch.core.log import get_logger, log_event
from cinematch.storage.protocol import Warehouse
from cinematch.storage.warehouse import batch_table

log = get_logger(__name__)


@dataclass(frozen=True)
class Check:
    """A data-quality check: ``sql`` returns the offending rows, so an empty result means it passed.

    ``new_rows_sql``, when set, is the same check restricted to the rows of the batches in the temp table
    ``_check_batches(batch_id)``: incremental runs use it, since the rows checked before cannot have changed.
    """

    name: str
    table: str
    sql: str
    severity: str = "hard"
    description: str = ""
    new_rows_sql: str | None = None

    def __post_init__(self) -> None:
        if self.severity not in ("hard", "soft"):
            raise ValueError(f"check {self.name}: severity must be 'hard' or 'soft', not {self.severity!r}")


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one check: how many rows offended and the first few of them."""

    check: Check
    n_offending: int
    sample: list[tuple[Any, ...]] = field(default_factory=list)
    n_rows: int | None = None  # size of the checked table, for soft checks' share
    tolerance: float = 0.0
    scope: str = "all rows"  # or "new batches" (Check.new_rows_sql)

    @property
    def share(self) -> float | None:
        return self.n_offending / self.n_rows if self.n_rows else None

    @property
    def passed(self) -> bool:
        if self.check.severity == "soft" and self.n_rows:
            return self.n_offending / self.n_rows <= self.tolerance
        return self.n_offending == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check.name,
            "table": self.check.table,
            "severity": self.check.severity,
            "passed": self.passed,
            "offending_rows": self.n_offending,
            "share": self.share,
            "tolerance": self.tolerance if self.check.severity == "soft" else None,
            "example": [str(v) for v in self.sample[0]] if self.sample else None,
            "description": self.check.description,
            "scope": self.scope,
        }


def run_checks(
    con: Warehouse,
    checks: tuple[Check, ...],
    tolerance: float = 0.0,
    sample_size: int = 5,
    new_batches: list[str] | None = None,
) -> list[CheckResult]:
    """Run ``checks`` and return one result per check, in order; soft checks get ``tolerance``.

    With ``new_batches``, checks that have a ``new_rows_sql`` look only at those batches' rows.
    """
    results = []
    if new_batches is not None:
        batch_table(con, "_check_batches", new_batches)
    for check in checks:
        scoped = new_batches is not None and check.new_rows_sql is not None
        sql = (check.new_rows_sql if scoped else check.sql).strip().rstrip(";")  # type: ignore[union-attr]
        n = con.execute(f"select count(*) from ({sql}) as offending").fetchall()[0][0]
        sample = con.execute(f"select * from ({sql}) as offending limit {int(sample_size)}").fetchall() if n else []
        n_rows = None
        if check.severity == "soft":
            table = check.table if "." in check.table else f"gold.{check.table}"
            n_rows = con.execute(f"select count(*) from {table}").fetchall()[0][0]
        result = CheckResult(check, n, sample, n_rows, tolerance, "new batches" if scoped else "all rows")
        if n:
            log_event(log, "check_offending", name=check.name, severity=check.severity, rows=n, passed=result.passed)
        results.append(result)
    if new_batches is not None:
        con.execute("drop table _check_batches")
    return results


def failures(results: list[CheckResult]) -> list[CheckResult]:
    """The results that stop a layer: failed hard checks. Soft checks beyond tolerance are only reported."""
    return [r for r in results if not r.passed and r.check.severity == "hard"]


def describe_failure(result: CheckResult) -> str:
    """One line naming the table, the check and an example offending row."""
    example = ", ".join(map(str, result.sample[0])) if result.sample else "n/a"
    share = f" ({result.share:.2%} > {result.tolerance:.2%})" if result.check.severity == "soft" else ""
    return (
        f"quality gate failed on {result.check.table}: check {result.check.name} found "
        f"{result.n_offending} offending row(s){share}, e.g. ({example})"
    )
