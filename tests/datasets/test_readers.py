"""Every ratings and movies format is detected and read into the canonical columns."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cinematch.core.errors import BadInput
from cinematch.datasets.formats import detect_format
from cinematch.datasets.movies import read_movies
from cinematch.datasets.ratings import normalize_ratings, read_ratings, read_ratings_raw

ML_CSV = "userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n1,1029,3.0,1260759179\n"
U_DATA = "196\t242\t3\t881250949\n186\t302\t3\t891717742\n"
ML1M = "1::1193::5::978300760\n1::661::3::978302109\n"
STREAM = "DATE,CUST_ID,MOVIE_ID,RATING\n2005-09-06,1488844,3,4\n2005-05-13,822109,3,5\n"
NETFLIX = "1:\n1488844,3,2005-09-06\n822109,5,2005-05-13\n2:\n2059652,4,2005-09-05\n"
MOVIES = 'movieId,title,genres\n1,Toy Story (1995),Adventure|Animation|Children\n2,"American President, The (1995)",Comedy|Drama|Romance\n3,Untitled,(no genres listed)\n'
U_ITEM = (
    "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
    "2|Caf\xe9 Society (1996)|01-Jan-1996||http://y|0|0|0|0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|0\n"
)


def write(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


@pytest.mark.parametrize(
    ("name", "text", "fmt", "first"),
    [
        ("ratings.csv", ML_CSV, "movielens_csv", (1, 31, 2.5, datetime(2009, 12, 14, 2, 52, 24))),
        ("u.data", U_DATA, "ml100k", (196, 242, 3.0, datetime(1997, 12, 4, 15, 55, 49))),
        ("ratings.dat", ML1M, "ml1m", (1, 1193, 5.0, datetime(2000, 12, 31, 22, 12, 40))),
        ("stream.csv", STREAM, "streaming_csv", (1488844, 3, 4.0, datetime(2005, 9, 6))),
        ("combined_data_1.txt", NETFLIX, "netflix", (1488844, 1, 3.0, datetime(2005, 9, 6))),
    ],
)
def test_ratings_formats(tmp_path: Path, name: str, text: str, fmt: str, first: tuple) -> None:
    path = write(tmp_path, name, text)
    assert detect_format(path) == fmt
    table, invalid = read_ratings(path)
    assert invalid == 0
    assert table.column_names == ["user_id", "movie_id", "rating", "rated_at"]
    assert tuple(table.slice(0, 1).to_pylist()[0].values()) == first


def test_netflix_assigns_movie_ids_by_block(tmp_path: Path) -> None:
    table, _ = read_ratings(write(tmp_path, "combined_data_1.txt", NETFLIX))
    assert table.column("movie_id").to_pylist() == [1, 1, 2]
    assert table.column("user_id").to_pylist() == [1488844, 822109, 2059652]


def test_parquet_with_movielens_names_and_epoch_seconds(tmp_path: Path) -> None:
    path = tmp_path / "r.parquet"
    pq.write_table(
        pa.table(
            {
                "userId": [1, 2],
                "movieId": [10, 20],
                "rating": [4.0, 3.5],
                "timestamp": [1260759144, 1260759179],
            }
        ),
        path,
    )
    table, _ = read_ratings(path)
    assert table.column("rated_at").to_pylist()[0] == datetime(2009, 12, 14, 2, 52, 24)


def test_movies_csv_parses_year_and_genres(tmp_path: Path) -> None:
    table, invalid = read_movies(write(tmp_path, "movies.csv", MOVIES))
    rows = table.to_pylist()
    assert invalid == 0
    assert rows[0] == {
        "movie_id": 1,
        "title": "Toy Story",
        "genres": ["Adventure", "Animation", "Children"],
        "release_year": 1995,
    }
    assert rows[1]["title"] == "American President, The" and rows[1]["release_year"] == 1995
    assert rows[2]["genres"] == [] and rows[2]["release_year"] is None


def test_ml100k_u_item_is_latin1_with_genre_flags(tmp_path: Path) -> None:
    path = write(tmp_path, "u.item", U_ITEM, encoding="latin-1")
    assert detect_format(path) == "ml100k_items"
    rows = read_movies(path)[0].to_pylist()
    assert rows[0]["genres"] == ["Animation", "Children", "Comedy"]
    assert rows[1] == {"movie_id": 2, "title": "Café Society", "genres": ["Drama"], "release_year": 1996}


def test_validation_reasons(tmp_path: Path) -> None:
    text = (
        "user_id,movie_id,rating,rated_at\n"
        "1,1,4.0,2024-01-01\n"  # good
        ",2,4.0,2024-01-01\n"  # missing user
        "x,2,4.0,2024-01-01\n"  # not an integer
        "1,3,7,2024-01-01\n"  # out of range
        "1,4,-1,2024-01-01\n"  # out of range
        "1,5,NaN,2024-01-01\n"  # NaN
        "1,6,3.3,2024-01-01\n"  # not a half step
        "1,7,3.0,not-a-date\n"  # timestamp
        "1,1,4.0,2024-01-01\n"
    )  # duplicate of row 1
    raw, _ = read_ratings_raw(write(tmp_path, "r.csv", text))
    good, bad = normalize_ratings(raw)
    assert good.num_rows == 1
    assert dict(zip(bad.column("row_number").to_pylist(), bad.column("reason").to_pylist(), strict=True)) == {
        2: "missing user_id",
        3: "user_id is not a positive integer",
        4: "rating outside 0.5-5.0",
        5: "rating outside 0.5-5.0",
        6: "rating is NaN",
        7: "rating not on a half step",
        8: "unparsable timestamp",
        9: "duplicate row in batch",
    }
    assert bad.column("user_id").to_pylist()[1] == "x"  # raw value kept for inspection


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"\x00\x01\x02binary", "binary"),
        (b"hello world\nthis is not data\n", "cannot recognise"),
        (b"PAR1\x00\x00\x00garbage", "truncated or corrupt"),
    ],
)
def test_unreadable_files_are_refused(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.bin"
    path.write_bytes(content)
    with pytest.raises(BadInput, match=message):
        read_ratings(path)


def test_wrong_columns_name_what_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"user_id": [1], "film": [2], "rating": [3.0], "rated_at": [1]}), path)
    with pytest.raises(BadInput, match="lacks a 'movie_id' column"):
        read_ratings(path)


def test_non_utf8_csv_is_refused_with_fix(tmp_path: Path) -> None:
    path = write(tmp_path, "r.csv", "userId,movieId,rating,timestamp\n1,2,4.0,1\n1,3,4.0,2 caf\xe9\n", "latin-1")
    with pytest.raises(BadInput, match="not valid UTF-8.*iconv"):
        read_ratings(path)
