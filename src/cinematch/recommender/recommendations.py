"""What the champion serves from the warehouse: every user's top-N lists, and predictions for given pairs."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from cinematch.core.errors import BadInput
from cinematch.core.log import get_logger
from cinematch.core.results import Result
from cinematch.core.settings import Settings
from cinematch.recommender import registry
from cinematch.recommender.als import ALSModel
from cinematch.recommender.als_solver import user_item_csr
from cinematch.recommender.batch import top_n_table
from cinematch.recommender.ranker import Ranker
from cinematch.storage.audit import utcnow
from cinematch.storage.protocol import Warehouse

log = get_logger(__name__)


@dataclass(eq=False)
class Predictions(Result):
    """`cinematch predict`: the version that predicted, how many pairs, how many got the fallback, the CSV."""

    version: str
    pairs: int
    fallbacks: int
    out: str


def _excluding_all_rated(model: ALSModel, con: Warehouse) -> ALSModel:
    """A shallow copy of ``model`` whose "seen" set is every rating in silver, not only its training split."""
    rated = con.sql("select user_id, movie_id from silver.ratings").to_arrow_table()
    users = rated.column("user_id").to_numpy()
    items = rated.column("movie_id").to_numpy()
    u = np.searchsorted(model.user_ids, users).clip(0, max(model.n_users - 1, 0))
    i = np.searchsorted(model.item_ids, items).clip(0, max(model.n_items - 1, 0))
    known = (model.user_ids[u] == users) & (model.item_ids[i] == items)
    seen = user_item_csr(u[known], i[known], np.ones(int(known.sum()), np.float32), model.n_users, model.n_items)
    _ = model.rank_bias  # made now, from the training ratings, before the copy's seen set changes
    out = copy.copy(model)
    out.seen_indptr, out.seen_indices = seen.indptr, seen.indices
    return out


def _genres(con: Warehouse) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Movie ids per genre and the placeholder movies (never recommended to cold users)."""
    pairs = con.sql(
        "select movie_id, genre from (select movie_id, unnest(genres) as genre from silver.movies) g "
        "where genre <> '(no genres listed)'"
    ).to_arrow_table()
    owner = pairs.column("movie_id").to_numpy().astype(np.int64)
    names = pairs.column("genre").to_numpy(zero_copy_only=False).astype(str)
    genres = {g: owner[names == g] for g in np.unique(names)}
    flags = con.sql("select movie_id from silver.movies where is_placeholder").to_arrow_table()
    placeholders = flags.column("movie_id").to_numpy().astype(np.int64)
    return genres, placeholders


def write_recommendations(
    con: Warehouse,
    settings: Settings,
    model: ALSModel,
    version: str,
    n: int | None = None,
    ranker: Ranker | None = None,
) -> int:
    """Top-N for every user in silver into ``serving.recommendations`` (replaced in the caller's transaction).

    With a ranking model (``ranker``, or the version's stored one) lists come from each user's current
    history: everything in silver, including ratings held out for evaluation or ingested after training.
    Only users whose history changed since the version's last lists are scored again (``HOME/cache/lists``).
    Versions without a ranking model rank with their ALS model as before.
    """
    n = n or settings.top_n
    ranker = ranker if ranker is not None else registry.load_ranker(settings, version)
    if ranker is None:
        table = _als_lists(con, model, n)
    else:
        ratings = con.sql("select user_id, movie_id, rating, rated_at from silver.ratings").to_arrow_table()
        genres, placeholders = _genres(con)
        cache = settings.home_dir / "cache" / "lists" / f"{version}-top{n}.npz"
        table = top_n_table(ranker, ratings, n, genres, placeholders, cache=cache)
    con.register("_recs", table)
    try:
        con.execute("delete from serving.recommendations")
        con.execute(
            """insert into serving.recommendations (user_id, rank, movie_id, score, model_version, generated_at,
               because) select user_id, rank, movie_id, score, ?, ?, because from _recs""",
            [version, utcnow()],
        )
    finally:
        con.unregister("_recs")
    rows: int = table.num_rows
    return rows


def _als_lists(con: Warehouse, model: ALSModel, n: int) -> pa.Table:
    """Lists of a version from before ranking models: its ALS top-N, excluding everything rated in silver."""
    model = _excluding_all_rated(model, con)
    users = model.user_ids
    ids, scores = model.recommend(users, n=n, exclude_seen=True)
    valid = ids.reshape(-1) >= 0
    return pa.table({
        "user_id": np.repeat(users, n)[valid],
        "rank": np.tile(np.arange(1, n + 1, dtype=np.int32), len(users))[valid],
        "movie_id": ids.reshape(-1)[valid],
        "score": scores.reshape(-1)[valid].astype(np.float64),
        "because": pa.array([""] * int(valid.sum()), pa.string()),
    })  # fmt: skip


def predict_pairs(settings: Settings, pairs_path: Path, out_path: Path, version: str | None = None) -> Predictions:
    """The original "futures": predicted ratings for (user, movie[, date]) pairs from the champion.

    Pairs come as CSV/TSV (header optional) or Parquet; unknown users or movies get the fallback
    prediction and ``fallback = true``. Writes CSV ``user_id,movie_id[,date],predicted_rating,fallback``.
    """
    from cinematch.datasets.formats import check_file

    version = version or registry.champion_alias(settings)
    if version is None:
        raise BadInput("no champion model yet: run `cinematch train` (or `cinematch models promote VERSION`) first")
    model = registry.load_model(settings, version)
    pairs_path, out_path = Path(pairs_path), Path(out_path)
    check_file(pairs_path)
    con = duckdb.connect()
    try:
        if pairs_path.read_bytes()[:4] == b"PAR1":
            query, params = "select * from read_parquet(?)", [str(pairs_path)]
        else:
            first = pairs_path.read_text(errors="replace").lstrip().split("\n", 1)[0]
            delim = "\t" if "\t" in first else ("::" if "::" in first else ",")
            query = ("select * from read_csv(?, delim=?, header=false, null_padding=true, auto_detect=false, "
                     "columns={'user': 'VARCHAR', 'movie': 'VARCHAR', 'date': 'VARCHAR'})")  # fmt: skip
            params = [str(pairs_path), delim]
        try:
            raw = con.sql(query, params=params).to_arrow_table()
        except duckdb.Error as exc:
            raise BadInput(f"cannot read pairs from {pairs_path}: {' '.join(str(exc).split())[:160]}") from None
        if raw.num_columns < 2:
            raise BadInput(f"{pairs_path} needs at least two columns (user, movie[, date]); found {raw.num_columns}")
        if raw.num_rows and not str(raw.column(0)[0].as_py() or "").strip().lstrip("-").isdigit():
            raw = raw.slice(1)  # a header row
        cols = raw.column_names
        con.register("raw", raw)
        has_date = raw.num_columns >= 3 and raw.column(2).null_count < raw.num_rows
        date_expr = f', "{cols[2]}" as date' if has_date else ""
        typed = con.sql(
            f'select try_cast("{cols[0]}" as bigint) as user_id, try_cast("{cols[1]}" as bigint) as movie_id'
            f"{date_expr} from raw"
        ).to_arrow_table()
        pred, fallback = model.predict(typed.column("user_id").to_numpy(), typed.column("movie_id").to_numpy())
        out = typed.append_column("predicted_rating", pa.array(np.round(pred, 4))).append_column(
            "fallback", pa.array(fallback)
        )
        out_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = out_path.with_name(f".{out_path.name}.tmp")
        con.register("out", out)
        con.execute(f"copy out to '{tmp}' (header, delimiter ',')")
        tmp.replace(out_path)
    finally:
        con.close()
    return Predictions(version=version, pairs=out.num_rows, fallbacks=int(np.sum(fallback)), out=str(out_path))
