"""Typed results of the public steps: dataclasses whose fields are the JSON the CLI prints (``--json``).

A step returns one of these instead of a bare dict, so its fields are named, typed and checked by mypy. Each
result is also a read-only mapping of those same field names (``run["layers"]``, ``run.get("as_of")``,
``dict(run)``), the shape callers and the JSON output have always had; ``to_dict`` is that JSON, nested results
included.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any


def plain(value: Any) -> Any:
    """``value`` with every nested result turned into its dict (lists, tuples and dicts walked)."""
    if isinstance(value, Result):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


class Result(Mapping[str, Any]):
    """Base of the typed results (subclasses are dataclasses). Fields whose value is None and that are declared
    with ``metadata={"omit_none": True}`` are left out of the dict, as optional keys were before."""

    def _fields(self) -> Iterator[tuple[str, Any]]:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is None and f.metadata.get("omit_none"):
                continue
            yield f.name, value

    def to_dict(self) -> dict[str, Any]:
        return {name: plain(value) for name, value in self._fields()}

    def __getitem__(self, key: str) -> Any:
        for name, value in self._fields():
            if name == key:
                return value
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._fields())

    def __len__(self) -> int:
        return sum(1 for _ in self._fields())


def optional(default: Any = None) -> Any:
    """A field left out of ``to_dict`` while it is None (a key that only some runs have)."""
    return dataclasses.field(default=default, metadata={"omit_none": True})
