"""Every module of src/ holds one concern in at most 400 lines (README, Architecture)."""

from __future__ import annotations

from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
LIMIT = 400


def oversized(root: Path, limit: int = LIMIT) -> dict[str, int]:
    """Modules under ``root`` longer than ``limit`` lines, with their line counts."""
    sizes = {str(p.relative_to(root)): len(p.read_text(encoding="utf-8").splitlines()) for p in root.rglob("*.py")}
    return {name: n for name, n in sorted(sizes.items()) if n > limit}


def test_the_check_counts_lines(tmp_path: Path) -> None:
    (tmp_path / "small.py").write_text("x = 1\n" * 400)
    (tmp_path / "big.py").write_text("x = 1\n" * 401)
    assert oversized(tmp_path) == {"big.py": 401}


def test_no_module_of_src_exceeds_the_limit() -> None:
    assert oversized(SRC) == {}
