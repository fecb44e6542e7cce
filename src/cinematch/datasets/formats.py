"""The ratings and movies formats CineMatch accepts, and their detection from a file's first bytes and lines."""

from __future__ import annotations

import re
from pathlib import Path

from cinematch.core.errors import BadInput
from cinematch.datasets.delimited import content_error

RATINGS_FORMATS = ("parquet", "movielens_csv", "csv", "ml100k", "ml1m", "streaming_csv", "netflix")
MOVIES_FORMATS = ("parquet", "movielens_movies", "ml100k_items", "ml1m_movies")
ALL_FORMATS = ("auto", *sorted(set(RATINGS_FORMATS) | set(MOVIES_FORMATS)))

_FIX = "convert it to one of the formats in the README (Parquet or MovieLens ratings.csv) or pass --format"


def head_text(path: Path, size: int = 65536) -> tuple[bytes, list[str]]:
    """The first bytes of ``path`` (a UTF-8 BOM dropped) and its complete non-blank lines among them."""
    with path.open("rb") as fh:
        raw = fh.read(size)
    full = len(raw) == size
    raw = raw.removeprefix(b"\xef\xbb\xbf")
    text = raw.decode("utf-8", errors="replace")
    lines = [ln.strip("\r") for ln in text.split("\n")]
    if full:
        lines = lines[:-1]  # the last line may be cut in the middle
    return raw, [ln for ln in lines if ln.strip()]


def check_file(path: Path) -> None:
    """Refuse missing, unreadable or empty files with one clear line."""
    if not path.exists():
        raise BadInput(f"file not found: {path}; check the path")
    if path.is_dir():
        raise BadInput(f"{path} is a folder, not a file; pass one batch file (or use --landing)")
    if path.stat().st_size == 0:
        raise BadInput(f"file is empty: {path}; nothing to load")


def _no_lines(path: Path, raw: bytes) -> BadInput:
    """The error for a file whose first 64 KiB hold no complete line, or only CR line breaks."""
    if not raw.strip():
        return BadInput(f"file is empty: {path}; it holds only blank lines, nothing to load")
    if b"\r" in raw and b"\n" not in raw:
        return BadInput(f"{path} uses old Mac line breaks (CR only); convert them to LF, e.g. with `mac2unix`")
    return BadInput(
        f"{path} has no line break in its first {len(raw):,} bytes: it is not a ratings or movies text file "
        f"(a text file has one record per line); {_FIX}"
    )


def _usual_counts(lines: list[str], delim: str) -> set[int]:
    """The most common numbers of fields among the first lines (so one malformed first line is not decisive)."""
    counts = [len(line.split(delim)) for line in lines[:9]]
    top = max(counts.count(c) for c in counts)
    return {c for c in counts if counts.count(c) == top}


def detect_format(path: Path, kind: str = "ratings") -> str:
    """Guess the format of ``path`` from its magic bytes and first lines."""
    check_file(path)
    raw, lines = head_text(path)
    if raw[:4] == b"PAR1":
        return "parquet"
    if path.suffix.lower() == ".parquet":
        raise BadInput(f"{path} is named .parquet but is not a Parquet file; re-export it as Parquet")
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise BadInput(f"{path} is UTF-16 text; re-encode it as UTF-8, e.g. `iconv -f utf-16 -t utf-8`")
    if b"\x00" in raw[:4096]:
        raise BadInput(f"{path} is a binary file of unknown format; {_FIX}")
    if not lines or (b"\r" in raw.rstrip(b"\r") and b"\n" not in raw):
        raise _no_lines(path, raw)
    first = lines[0]
    fields = set(f.strip().strip('"').lower() for f in first.split(","))
    # a header names the format; headerless formats are told by their most common field count in the first lines
    if {"movieid", "title", "genres"} <= fields:
        return "movielens_movies"
    if {"date", "cust_id", "movie_id", "rating"} <= fields:
        return "streaming_csv"
    if {"userid", "movieid", "rating"} <= fields:
        return "movielens_csv"
    if {"user_id", "movie_id", "rating"} <= fields:
        return "csv"
    if re.fullmatch(r"\d+:\s*", first):
        return "netflix"
    if any("::" in line for line in lines[:9]):
        usual = _usual_counts(lines, "::")
        if 4 in usual:
            return "ml1m"
        if 3 in usual:
            return "ml1m_movies"
    if any("\t" in line for line in lines[:9]) and 4 in _usual_counts(lines, "\t"):
        return "ml100k"
    if "|" in first and len(first.split("|")) >= 20 and first.split("|")[0].strip().isdigit():
        return "ml100k_items"
    parts = [f.strip() for f in first.split(",")]
    if len(parts) == 4 and re.fullmatch(r"\d{4}-\d{2}-\d{2}.*", parts[0]) and parts[1].isdigit():
        return "streaming_csv"
    message = f"cannot recognise the format of {path}{{}}; {_FIX}"
    raise content_error(message.format(f" (first line: {first[:60]!r})"), message.format(""))
