"""What each pipeline step reads and writes, as OpenLineage datasets: one table for the DAGs and the CLI.

The DAG tasks declare these datasets as their inlets and outlets (``cinematch.dag_tasks.lineage``) and the CLI
emits them itself (``cinematch.pipelines.lineage_emit``), so a step run either way names the same datasets. At
COMPLETE, :func:`complete_outputs` adds what only the run knows or what is costly to derive: the gold tables'
column lineage (from their SQL, ``cinematch.lakehouse.lineage_sql``) and the model version a training wrote.

Naming (storage/lineage_names.py, docs/lineage.md): warehouse tables are ``{database}.{schema}.{table}`` in the
warehouse's namespace; HOME's folders are ``file://{host}`` paths; the TMDB API is its URL. Nothing here imports
openlineage at module level: DAG files and the CLI import this module whether or not lineage is configured.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cinematch.core.settings import Settings
from cinematch.storage.lineage_names import file_dataset, warehouse_source

if TYPE_CHECKING:
    from openlineage.client.event_v2 import InputDataset, OutputDataset

__all__ = ["STEPS", "DatasetRef", "complete_outputs", "file_ref", "input_dataset", "model_version", "output_dataset",
           "step_datasets"]  # fmt: skip

# the logical names of what is not a warehouse table: folders of HOME and the TMDB API
LANDING, MODELS, FUTURES, SERVING = "files:landing", "files:models", "files:futures", "files:serving"
TMDB_API = "api:tmdb"

_BRONZE = ("bronze.ratings_buffer", "bronze.movies", "bronze.users", "bronze.sessions", "bronze.content")
_SILVER = ("silver.ratings", "silver.movies", "silver.users", "silver.sessions", "silver.content",
           "silver.tmdb_movies", "silver.tmdb_reviews")  # fmt: skip
# the five SQL models (lakehouse/sql/gold), then the tables the viewing and TMDB sources build
GOLD = ("gold.genre_analytics", "gold.trending_movies", "gold.temporal_trends", "gold.user_engagement",
        "gold.movie_kpis", "gold.content_performance", "gold.tmdb_sentiment")  # fmt: skip

# step -> (inputs, outputs). A step's inputs are what it reads that it did not write itself in the same run
# (the ETL reads silver to build gold: silver is its output, and the gold column lineage points at it).
# fmt: off
STEPS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "ingest": ((LANDING,), (*_BRONZE, "bronze.ingestion_metadata", "bronze.quarantine")),
    "buffer_status": (("bronze.ratings_buffer", "bronze.ingestion_metadata"), ()),
    "etl": ((*_BRONZE, "bronze.tmdb_raw", "bronze.ingestion_metadata"), (*_SILVER, "silver.processed_batches", *GOLD)),
    "tmdb": ((TMDB_API, "silver.movies"), ("bronze.tmdb_raw",)),
    "find_model": (("ops.model_registry",), ()),
    "train": (("silver.ratings", "silver.movies", "silver.processed_batches"), (MODELS, "ops.model_registry")),
    "retrain": (("silver.ratings", "silver.movies", "bronze.ratings_buffer"),
                (MODELS, "ops.model_registry", "ops.training_batches")),
    "test_model": ((MODELS, "ops.model_registry", "silver.ratings"), ()),
    "drift": (("bronze.ratings_buffer", "silver.ratings", "silver.movies", "ops.model_registry", MODELS),
              ("ops.drift_reports",)),
    "futures": ((MODELS, "ops.model_registry", "bronze.ratings_buffer"), (FUTURES,)),
    "publish": (("gold.trending_movies", "gold.genre_analytics", "gold.movie_kpis", "silver.tmdb_movies",
                 "ops.model_registry", "ops.drift_reports", MODELS), (SERVING,)),
    # the pipeline commands' steps: simulate's weekly drift check with its retrain, the runs of the commands
    "drift_and_retrain": (("bronze.ratings_buffer", "silver.ratings", "silver.movies", "ops.model_registry", MODELS),
                          ("ops.drift_reports", MODELS, "ops.model_registry", "ops.training_batches")),
    "model_version": ((), (MODELS,)),  # the Spark DAG's training_result: the version its spark-submit trained
    "pipeline": ((), ()),  # simulate, demo: what they read and write is named by their steps' runs
    "replay": ((), ("ops.replay_periods",)),  # the history's files in (a replay's steps run in scratch homes)
}
# fmt: on


@dataclass(frozen=True)
class DatasetRef:
    """One dataset of a step: a warehouse table (``database`` set) or a URL (``url`` set)."""

    key: str  # the logical name: ``gold.movie_kpis``, ``files:models``, ``api:tmdb``
    namespace: str
    name: str
    database: str | None = None  # a table: its name is ``{database}.{key}``
    url: str | None = None  # a file or API: the URL the namespace and name come from


def _url_ref(key: str, url: str) -> DatasetRef:
    # the Airflow provider's reading of a URL (ExtractorManager.convert_to_ol_dataset_from_object_storage_uri):
    # file://host/path -> ("file://host", "path"), https://host/path -> ("https", "host/path")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "file":
        return DatasetRef(key, f"file://{parts.netloc}", parts.path.lstrip("/"), url=url)
    return DatasetRef(key, parts.scheme, f"{parts.netloc}{parts.path}", url=url)


def _ref(key: str, settings: Settings) -> DatasetRef:
    folders = {LANDING: settings.landing_dir, MODELS: settings.models_dir, SERVING: settings.serving_dir,
               FUTURES: settings.home_dir / "futures"}  # fmt: skip
    if key in folders:
        return file_ref(folders[key], key)
    if key == TMDB_API:
        base = urllib.parse.urlsplit(settings.tmdb_base_url)  # the key travels in a header, never in the URL
        return _url_ref(key, f"{base.scheme}://{base.hostname or ''}{base.path.rstrip('/')}/movie")
    source = warehouse_source(settings)
    namespace, name = source.table(key)
    return DatasetRef(key, namespace, name, database=source.database)


def file_ref(path: Path, key: str | None = None) -> DatasetRef:
    """The dataset of a folder of HOME (``key``) or of a file a run reads (``cinematch ingest FILE``)."""
    namespace, name = file_dataset(path)
    return DatasetRef(key or f"file:{name}", namespace, name, url=f"{namespace}/{name}")


def step_datasets(step: str, settings: Settings) -> tuple[list[DatasetRef], list[DatasetRef]]:
    """(inputs, outputs) of a step of :data:`STEPS`, named for this deployment (``settings``)."""
    inputs, outputs = STEPS[step]
    return [_ref(k, settings) for k in inputs], [_ref(k, settings) for k in outputs]


def model_version(result: Any) -> str | None:
    """The model version a step's result names (training, retraining), if any."""
    version = result.get("version") if isinstance(result, Mapping) else None
    return version if isinstance(version, str) and version else None


def input_dataset(ref: DatasetRef) -> InputDataset:
    """The OpenLineage input dataset of ``ref`` (imports openlineage: call only when lineage is emitted)."""
    from openlineage.client.event_v2 import InputDataset

    return InputDataset(namespace=ref.namespace, name=ref.name)


def output_dataset(ref: DatasetRef, facets: dict[str, Any] | None = None) -> OutputDataset:
    """The OpenLineage output dataset of ``ref``, with ``facets``."""
    from openlineage.client.event_v2 import OutputDataset

    return OutputDataset(namespace=ref.namespace, name=ref.name, facets=facets or {})


def _column_lineage(ref: DatasetRef, by_table: Mapping[str, DatasetRef]) -> Any:
    from openlineage.client.facet_v2 import column_lineage_dataset as cl

    from cinematch.lakehouse.lineage_sql import gold_column_lineage

    columns = gold_column_lineage().get(ref.key)
    if not columns:
        return None
    fields = {}
    for column, sources in columns.items():
        inputs = [cl.InputField(namespace=by_table[t].namespace, name=by_table[t].name, field=c)
                  for t, c in sources if t in by_table]  # fmt: skip
        fields[column] = cl.Fields(inputFields=inputs)
    return cl.ColumnLineageDatasetFacet(fields=fields)


def complete_outputs(outputs: list[DatasetRef], settings: Settings, result: Any = None) -> list[OutputDataset]:
    """The outputs of a finished step as OpenLineage datasets, with the facets a COMPLETE event carries.

    Gold tables get their column lineage (``columnLineage``); the model folder gets the version the step trained
    (``version``, when ``result`` names one). Inputs of the column lineage are named like any other table.
    """
    from openlineage.client.facet_v2 import dataset_version_dataset

    by_table = {t: _ref(t, settings) for t in _SILVER}  # the tables gold is computed from
    datasets = []
    for ref in outputs:
        facets: dict[str, Any] = {}
        if ref.key.startswith("gold.") and (facet := _column_lineage(ref, by_table)) is not None:
            facets["columnLineage"] = facet
        if ref.key == MODELS and (version := model_version(result)):
            facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=version)
        datasets.append(output_dataset(ref, facets))
    return datasets
