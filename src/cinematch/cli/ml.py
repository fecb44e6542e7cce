"""Model commands: train, predict, models list|promote|rollback."""

from __future__ import annotations

from pathlib import Path

import click

from cinematch.cli._app import Ctx, cli, command, emit, out, table
from cinematch.errors import BadInput
from cinematch.warehouse import write_session


def _metrics_line(doc: dict) -> str:
    return (f"rmse {doc['rmse']:.4f}  mae {doc['mae']:.4f}  precision@10 {doc['precision_at_10']:.4f}  "
            f"recall@10 {doc['recall_at_10']:.4f}  ndcg@10 {doc['ndcg_at_10']:.4f}")  # fmt: skip


@command(cli, "train")
@click.option("--ratings", type=click.Path(path_type=Path), help="Train on this file instead of the warehouse.")
@click.option("--test", "test_file", type=click.Path(path_type=Path), help="Evaluate on this file (with --ratings).")
@click.option("--rank", type=click.IntRange(min=1, max=512), default=None)
@click.option("--reg", type=click.FloatRange(min=0, min_open=True), default=None)
@click.option("--iterations", type=click.IntRange(min=1, max=200), default=None)
@click.option("--seed", type=int, default=None)
def train_cmd(ctx: Ctx, ratings: Path | None, test_file: Path | None, rank: int | None, reg: float | None,
              iterations: int | None, seed: int | None) -> None:  # fmt: skip
    """Train ALS, evaluate, register a version (promoted only if not worse than the champion)."""
    from cinematch.recommender.training import params_from_settings, train_files, train_warehouse

    params = params_from_settings(ctx.settings, rank=rank, reg=reg, iterations=iterations, seed=seed)
    if test_file is not None and ratings is None:
        raise BadInput("--test needs --ratings (to train on the warehouse, pass neither)")
    with ctx.progress("training ALS", total=params.iterations) as update:

        def progress(iteration: int, rmse: float) -> None:
            update(completed=iteration, description=f"ALS iteration {iteration} train rmse {rmse:.4f}")

        if ratings is not None:
            doc = train_files(ctx.settings, ratings, test_file, params, progress)
        else:
            with write_session(ctx.settings, "train") as con:
                doc = train_warehouse(con, ctx.settings, params, progress=progress)

    def human() -> None:
        out.print(f"{doc['version']}: {_metrics_line(doc)}  ({doc['train_seconds']:.1f}s)")
        if "promotion" in doc:
            out.print(f"promotion: {doc['promotion']['decision']} ({doc['promotion']['reason']})")

    emit(ctx, doc, human)


@command(cli, "predict")
@click.option("--pairs", required=True, type=click.Path(path_type=Path), help="user,movie[,date] pairs.")
@click.option("--out", "out_file", required=True, type=click.Path(path_type=Path), help="CSV to write.")
def predict_cmd(ctx: Ctx, pairs: Path, out_file: Path) -> None:
    """Predicted ratings for a list of (user, movie[, date]) pairs from the champion."""
    from cinematch.recommender.training import predict_pairs

    doc = predict_pairs(ctx.settings, pairs, out_file)
    emit(ctx, doc, lambda: out.print(f"{doc['pairs']:,} predictions from {doc['version']} "
                                     f"({doc['fallbacks']:,} fallbacks) -> {doc['out']}"))  # fmt: skip


@cli.group("models")
def models() -> None:
    """The model registry: list, promote, rollback."""


@command(models, "list")
def models_list(ctx: Ctx) -> None:
    """Every registered version with its metrics and status."""
    from cinematch.recommender import registry

    with write_session(ctx.settings, "models list") as con:
        rows = registry.list_models(con)
    doc = {"champion": next((r["version"] for r in rows if r["is_champion"]), None), "models": rows}

    def human() -> None:
        flat = [{"version": r["version"], "status": r["status"], "champion": "*" if r["is_champion"] else "",
                 "rmse": r["metrics"].get("rmse"), "ndcg_at_10": r["metrics"].get("ndcg_at_10"),
                 "batches": len(r["batch_ids"]), "promotion": r["promotion"].get("decision")} for r in rows]  # fmt: skip
        out.print(table("models", flat) if flat else "no models yet: run `cinematch train`")

    emit(ctx, doc, human)


@command(models, "promote")
@click.argument("version")
def models_promote(ctx: Ctx, version: str) -> None:
    """Make VERSION the champion and refresh batch recommendations."""
    from cinematch.recommender import registry
    from cinematch.recommender.training import ensure_tables, write_recommendations

    with write_session(ctx.settings, "models promote") as con:
        ensure_tables(con)
        con.execute("begin transaction")
        doc = registry.promote(con, ctx.settings, version, alias=False)
        doc["recommendations"] = write_recommendations(con, ctx.settings, registry.load_model(ctx.settings, version),
                                                       version)  # fmt: skip
        con.execute("commit")
        registry.write_alias(con, ctx.settings)
    emit(ctx, doc, lambda: out.print(f"champion: {doc['champion']} (was {doc['previous']})"))


@command(models, "rollback")
def models_rollback(ctx: Ctx) -> None:
    """Return to the previous champion in one command."""
    from cinematch.recommender import registry
    from cinematch.recommender.training import ensure_tables, write_recommendations

    with write_session(ctx.settings, "models rollback") as con:
        ensure_tables(con)
        con.execute("begin transaction")
        doc = registry.rollback(con, ctx.settings, alias=False)
        model = registry.load_model(ctx.settings, doc["champion"])
        doc["recommendations"] = write_recommendations(con, ctx.settings, model, doc["champion"])
        con.execute("commit")
        registry.write_alias(con, ctx.settings)
    emit(ctx, doc, lambda: out.print(f"champion: {doc['champion']} (rolled back from {doc['previous']})"))
