"""`make bench` writes its generated block into BENCHMARKS.md and keeps the notes; quick runs write aside."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def run_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_run", BENCH / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    monkeypatch.setattr(module, "ROOT", tmp_path)
    monkeypatch.setattr(module, "HERE", tmp_path / "benchmarks")
    yield module
    sys.modules.pop("bench_run", None)


def test_full_run_replaces_only_the_generated_block(run_module, tmp_path: Path) -> None:
    record = tmp_path / "BENCHMARKS.md"
    record.write_text("# notes\n\nhand-written analysis\n")
    run_module.write_record("first table\n", quick=False)
    assert record.read_text().count(run_module.START) == 1 and "first table" in record.read_text()
    run_module.write_record("second table\n", quick=False)
    text = record.read_text()
    assert "second table" in text and "first table" not in text and "hand-written analysis" in text
    assert text.count(run_module.START) == 1 and text.count(run_module.END) == 1


def test_quick_run_never_touches_the_record(run_module, tmp_path: Path) -> None:
    record = tmp_path / "BENCHMARKS.md"
    record.write_text("# notes\n")
    path = run_module.write_record("quick table\n", quick=True)
    assert record.read_text() == "# notes\n" and path.read_text() == "quick table\n"


def test_figures_by_path_and_ratios(run_module) -> None:
    doc = {"runs": [{"a": 2.0, "spark": {"a": 8.0}}], "etl": [{"s": 1.0}, {"s": 4.0}]}
    assert run_module.figure(doc, "runs.0.spark.a/runs.0.a") == 4.0
    assert run_module.figure(doc, "etl.-1.s") == 4.0 and run_module.figure(doc, "etl.5.s") is None
    assert run_module.figure(doc, "runs.0.missing") is None
