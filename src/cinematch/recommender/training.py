"""Training runs: the training set of merged batches, train → evaluate → register → promote, batch top-N."""

from __future__ import annotations

import copy
import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from cinematch.core.errors import BadInput, CineMatchError
from cinematch.core.log import get_logger, log_event
from cinematch.core.settings import Settings
from cinematch.recommender import registry
from cinematch.recommender.als import ALSModel
from cinematch.recommender.als_params import ALSParams
from cinematch.recommender.als_solver import user_item_csr
from cinematch.recommender.batch import top_n_table
from cinematch.recommender.evaluation import compare, evaluate_version
from cinematch.recommender.metrics import rmse
from cinematch.recommender.protocols import write_lists
from cinematch.recommender.ranker import Ranker
from cinematch.recommender.tuning import RankingConfig, Selection, select
from cinematch.storage.warehouse import batch_table, utcnow

log = get_logger(__name__)

TRAINING_DDL = (
    """create table if not exists ops.training_batches (
        batch_id varchar primary key, merged_at timestamp not null, model_version varchar)""",
    """create table if not exists serving.recommendations (
        user_id bigint not null, rank integer not null, movie_id bigint not null, score double not null,
        model_version varchar not null, generated_at timestamp not null, because varchar)""",
)
# warehouses created before explanations: the column is added in place (PostgreSQL: migration 4)
TRAINING_UPGRADES = ("alter table serving.recommendations add column if not exists because varchar",)

RESULT_KEYS = ("rmse", "mae", "precision_at_10", "recall_at_10", "ndcg_at_10", "map_at_10", "coverage",
               "avg_rec_popularity", "ranking_model", "baseline")  # fmt: skip
# The warehouse split never depends on CINEMATCH_SEED: a rating is held out by a hash of (user, movie, time)
# with this fixed salt, so every version, whatever its seed, was scored on rows no version trained on.
SPLIT_SALT = 42
SPLIT_RULE = {"rule": "stable-hash of (user_id, movie_id, rated_at)", "test_fraction": 0.2, "salt": SPLIT_SALT}


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    for ddl in (*TRAINING_DDL, *TRAINING_UPGRADES):
        con.execute(ddl)
    registry.ensure_tables(con)


def ranking_config(settings: Settings) -> RankingConfig:
    return RankingConfig(ease_max_items=settings.ease_max_items, ease_min_support=settings.ease_min_support,
                         keep_per_item=settings.ease_keep_per_item, seed=settings.seed)  # fmt: skip


def params_from_settings(settings: Settings, **overrides: Any) -> ALSParams:
    base = {"rank": settings.als_rank, "reg": settings.als_reg, "iterations": settings.als_iterations,
            "seed": settings.seed, "rank_popularity": settings.als_rank_popularity}  # fmt: skip
    base.update({k: v for k, v in overrides.items() if v is not None})
    params = ALSParams(**base)
    params.validate()
    return params


def stable_split(table: pa.Table, test_fraction: float = 0.2, seed: int = SPLIT_SALT) -> tuple[pa.Table, pa.Table]:
    """80/20 split decided per rating by a seeded hash of (user, movie, time).

    Unlike a permutation, a rating keeps its side when the data grows, so a champion trained on earlier
    data never saw any of a challenger's test ratings: both are compared on truly held-out data.
    """
    if not 0 < test_fraction < 1:
        raise BadInput(f"test fraction must be between 0 and 1, got {test_fraction}")
    users = table.column("user_id").to_numpy().astype(np.uint64)
    movies = table.column("movie_id").to_numpy().astype(np.uint64)
    ts = table.column("rated_at").cast(pa.int64()).to_numpy().astype(np.uint64)
    with np.errstate(over="ignore"):
        h = users * np.uint64(0x9E3779B97F4A7C15) ^ movies * np.uint64(0xC2B2AE3D27D4EB4F)
        h ^= ts * np.uint64(0x165667B19E3779F9) ^ np.uint64(seed) * np.uint64(0x27D4EB2F165667C5)
        # splitmix64 finaliser: spreads the bits so the low ones are uniform
        h ^= h >> np.uint64(30)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(27)
        h *= np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(31)
    test = (h >> np.uint64(11)).astype(np.float64) / float(1 << 53) < test_fraction
    return table.filter(pa.array(~test)), table.filter(pa.array(test))


def unmerged_batches(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Ratings batches in silver that no model has been trained on yet (the buffer), oldest first."""
    ensure_tables(con)
    return [
        r[0]
        for r in con.execute(
            """select p.batch_id from silver.processed_batches p
               join bronze.ingestion_metadata m using (batch_id)
               where p.kind = 'ratings' and p.batch_id not in (select batch_id from ops.training_batches)
               order by m.ingestion_date, p.batch_id"""
        ).fetchall()
    ]


def training_batches(con: duckdb.DuckDBPyConnection) -> list[str]:
    ensure_tables(con)
    return [r[0] for r in con.execute("select batch_id from ops.training_batches order by batch_id").fetchall()]


def merge_batches(con: duckdb.DuckDBPyConnection, batch_ids: list[str], version: str) -> list[str]:
    """Mark batches as part of the training set, exactly once (the primary key refuses a second merge)."""
    ensure_tables(con)
    already = set(training_batches(con))
    fresh = [b for b in dict.fromkeys(batch_ids) if b not in already]
    if fresh:
        now = utcnow()
        con.executemany("insert into ops.training_batches values (?, ?, ?)", [[b, now, version] for b in fresh])
    return fresh


def ratings_of(con: duckdb.DuckDBPyConnection, batch_ids: list[str]) -> pa.Table:
    """Silver ratings of the given batches."""
    if not batch_ids:
        return pa.table({"user_id": pa.array([], pa.int64()), "movie_id": pa.array([], pa.int64()),
                         "rating": pa.array([], pa.float64()), "rated_at": pa.array([], pa.timestamp("us")),
                         "batch_id": pa.array([], pa.string())})  # fmt: skip
    batch_table(con, "_batches", batch_ids)
    return con.sql(
        """select user_id, movie_id, rating, rated_at, batch_id from silver.ratings
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


def fit(
    table: pa.Table,
    params: ALSParams,
    progress: Callable[[int, float], None] | None = None,
    settings: Settings | None = None,
) -> ALSModel:
    if table.num_rows == 0:
        raise BadInput("no ratings to train on: ingest a batch and run `cinematch etl` first")
    if settings is not None and settings.engine == "spark":
        from cinematch.engines.spark_als import fit_spark_als

        return fit_spark_als(table, params, progress, settings)
    return ALSModel.fit(
        table.column("user_id").to_numpy(),
        table.column("movie_id").to_numpy(),
        table.column("rating").to_numpy(),
        params,
        progress=progress,
    )


def fit_ranker(
    train: pa.Table,
    settings: Settings,
    previous: dict[str, Any] | None = None,
    tune: bool = True,
    progress: Callable[[str], None] | None = None,
) -> Selection:
    """The ranking model served with this version: chosen on validation data (``tune``) or refitted as before."""
    if train.num_rows == 0:
        raise BadInput("no ratings to train on: ingest a batch and run `cinematch etl` first")
    if settings.engine == "spark":
        from cinematch.engines.spark_ranker import fit_spark_ranker

        return fit_spark_ranker(train, settings, ranking_config(settings))
    return select(train, ranking_config(settings), previous, full=tune or previous is None, progress=progress)


def _rmse_on(model: ALSModel, test: pa.Table) -> float:
    predicted, _ = model.predict(test.column("user_id").to_numpy(), test.column("movie_id").to_numpy())
    return rmse(test.column("rating").to_numpy(), predicted)


def _result(version: str, metrics: dict, seconds: float, **extra: Any) -> dict[str, Any]:
    return {"version": version, **{k: metrics.get(k) for k in RESULT_KEYS}, "train_seconds": round(seconds, 3),
            "n_test": metrics.get("n_test"), **extra}  # fmt: skip


def _ranking_metadata(selection: Selection, tuned: bool) -> dict[str, Any]:
    return {"name": selection.ranker.name, "choice": selection.choice.as_dict(), "tuned": tuned,
            "candidates": selection.candidates, "catalogue": selection.catalogue,
            "seconds": round(selection.seconds, 3)}  # fmt: skip


def _previous_choice(settings: Settings, current: dict | None) -> dict[str, Any] | None:
    if current is None:
        return None
    try:
        meta = registry.load_metadata(settings, current["version"])
    except CineMatchError:
        return None
    return (meta.get("ranking") or {}).get("choice")


def train_warehouse(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    params: ALSParams,
    merge: list[str] | None = None,
    progress: Callable[[int, float], None] | None = None,
    tune: bool = False,
    note: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train both models on the training set plus ``merge`` (default: every batch not trained on yet), register.

    The ranking model is searched on validation data when ``tune`` (or when no earlier choice exists) and
    otherwise refitted with the champion's choice. The challenger is compared with the champion on every
    held-out rating of the stable split (unseen by both), from the same current training histories, and
    promoted only if neither its top-10 NDCG (paired bootstrap over users) nor its RMSE is worse beyond
    tolerance; the decision and both models' scores on those rows are stored in its row.
    """
    ensure_tables(con)
    registry.write_alias(con, settings)  # heals an alias left behind by a kill between commit and alias write
    to_merge = unmerged_batches(con) if merge is None else merge
    batch_ids = sorted(set(training_batches(con)) | set(to_merge))
    data = ratings_of(con, batch_ids)
    train, test = stable_split(data)
    if train.num_rows == 0 or test.num_rows == 0:
        raise BadInput(f"too few ratings to train and evaluate ({data.num_rows}); ingest more data first")
    current = registry.champion(con)
    previous = _previous_choice(settings, current)
    t0 = time.perf_counter()
    model = fit(train, params, progress, settings)
    als_seconds = time.perf_counter() - t0
    selection = fit_ranker(train, settings, previous, tune, note)
    seconds = time.perf_counter() - t0
    k, threshold = settings.top_n, settings.relevance_threshold
    metrics, _, _ = evaluate_version(model, selection.ranker, train, test, k, threshold)

    champion_rmse, ranking = None, None
    if current is not None:
        champ = (registry.load_model(settings, current["version"]), registry.load_ranker(settings, current["version"]))
        ranking = compare((model, selection.ranker), champ, train, test, k, threshold)
        champion_rmse = ranking["champion_rmse_same_rows"]
    version = registry.new_version()
    promotion = registry.decide_promotion(metrics["rmse"], champion_rmse, settings.promotion_tolerance,
                                          current["version"] if current else None, ranking,
                                          settings.promotion_ndcg_tolerance)  # fmt: skip
    promotion["eval_rows"] = test.num_rows
    promotion["eval_data"] = "every held-out rating of the stable split; histories: the current training split"
    metadata = {
        "params": asdict(params),
        "metrics": metrics,
        "ranking": _ranking_metadata(selection, bool(selection.candidates)),
        "batch_ids": batch_ids,
        "data_checksum": data_checksum(data),
        "n_train": train.num_rows,
        "n_test": test.num_rows,
        "train_seconds": seconds,
        "als_seconds": als_seconds,
        "promotion": promotion,
        "source": "warehouse",
        "engine": settings.engine,
        "split": SPLIT_RULE,
    }
    registry.save_version(settings, model, metadata, version, selection.ranker)
    con.execute("begin transaction")
    try:
        merged = merge_batches(con, to_merge, version)
        registry.register(con, settings, version, metadata, "candidate" if promotion["decision"] == "promoted"
                          else "rejected")  # fmt: skip
        if promotion["decision"] == "promoted":
            registry._set_champion(con, settings, version, "auto", promotion["reason"], alias=False)
            write_recommendations(con, settings, model, version, ranker=selection.ranker)
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    registry.write_alias(con, settings)  # only now: a kill before the commit leaves the old alias
    registry.prune_files(con, settings, settings.model_keep_versions)
    champ_row = registry.champion(con)
    log_event(log, "model_trained", version=version, rmse=round(metrics["rmse"], 4),
              ndcg=round(metrics["ndcg_at_10"], 4), ranking_model=selection.ranker.name,
              decision=promotion["decision"], seconds=round(seconds, 2), n_train=train.num_rows)  # fmt: skip
    return _result(version, metrics, seconds, promoted=promotion["decision"] == "promoted",
                   champion_version=champ_row["version"] if champ_row else None, promotion=promotion,
                   merged_batches=merged, batch_ids=batch_ids, n_train=train.num_rows)  # fmt: skip


def train_files(
    settings: Settings,
    ratings_path: Path,
    test_path: Path | None,
    params: ALSParams,
    progress: Callable[[int, float], None] | None = None,
    lists_out: Path | None = None,
    min_rating: float | None = None,
    note: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train and evaluate on files of any supported format; the warehouse is not touched.

    With no test file, the stable 80/20 split of the ratings file is used. The ranking model is always
    searched on validation data carved from the training file. The version is saved (``source: files``) but
    not registered, so it never becomes champion. ``lists_out`` receives the evaluated top-N lists.
    """
    from cinematch.datasets.ratings import read_ratings

    data, _ = read_ratings(Path(ratings_path))
    if test_path is not None:
        train, test = data, read_ratings(Path(test_path))[0]
    else:
        train, test = stable_split(data)
    threshold = settings.relevance_threshold if min_rating is None else min_rating
    t0 = time.perf_counter()
    model = fit(train, params, progress, settings)
    selection = fit_ranker(train, settings, None, True, note)
    seconds = time.perf_counter() - t0
    metrics, users, lists = evaluate_version(model, selection.ranker, train, test, settings.top_n, threshold)
    if lists_out is not None:
        write_lists(lists_out, users, lists)
    version = registry.new_version()
    metadata = {"params": asdict(params), "metrics": metrics, "ranking": _ranking_metadata(selection, bool(selection.candidates)),
                "source": "files", "ratings_file": str(ratings_path),
                "test_file": str(test_path) if test_path else None, "n_train": train.num_rows,
                "n_test": test.num_rows, "train_seconds": seconds,
                "split": {"rule": "given test file"} if test_path else SPLIT_RULE}  # fmt: skip
    registry.save_version(settings, model, metadata, version, selection.ranker)
    return _result(version, metrics, seconds, n_train=train.num_rows, registered=False,
                   lists_out=str(lists_out) if lists_out else None)  # fmt: skip


def _excluding_all_rated(model: ALSModel, con: duckdb.DuckDBPyConnection) -> ALSModel:
    """A shallow copy of ``model`` whose "seen" set is every rating in silver, not only its training split."""
    rated = con.sql("select user_id, movie_id from silver.ratings").to_arrow_table()
    users = rated.column("user_id").to_numpy()
    items = rated.column("movie_id").to_numpy()
    u = np.searchsorted(model.user_ids, users).clip(0, max(model.n_users - 1, 0))
    i = np.searchsorted(model.item_ids, items).clip(0, max(model.n_items - 1, 0))
    known = (model.user_ids[u] == users) & (model.item_ids[i] == items)
    seen = user_item_csr(u[known], i[known], np.ones(int(known.sum()), np.float32), model.n_users, model.n_items)
    out = copy.copy(model)
    out.seen_indptr, out.seen_indices = seen.indptr, seen.indices
    return out


def _genres(con: duckdb.DuckDBPyConnection) -> tuple[dict[str, np.ndarray], np.ndarray]:
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
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    model: ALSModel,
    version: str,
    n: int | None = None,
    ranker: Ranker | None = None,
) -> int:
    """Top-N for every user in silver into ``serving.recommendations`` (replaced in the caller's transaction).

    With a ranking model (``ranker``, or the version's stored one) lists come from each user's current
    history: everything in silver, including ratings held out for evaluation or ingested after training.
    Versions without a ranking model rank with their ALS model as before.
    """
    ensure_tables(con)
    n = n or settings.top_n
    ranker = ranker if ranker is not None else registry.load_ranker(settings, version)
    if ranker is None:
        table = _als_lists(con, model, n)
    else:
        ratings = con.sql("select user_id, movie_id, rating, rated_at from silver.ratings").to_arrow_table()
        genres, placeholders = _genres(con)
        table = top_n_table(ranker, ratings, n, genres, placeholders)
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
    return table.num_rows


def _als_lists(con: duckdb.DuckDBPyConnection, model: ALSModel, n: int) -> pa.Table:
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


def predict_pairs(settings: Settings, pairs_path: Path, out_path: Path, version: str | None = None) -> dict[str, Any]:
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
    return {"version": version, "pairs": out.num_rows, "fallbacks": int(np.sum(fallback)), "out": str(out_path)}
