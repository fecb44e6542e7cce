"""The training set: which silver batches a version trains on, and the stable held-out split of them."""

from __future__ import annotations

import hashlib

import duckdb
import numpy as np
import pyarrow as pa

from cinematch.core.errors import BadInput
from cinematch.core.log import get_logger
from cinematch.recommender.hashing import HASH_BLOCK, mix64
from cinematch.storage.audit import utcnow
from cinematch.storage.protocol import Warehouse
from cinematch.storage.warehouse import batch_table

log = get_logger(__name__)


# The warehouse split never depends on CINEMATCH_SEED: a rating is held out by a hash of (user, movie, time)
# with this fixed salt, so every version, whatever its seed, was scored on rows no version trained on.
SPLIT_SALT = 42


SPLIT_RULE = {"rule": "stable-hash of (user_id, movie_id, rated_at)", "test_fraction": 0.2, "salt": SPLIT_SALT}


def stable_split(table: pa.Table, test_fraction: float = 0.2, seed: int = SPLIT_SALT) -> tuple[pa.Table, pa.Table]:
    """80/20 split decided per rating by a seeded hash of (user, movie, time).

    Unlike a permutation, a rating keeps its side when the data grows, so a champion trained on earlier
    data never saw any of a challenger's test ratings: both are compared on truly held-out data.
    """
    if not 0 < test_fraction < 1:
        raise BadInput(f"test fraction must be between 0 and 1, got {test_fraction}")
    users, movies = (_words(table.column(name).to_numpy()) for name in ("user_id", "movie_id"))
    ts = _words(table.column("rated_at").cast(pa.int64()).to_numpy())
    test = _held_out(users, movies, ts, seed, test_fraction)
    return table.filter(pa.array(~test)), table.filter(pa.array(test))


def _words(values: np.ndarray) -> np.ndarray:
    """``values`` as uint64 words (two's complement, as ``astype``), without a copy when they are int64."""
    return values.view(np.uint64) if values.dtype == np.int64 else values.astype(np.uint64)


def _held_out(users: np.ndarray, movies: np.ndarray, ts: np.ndarray, seed: int, test_fraction: float) -> np.ndarray:
    """Whether each rating is held out: its seeded hash of (user, movie, time) below ``test_fraction``.

    The hash is fixed (every version's split depends on it); it is computed in cache-sized blocks in place, as
    whole-array expressions made a fresh temporary of the ratings' size per operation (20M ratings: 1.9 s ->
    0.2 s).
    """
    out = np.empty(len(users), bool)
    h, t = np.empty(min(len(users), HASH_BLOCK), np.uint64), np.empty(min(len(users), HASH_BLOCK), np.uint64)
    with np.errstate(over="ignore"):
        salt = np.uint64(seed) * np.uint64(0x27D4EB2F165667C5)
        for s in range(0, len(users), HASH_BLOCK):
            e = min(s + HASH_BLOCK, len(users))
            hb, tb = h[: e - s], t[: e - s]
            np.multiply(users[s:e], np.uint64(0x9E3779B97F4A7C15), out=hb)
            np.multiply(movies[s:e], np.uint64(0xC2B2AE3D27D4EB4F), out=tb)
            hb ^= tb
            np.multiply(ts[s:e], np.uint64(0x165667B19E3779F9), out=tb)
            tb ^= salt
            hb ^= tb
            mix64(hb, tb)  # splitmix64 finaliser: spreads the bits so the low ones are uniform
            hb >>= np.uint64(11)
            out[s:e] = hb.astype(np.float64) / float(1 << 53) < test_fraction
    return out


def unmerged_batches(con: Warehouse) -> list[str]:
    """Ratings batches in silver that no model has been trained on yet (the buffer), oldest first."""
    return [
        r[0]
        for r in con.execute(
            """select p.batch_id from silver.processed_batches p
               join bronze.ingestion_metadata m using (batch_id)
               where p.kind = 'ratings' and p.batch_id not in (select batch_id from ops.training_batches)
               order by m.ingestion_date, p.batch_id"""
        ).fetchall()
    ]


def training_batches(con: Warehouse) -> list[str]:
    return [r[0] for r in con.execute("select batch_id from ops.training_batches order by batch_id").fetchall()]


def merge_batches(con: Warehouse, batch_ids: list[str], version: str) -> list[str]:
    """Mark batches as part of the training set, exactly once (the primary key refuses a second merge)."""
    already = set(training_batches(con))
    fresh = [b for b in dict.fromkeys(batch_ids) if b not in already]
    if fresh:
        now = utcnow()
        con.executemany("insert into ops.training_batches values (?, ?, ?)", [[b, now, version] for b in fresh])
    return fresh


def ratings_of(con: Warehouse, batch_ids: list[str], with_batch: bool = True) -> pa.Table:
    """Silver ratings of the given batches; ``with_batch=False`` leaves out the ``batch_id`` column (models never read
    it, and its text is a third of what 20M ratings cost to read)."""
    if not batch_ids:
        empty = pa.table({"user_id": pa.array([], pa.int64()), "movie_id": pa.array([], pa.int64()),
                          "rating": pa.array([], pa.float64()), "rated_at": pa.array([], pa.timestamp("us")),
                          "batch_id": pa.array([], pa.string())})  # fmt: skip
        return empty if with_batch else empty.drop_columns(["batch_id"])
    batch_table(con, "_batches", batch_ids)
    return con.sql(
        f"""select user_id, movie_id, rating, rated_at{", batch_id" if with_batch else ""} from silver.ratings
            where batch_id in (select batch_id from _batches)"""
    ).to_arrow_table()


def data_checksum(table: pa.Table) -> str:
    """Order-independent checksum of a ratings table."""
    con = duckdb.connect()
    try:
        con.register("t", table)
        value = con.execute(
            "select coalesce(bit_xor(hash(user_id, movie_id, rating, rated_at)), 0), count(*) from t"
        ).fetchall()[0]
    finally:
        con.close()
    return hashlib.sha256(f"{value[0]}:{value[1]}".encode()).hexdigest()[:32]
