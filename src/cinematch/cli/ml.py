"""Model commands: train, predict, models list|promote|rollback|sync-mlflow."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cinematch.cli.app import Ctx, cli, command, emit, out, table
from cinematch.core.errors import BadInput
from cinematch.storage.warehouse import read_session, warehouse_exists, write_session

if TYPE_CHECKING:
    from cinematch.recommender.registry import ModelRecord
    from cinematch.recommender.training import FileTrainingRun, TrainingRun


def _metrics_line(doc: Mapping[str, Any]) -> str:
    return (f"rmse {doc['rmse']:.4f}  mae {doc['mae']:.4f}  precision@10 {doc['precision_at_10']:.4f}  "
            f"recall@10 {doc['recall_at_10']:.4f}  ndcg@10 {doc['ndcg_at_10']:.4f}  map@10 {doc['map_at_10']:.4f}")  # fmt: skip


@command(cli, "train")
@click.option("--ratings", type=click.Path(path_type=Path), help="Train on this file instead of the warehouse.")
@click.option("--test", "test_file", type=click.Path(path_type=Path), help="Evaluate on this file (with --ratings).")
@click.option(
    "--lists-out", type=click.Path(path_type=Path), help="Write the evaluated top-10 lists (user_id,rank,movie_id)."
)
@click.option(
    "--min-rating",
    type=click.FloatRange(min=0),
    default=None,
    help="Relevance: test ratings >= this count as hits (0: every test interaction; default 4).",
)
@click.option("--tune", is_flag=True, help="Search the ranking model's hyper-parameters on validation data again.")
@click.option("--rank", type=click.IntRange(min=1, max=512), default=None)
@click.option("--reg", type=click.FloatRange(min=0, min_open=True), default=None)
@click.option("--iterations", type=click.IntRange(min=1, max=200), default=None)
@click.option("--seed", type=int, default=None)
def train_cmd(ctx: Ctx, ratings: Path | None, test_file: Path | None, lists_out: Path | None, min_rating: float | None,
              tune: bool, rank: int | None, reg: float | None, iterations: int | None, seed: int | None) -> None:  # fmt: skip
    """Train the rating model (ALS) and the ranking model, evaluate, register (promoted only if not worse)."""
    from cinematch.pipelines.champion import publish_champion
    from cinematch.pipelines.engine import train_files, train_warehouse
    from cinematch.recommender.training import params_from_settings

    params = params_from_settings(ctx.settings, rank=rank, reg=reg, iterations=iterations, seed=seed)
    if test_file is not None and ratings is None:
        raise BadInput("--test needs --ratings (to train on the warehouse, pass neither)")
    if ratings is None and (lists_out is not None or min_rating is not None):
        raise BadInput("--lists-out and --min-rating go with --ratings (and --test)")
    with ctx.progress("training ALS", total=params.iterations) as update:

        def progress(iteration: int, rmse: float) -> None:
            update(completed=iteration, description=f"ALS iteration {iteration} train rmse {rmse:.4f}")

        def note(message: str) -> None:
            update(description=f"ranking model: {message}"[:100])

        doc: TrainingRun | FileTrainingRun
        if ratings is not None:
            doc = train_files(ctx.settings, ratings, test_file, params, progress, lists_out, min_rating, note)
        else:
            with write_session(ctx.settings, "train") as con:
                run = train_warehouse(con, ctx.settings, params, progress=progress, tune=tune, note=note)
                if run.promoted:
                    run = dataclasses.replace(run, published=publish_champion(con, ctx.settings))
            from cinematch.pipelines import alerts

            alerts.post_training(run, "cli", ctx.settings)  # champion_promoted or promotion_refused
            doc = run

    def human() -> None:
        out.print(f"{doc['version']}: {_metrics_line(doc)}  ({doc['train_seconds']:.1f}s)")
        base = doc["baseline"]["most_popular"]
        out.print(f"served lists: {doc['ranking_model']}; most popular on the same split: "
                  f"precision@10 {base['precision_at_10']:.4f}  ndcg@10 {base['ndcg_at_10']:.4f}")  # fmt: skip
        if "promotion" in doc:
            out.print(f"promotion: {doc['promotion']['decision']} ({doc['promotion']['reason']})")
        if doc.get("lists_out"):
            out.print(f"lists: {doc['lists_out']}")

    emit(ctx, doc, human)


@command(cli, "evaluate")
@click.option("--ratings", type=click.Path(path_type=Path), help="Ratings file (default: the warehouse's ratings).")
@click.option("--test", "test_file", type=click.Path(path_type=Path), help="Held-out file (with --ratings).")
@click.option(
    "--protocol",
    type=click.Choice(["random_per_user", "temporal", "leave_last_n"]),
    default="random_per_user",
    show_default=True,
    help="How the ratings are split into train and test.",
)
@click.option(
    "--min-rating",
    type=click.FloatRange(min=0),
    default=None,
    help="Relevance: test ratings >= this count as hits (0: every test interaction; default 4).",
)
@click.option("--n", "last_n", type=click.IntRange(min=1), default=1, show_default=True, help="leave_last_n: n.")
def evaluate_cmd(ctx: Ctx, ratings: Path | None, test_file: Path | None, protocol: str, min_rating: float | None,
                 last_n: int) -> None:  # fmt: skip
    """Every model beside most-popular on one named protocol: P/R/NDCG/MAP@10, coverage, popularity."""
    from cinematch.pipelines.engine import evaluate_protocol

    if test_file is not None and ratings is None:
        raise BadInput("--test needs --ratings")
    with ctx.progress("evaluating") as update:
        doc = evaluate_protocol(ctx.settings, ratings, test_file, protocol, min_rating, last_n,
                                note=lambda m: update(description=m[:100]))  # fmt: skip

    def human() -> None:
        out.print(f"protocol: {doc['protocol']}  relevance: rating >= {doc['min_rating']}  k = {doc['k']}  "
                  f"train {doc['n_train']:,} / test {doc['n_test']:,} ratings")  # fmt: skip
        out.print(table("models", doc["models"]))

    emit(ctx, doc, human)


@command(cli, "predict")
@click.option("--pairs", required=True, type=click.Path(path_type=Path), help="user,movie[,date] pairs.")
@click.option("--out", "out_file", required=True, type=click.Path(path_type=Path), help="CSV to write.")
def predict_cmd(ctx: Ctx, pairs: Path, out_file: Path) -> None:
    """Predicted ratings for a list of (user, movie[, date]) pairs from the champion."""
    from cinematch.recommender.recommendations import predict_pairs

    doc = predict_pairs(ctx.settings, pairs, out_file)
    emit(ctx, doc, lambda: out.print(f"{doc['pairs']:,} predictions from {doc['version']} "
                                     f"({doc['fallbacks']:,} fallbacks) -> {doc['out']}"))  # fmt: skip


@cli.group("models")
def models() -> None:
    """The model registry: list, promote, rollback, sync-mlflow."""


@command(models, "list")
def models_list(ctx: Ctx) -> None:
    """Every registered version with its metrics and status."""
    from cinematch.recommender import registry

    rows: list[ModelRecord] = []
    if warehouse_exists(ctx.settings):  # a read never creates the warehouse
        with read_session(ctx.settings) as con:
            rows = registry.list_models(con)
    doc = {"champion": next((r.version for r in rows if r.is_champion), None), "models": rows}

    def human() -> None:
        flat = [{"version": r.version, "status": r.status, "champion": "*" if r.is_champion else "",
                 "rmse": r.metrics.get("rmse"), "ndcg_at_10": r.metrics.get("ndcg_at_10"),
                 **_same_rows(r.promotion), "batches": len(r.batch_ids),
                 "promotion": r.promotion.get("decision")} for r in rows]  # fmt: skip
        out.print(table("models", flat) if flat else "no models yet: run `cinematch train`")

    emit(ctx, doc, human)


def _same_rows(promotion: dict[str, Any]) -> dict[str, str]:
    """'version / champion' NDCG@10 and RMSE on the same held-out rows (blank for a first model)."""
    from cinematch.recommender.registry import same_rows

    same = same_rows(promotion)

    def pair(a: Any, b: Any) -> str:
        return f"{a:.4f} / {b:.4f}" if isinstance(a, float) and isinstance(b, float) else ""

    return {"ndcg vs champion, same rows": pair(same["ndcg_same_rows"], same["champion_ndcg_same_rows"]),
            "rmse vs champion, same rows": pair(same["rmse_same_rows"], same["champion_rmse_same_rows"])}  # fmt: skip


@command(models, "promote")
@click.argument("version")
def models_promote(ctx: Ctx, version: str) -> None:
    """Make VERSION the champion and refresh batch recommendations."""
    from cinematch.pipelines.champion import promote_version

    with write_session(ctx.settings, "models promote") as con:
        doc = promote_version(con, ctx.settings, version)
    emit(ctx, doc, lambda: out.print(f"champion: {doc.champion} (was {doc.previous})"))


@command(models, "rollback")
def models_rollback(ctx: Ctx) -> None:
    """Return to the previous champion in one command."""
    from cinematch.pipelines.champion import rollback_champion

    with write_session(ctx.settings, "models rollback") as con:
        doc = rollback_champion(con, ctx.settings)
    emit(ctx, doc, lambda: out.print(f"champion: {doc.champion} (rolled back from {doc.previous})"))


@command(models, "sync-mlflow")
def models_sync_mlflow(ctx: Ctx) -> None:
    """Catch MLflow up: register the versions it lacks, log pending drift checks, move its champion alias."""
    from cinematch.pipelines.mlflow_sync import sync

    if warehouse_exists(ctx.settings):  # a read never creates the warehouse
        with read_session(ctx.settings) as con:
            doc = sync(con, ctx.settings)
    else:
        doc = sync(None, ctx.settings)
    alias = f"{doc.champion} (MLflow version {doc.champion_mlflow_version})" if doc.champion else "none"
    emit(ctx, doc, lambda: out.print(
        f"mlflow: {len(doc.registered)} version(s) registered, {doc.already_registered} already there, "
        f"{len(doc.without_files)} without model files, {len(doc.file_runs)} file run(s), {doc.drift_runs} drift "
        f"run(s) logged; champion alias: {alias}; {doc.tracking_uri}"))  # fmt: skip
